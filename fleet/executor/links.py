"""Links across hosts: a container task's ``links`` whose target runs on another host of
the play are looked up on the play's hosts and handed to the host as ``_remote_links``
(the target host's address, the ports the target publishes there, its environment), so
that the payload writes /etc/hosts and Docker's link variables for them. No overlay
network: a cross-host link reaches the target's published ports on its host.

One lookup per task and target name serves every host of the batch (the first host's
thread asks, the others wait for its answer).
"""

import threading
from concurrent.futures import ThreadPoolExecutor

from fleet.transport.session import RequestError
from fleet.transport.ssh import TransportError

MODULES = ("container", "container_run")


class LinkError(Exception):
    """A link cannot be made (one line naming the container and the port)."""


class LinkLookups:
    """Where each link target runs, asked once per task: {host: inspect}."""

    def __init__(self, connections):
        self.connections = connections
        self._lock = threading.Lock()
        self._answers = {}
        self._listings = {}

    def prime(self, task, store, listings):
        """What ``task`` already asked of the hosts: {host: [inspect of every container]}
        (a service's placement lists them all), so its links need no more requests."""
        with self._lock:
            self._listings[(id(task), store)] = listings

    def where(self, task, name, hosts, become, store):
        with self._lock:
            listings = self._listings.get((id(task), store))
        if listings is not None and all(host in listings for host in hosts):
            return {host: found for host in hosts for found in listings[host]
                    if found.get("Name") == "/" + name or found.get("Id") == name}
        key = (id(task), name, store)
        with self._lock:
            event = self._answers.get(key)
            owner = event is None
            if owner:
                event = self._answers[key] = {"done": threading.Event()}
        if owner:
            try:
                event["found"] = self._ask(name, hosts, become, store)
            finally:
                event["done"].set()
        event["done"].wait()
        return event.get("found") or {}

    def _ask(self, name, hosts, become, store):
        def ask(host):
            try:
                session = self.connections.get(host, *become)
                params = {"name": name, **({"store": store} if store else {})}
                answer = session.call("container_info", params, timeout=60)
            except (TransportError, RequestError, OSError):
                return host, None  # unreachable: its containers cannot be linked to
            found = answer.get("containers") or []
            return host, found[0] if found else None

        with ThreadPoolExecutor(max_workers=min(32, max(1, len(hosts)))) as pool:
            return {host: found for host, found in pool.map(ask, hosts) if found}


def needs_lookup(action, args):
    """Whether a task's arguments ask for links that may be on other hosts."""
    return action in MODULES and bool(args.get("links")) and args.get("image") and \
        args.get("state", "started") in ("started", "present")


def resolve(lookups, task, host, args, hosts, become):
    """``args`` with the links whose target is on another host moved to _remote_links;
    LinkError when a target is nowhere, or exposes a port it does not publish."""
    local, remote = [], []
    for entry in args.get("links") or []:
        name, _, alias = str(entry).partition(":")
        found = lookups.where(task, name, hosts, become, args.get("store"))
        if not found:
            raise LinkError(f"links: no container named {name} on {host} or on any "
                            "other host of the play")
        if host in found:
            local.append(entry)
            continue
        other = next(h for h in hosts if h in found)  # the first in play order
        remote.append(_remote(name, alias or name, other, found[other],
                              lookups.connections.address(other)))
    return dict(args, links=local, _remote_links=remote)


def _remote(name, alias, host, inspect, address):
    """The payload's view of a target on ``host``: where to reach each exposed port."""
    config = inspect.get("Config") or {}
    published = (inspect.get("NetworkSettings") or {}).get("Ports") or {}
    ports = {}
    for port in sorted(config.get("ExposedPorts") or {}):
        bindings = [b for b in published.get(port) or []
                    if not b.get("HostIp", "").startswith("127.")]
        if not bindings:
            number, _, proto = port.partition("/")
            raise LinkError(f"links: {name} runs on {host} and exposes {port} without "
                            f"publishing it: publish it there (ports: ['{number}"
                            f"{'/' + proto if proto == 'udp' else ''}']) to link to it "
                            "from another host")
        ports[port] = bindings[0]["HostPort"]
    return {"name": name, "alias": alias, "address": address, "ports": ports,
            "env": config.get("Env") or []}

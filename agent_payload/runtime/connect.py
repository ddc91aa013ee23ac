"""A container's place on the network: which network it joins (``network_mode``), its
links, and keeping linking containers right when a link's target comes back.

``network_mode``: none (only lo), host (the host's stack), bridge (the default network),
a network's name, or container:NAME (the namespace of another container, which must
have one: a network of its own, or be running). Links name containers on this host, or
(``remote_links``, filled in by the controller) containers on other hosts of the play,
reached at their host's address on the ports they publish there.

Every linking container records its links (target name, alias, address, ports), so when
a target is created again with a new address the linkers' /etc/hosts (bind-mounted
files, rewritten in place) and, with icc false, their firewall openings follow it.
"""

import os

from agent_payload import jsonfile, labels
from agent_payload.runtime import network, records, spec


class ConnectError(Exception):
    """The container cannot be connected as asked (one line)."""


def _address(config):
    return next((n["IPAddress"] for n in (config.get("network_settings") or {}).values()),
                None)


def network_of(plan):
    """The network a plan's container joins (None for none, host and container:)."""
    mode = plan["network_mode"]
    if mode in ("none", "host") or mode.startswith("container:"):
        return None
    return network.DEFAULT_NETWORK if mode == "bridge" else mode


def links(store, entries, remote, linker, network_mode, with_env):
    """The containers named by ``entries`` (NAME[:ALIAS], on this host) and ``remote``
    (the controller's [{name, alias, address, ports: {"5432/tcp": "15432"}, env}]):
    [{target, names, address, exposed, env}] for /etc/hosts, firewall openings and,
    unless ``with_env`` is false, Docker's legacy link variables."""
    if (entries or remote) and (network_mode in ("none", "host")
                                or network_mode.startswith("container:")):
        raise ConnectError("links need a network (network_mode bridge or a network's name)")
    found = []
    for entry in entries:
        name, _, alias = str(entry).partition(":")
        alias = alias or name
        target = records.find_container(store.root, name)
        if target is None:
            raise ConnectError(f"links: no container named {name} on this host")
        config = target[1]
        address = _address(config)
        if address is None:
            raise ConnectError(f"links: container {name} has no network address")
        exposed = config.get("exposed") or []
        env = spec.link_env(alias, linker, address, exposed, config.get("env") or []) \
            if with_env else []
        found.append({"target": name, "alias": alias, "address": address,
                      "exposed": exposed, "env": env, "local": True})
    for entry in remote or []:
        alias = entry.get("alias") or entry["name"]
        ports = entry.get("ports") or {}
        env = spec.link_env(alias, linker, entry["address"], list(ports),
                            entry.get("env") or [], ports) if with_env else []
        found.append({"target": entry["name"], "alias": alias, "address": entry["address"],
                      "exposed": [], "env": env, "local": False})
    for link in found:
        link["names"] = link["alias"] if link["alias"] == link["target"] \
            else f"{link['alias']} {link['target']}"
    return found


def _hosts_text(plan):
    own = next((n["IPAddress"] for n in (plan.get("network_settings") or {}).values()), None)
    return spec.hosts_file(plan["hostname"], own, [(link["names"], link["address"])
                                                   for link in plan.get("links") or []])


def _write_in_place(path, text):
    """Rewrite a file a container has bind-mounted: same inode, so the container sees it."""
    with open(path, "r+") as handle:
        handle.write(text)
        handle.truncate()


def join(store, plan):
    """Attach the container to its network (if any): address, namespace, published
    ports, /etc/hosts, openings to its links; then point its linkers at it."""
    mode = plan["network_mode"]
    if mode.startswith("container:"):
        return _share(store, plan, mode.partition(":")[2])
    name = network_of(plan)
    if name is None:
        if plan.get("ports"):
            raise ConnectError("ports need a network (network_mode bridge or a network's "
                               "name)")
        return None
    try:
        project = labels.project_of(plan)
        made_for = {labels.PROJECT: project} if project and name != network.DEFAULT_NETWORK \
            else None  # a network made on first use is its project's, but never bridge
        settings = network.attach(store, name, plan["id"], plan.get("ports"), made_for)
        plan["netns"] = settings["netns"]
        plan["published"] = settings["Ports"]
        plan["network_settings"] = {name: {k: v for k, v in settings.items()
                                           if k not in ("netns", "Ports")}}
        _open_links(store, name, plan)
    except network.NetworkError as exc:
        leave(store, plan)
        raise ConnectError(str(exc)) from None
    with open(plan["etc_files"]["hosts"], "w") as handle:
        handle.write(_hosts_text(plan))
    if plan.get("name"):
        follow(store, plan["name"], settings["IPAddress"])
    return settings


def _open_links(store, name, plan):
    own = plan["network_settings"][name]["IPAddress"]
    targets = [(link["address"], link["exposed"]) for link in plan.get("links") or []
               if link.get("local")]
    if targets:
        network.open_links(store, name, plan["id"], own, targets)


def _share(store, plan, target_name):
    """network_mode container:NAME: the target's namespace and /etc/hosts."""
    if plan.get("ports"):
        raise ConnectError("ports cannot be published by a container that shares another's "
                           "network (publish them on that container)")
    found = records.find_container(store.root, target_name)
    if found is None:
        raise ConnectError(f"network_mode: no container named {target_name} on this host")
    directory, config = found
    netns = config.get("netns")
    if not netns:
        pid = _running_pid(directory)
        if config.get("network_mode") == "host" or not pid:
            raise ConnectError(f"network_mode: container {target_name} has no network "
                               "namespace to share (it uses the host's, or is not running)")
        netns = f"/proc/{pid}/ns/net"
    plan["netns"] = netns
    plan["network_mode"] = "container:" + os.path.basename(directory)
    with open(config["etc_files"]["hosts"]) as source:
        text = source.read()
    with open(plan["etc_files"]["hosts"], "w") as handle:
        handle.write(text)
    return None


def _running_pid(directory):
    current = jsonfile.read_json(os.path.join(directory, records.STATE), {}) or {}
    return current.get("pid", 0) if current.get("running") else 0


def leave(store, plan):
    """Undo join (its address, namespace, ports and openings)."""
    name = network_of(plan)
    if name is not None:
        network.detach(store, name, plan["id"], published=bool(plan.get("ports")),
                       linked=any(link.get("local") for link in plan.get("links") or []))


def follow(store, target, address):
    """Point the containers that link to ``target`` at its (new) ``address``: their
    /etc/hosts and, on a network with icc false, their openings."""
    for directory, config in records.list_containers(store.root):
        moved = [link for link in config.get("links") or []
                 if link.get("local") and link["target"] == target
                 and link["address"] != address]
        if not moved:
            continue
        for link in moved:
            link["address"] = address  # the env its process has keeps the old one, as Docker's
        try:
            _write_in_place(config["etc_files"]["hosts"], _hosts_text(config))
            name = network_of(config)
            if name is not None:
                _open_links(store, name, config)
        except (OSError, network.NetworkError):
            continue  # a linker going away meanwhile
        jsonfile.write_json(os.path.join(directory, "config.json"), config)

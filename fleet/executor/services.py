"""Replicated services in a playbook: a container task with ``replicas`` runs once for
the play. The first host's thread asks every host what of the service runs there (the
hosts are the record, not a local file), places the replicas (placement.py), and
converges every host: removals and new replicas at once, while each host says which of
the replicas it keeps a change would replace. Those roll out batch by batch
(``update.parallelism`` at a time, default 1), each batch waiting until its replicas are
up (healthy, with a healthcheck; else still running after ``update.monitor`` seconds)
before the next starts; a failed batch stops the rollout and the replicas of later
batches stay on the old version. The other hosts' threads wait and take their results.
"""

import threading
from concurrent.futures import ThreadPoolExecutor

from agent_payload import labels
from fleet.placement import PlacementError, eligible, place
from fleet.transport.session import RequestError
from fleet.transport.ssh import TransportError

DEFAULT_MONITOR = 2.0  # seconds a replacing replica must stay up before the next batch


def is_service(action, args):
    """Whether a task runs a replicated service."""
    return action == "container" and args.get("replicas") is not None


def _fixed_ports(ports):
    """The fixed host ports a replica publishes (each can be taken once per host)."""
    fixed = []
    for entry in ports or []:
        body = str(entry).partition("/")[0].split(":")
        if len(body) >= 2 and body[-2] not in ("", "0"):
            fixed.append(body[-2])
    return fixed


class ServiceRuns:
    """Each service task runs once for the whole play: the first host's thread places
    the replicas and converges every host (in parallel, then batch by batch); the other
    hosts' threads wait for it and take their own results."""

    def __init__(self, connections):
        self.connections = connections
        self._lock = threading.Lock()
        self._runs = {}

    def result(self, task, host, args, hosts, become, prepare=None, check=False, seen=None):
        """``host``'s part of the service task's outcome. ``prepare(host, params)``
        adapts a host's parameters (its links); ``check``: say, change nothing;
        ``seen(listings)`` gets every host's containers as asked for the placement."""
        key = (id(task), args["name"])
        with self._lock:
            entry = self._runs.get(key)
            owner = entry is None
            if owner:
                entry = self._runs[key] = {"done": threading.Event(), "results": {}}
        if owner:
            try:
                entry["results"] = self._run(args, hosts, become, prepare, check, seen)
            except PlacementError as exc:
                entry["results"] = {h: {"failed": True, "changed": False, "msg": str(exc)}
                                    for h in hosts}
            finally:
                entry["done"].set()
        entry["done"].wait()
        return entry["results"].get(host) or {"changed": False, "containers": [],
                                              "removed": [], "replicas": []}

    def _call(self, host, become, params, prepare, check):
        try:
            if prepare is not None:
                params = prepare(host, params)
            return self.connections.get(host, *become).call("container", params, check=check)
        except (TransportError, RequestError, OSError) as exc:
            return {"failed": True, "changed": False, "unreachable": True, "msg": str(exc)}
        except Exception as exc:  # prepare's one-line errors (a link that cannot be made)
            return {"failed": True, "changed": False, "msg": str(exc)}

    def _listings(self, args, hosts, become):
        """{host: [inspect of every container]} (a host that does not answer is left out)."""
        params = {"all": True, **({"store": args["store"]} if args.get("store") else {})}

        def ask(host):
            try:
                answer = self.connections.get(host, *become).call("container_info", params,
                                                                  timeout=60)
            except (TransportError, RequestError, OSError):
                return host, None
            return host, answer.get("containers") or []

        with ThreadPoolExecutor(max_workers=min(32, max(1, len(hosts)))) as pool:
            return {host: found for host, found in pool.map(ask, hosts) if found is not None}


    def _placement(self, args, hosts, current):
        service = args["name"]
        fits = eligible(hosts, args.get("constraints"), self.connections.inventory.group_names)
        fixed = _fixed_ports(args.get("ports"))
        cap = _max_per_host(args.get("placement"), service)
        reason = None
        if fixed:
            cap, reason = 1 if cap is None else min(cap, 1), f"publish fixed port {fixed[0]}"
        if (args.get("update") or {}).get("order") == "start-first" and fixed:
            raise PlacementError(f"service {service}: update order start-first needs "
                                 f"replicas without a fixed host port ({fixed[0]})")
        placement = place(service, args["replicas"], fits, current, cap, reason)
        return {host: placement.get(host, []) for host in hosts}

    def _run(self, args, hosts, become, prepare, check, seen):
        listings = self._listings(args, hosts, become)
        if seen is not None:
            seen(listings)  # the links' lookups need not ask the hosts again
        current = _replicas_in(listings, args)
        placement = self._placement(args, hosts, current)
        update = args.get("update") or {}
        monitor = float(update.get("monitor") or DEFAULT_MONITOR)
        size = max(1, int(update.get("parallelism") or 1))
        results = {host: [] for host in hosts}

        def first(host):  # removals and new replicas; which kept ones would change
            mine = placement[host]
            new = [n for n in mine if n not in current.get(host, [])]
            return host, self._call(host, become, dict(args, _replicas=mine, _batch=new,
                                                       _probe=True), prepare, check)

        with ThreadPoolExecutor(max_workers=min(32, max(1, len(hosts)))) as pool:
            for host, outcome in pool.map(first, hosts):
                results[host].append(outcome)
            stale = sorted((n, host) for host in hosts for n in results[host][0].get("stale")
                           or [] if not results[host][0].get("failed"))
            stopped = None
            for start in range(0, 0 if check else len(stale), size):
                batch = {}
                for number, host in stale[start:start + size]:
                    batch.setdefault(host, []).append(number)
                outcomes = pool.map(lambda item: (item[0], self._call(
                    item[0], become, dict(args, _replicas=placement[item[0]],
                                          _batch=item[1], _wait=monitor), prepare, check)),
                    batch.items())
                for host, outcome in outcomes:
                    results[host].append(outcome)
                    if outcome.get("failed") and stopped is None:
                        stopped = f"{host}: {outcome.get('msg')}"
                if stopped:
                    break
        return {host: _merged(args["name"], placement[host], results[host], stopped,
                              {n for n, h in stale if h == host})
                for host in hosts}


def _replicas_in(listings, args):
    """{host: [replica numbers]} of the service in ``listings``."""
    project = (args.get("labels") or {}).get(labels.PROJECT)
    current = {}
    for host, found in listings.items():
        numbers = []
        for shown in found:
            own = (shown.get("Config") or {}).get("Labels") or {}
            if own.get(labels.SERVICE) == args["name"] and \
                    own.get(labels.PROJECT) == project and \
                    shown.get("Name") == f"/{args['name']}.{own.get(labels.REPLICA)}":
                numbers.append(int(own[labels.REPLICA]))
        current[host] = sorted(numbers)
    return current


def _merged(service, mine, results, stopped, stale):
    merged = {"changed": bool(stale) or any(r.get("changed") for r in results),
              "containers": [c for r in results for c in r.get("containers") or []],
              "removed": [n for r in results for n in r.get("removed") or []],
              "replicas": [f"{service}.{n}" for n in mine]}
    bad = next((r for r in results if r.get("failed")), None)
    if bad is not None:
        merged.update(failed=True, msg=bad.get("msg"))
        if bad.get("unreachable"):
            merged["unreachable"] = True
    elif stopped and stale - {int(c["Config"]["Labels"][labels.REPLICA])
                              for r in results[1:] for c in r.get("containers") or []}:
        merged.update(failed=True, msg=f"rollout stopped: {stopped}; the replicas not yet "
                                       "replaced keep the old version")
    return merged


def _max_per_host(placement, service):
    if placement in (None, "spread"):
        return None
    if isinstance(placement, dict) and set(placement) == {"max_per_host"}:
        try:
            value = int(placement["max_per_host"])
        except (TypeError, ValueError):
            value = 0
        if value >= 1:
            return value
    raise PlacementError(f"service {service}: placement is 'spread' or "
                         "{max_per_host: N} with N >= 1")

"""Containers across hosts, through each host's payload: list, inspect, logs, and the
start / stop / remove of existing ones (the container module does the work); and the
fleet-wide views over them: services (containers grouped by their fleet.project and
fleet.service labels), a container found wherever it runs, a service's logs merged
across its replicas, and their CPU and memory."""

import datetime

from agent_payload import labels as fleet_labels
from fleet.remote import call_module, call_on_hosts

NO_PROJECT = "-"  # the project of a container without a fleet.project label


def _listing(inventory, hosts, params, forks):
    """{host: (container_info's result, error)}; a failed result is an error."""
    found = {}
    for host, (result, error) in call_on_hosts(inventory, hosts, "container_info",
                                               lambda _: params, forks).items():
        if error is None and result.get("failed"):
            error = RuntimeError(result.get("msg"))
        found[host] = (None if error else result, error)
    return found


def list_containers(inventory, hosts, include_stopped=False, forks=32):
    """{host: (inspect objects, error)} for every host, in order."""
    return {host: (result and result["containers"], error) for host, (result, error)
            in _listing(inventory, hosts, {"all": include_stopped}, forks).items()}


def list_stats(inventory, hosts, forks=32):
    """{host: (running containers' inspect objects, each with its cgroup's figures as
    "Stats" (see container_info's stats option; None if it ended meanwhile), error)}.
    Every host measures for about half a second, all at once."""
    found = {}
    for host, (result, error) in _listing(inventory, hosts, {"stats": True}, forks).items():
        if error is None:
            stats = result.get("stats") or {}
            found[host] = ([dict(c, Stats=stats.get(c["Id"])) for c in result["containers"]],
                           None)
        else:
            found[host] = (None, error)
    return found


def find_container(inventory, hosts, name, forks=32):
    """Container ``name`` (a name or an id) wherever it is among ``hosts``: ([(host,
    inspect object)] in host order, {host: error} of the hosts that could not say)."""
    found, errors = [], {}
    for host, (result, error) in call_on_hosts(inventory, hosts, "container_info",
                                               lambda _: {"name": name}, forks).items():
        if error is None and result.get("failed"):
            if str(result.get("msg")).startswith("no such container"):
                continue
            error = RuntimeError(result.get("msg"))
        if error is not None:
            errors[host] = error
        else:
            found.extend((host, c) for c in result["containers"])
    return found, errors


def labels_of(container):
    """An inspect object's labels."""
    return (container.get("Config") or {}).get("Labels") or {}


def service_of(container):
    """(project, service) of an inspect object: its fleet.project and fleet.service
    labels; a container without them is project "-" and its own service."""
    labels = labels_of(container)
    return (labels.get(fleet_labels.PROJECT) or NO_PROJECT,
            labels.get(fleet_labels.SERVICE) or container["Name"].lstrip("/"))


def _number(text):
    try:
        return int(text)
    except (TypeError, ValueError):
        return None


def sorted_containers(outcomes):
    """[(host, inspect object)] of the hosts that answered in ``outcomes`` ({host:
    (inspect objects, error)}), grouped by project and service, replicas in their order
    and then in host order; containers without a project after the rest."""
    order = {host: index for index, host in enumerate(outcomes)}
    pairs = [(host, c) for host, (found, error) in outcomes.items() if error is None
             for c in found or []]

    def key(pair):
        host, container = pair
        project, service = service_of(container)
        replica = _number(labels_of(container).get(fleet_labels.REPLICA))
        return (project == NO_PROJECT, project, service,
                replica if replica is not None else 0, order[host], container["Name"])

    return sorted(pairs, key=key)


def is_running(container):
    """Running, and not between two runs of a restart policy."""
    state = container.get("State") or {}
    return bool(state.get("Running")) and not state.get("Restarting")


def group_services(outcomes):
    """The services of ``outcomes`` ({host: (inspect objects, error)}): [{project,
    service, running, wanted, hosts}] in project and service order. ``wanted`` is the
    largest fleet.replicas label among the service's containers, else (no label) how
    many containers it has; ``hosts`` are those its containers are on."""
    order = {host: index for index, host in enumerate(outcomes)}
    groups, counts = {}, {}
    for host, container in sorted_containers(outcomes):
        key = service_of(container)
        group = groups.setdefault(key, {"project": key[0], "service": key[1], "running": 0,
                                        "wanted": None, "hosts": []})
        counts[key] = counts.get(key, 0) + 1
        group["running"] += is_running(container)
        wanted = _number(labels_of(container).get(fleet_labels.REPLICAS))
        if wanted is not None and (group["wanted"] is None or wanted > group["wanted"]):
            group["wanted"] = wanted
        if host not in group["hosts"]:
            group["hosts"].append(host)
    for key, group in groups.items():
        if group["wanted"] is None:
            group["wanted"] = counts[key]
        group["hosts"].sort(key=order.get)
    return list(groups.values())


def replicas_of(outcomes, service, project=None):
    """[(host, inspect object)]: the containers of ``service`` (as service_of names it,
    so a container without labels is found by its name) in ``project`` if given."""
    return [(host, c) for host, c in sorted_containers(outcomes)
            if service_of(c)[1] == service and (project is None or service_of(c)[0] == project)]


def _time_key(text):
    """A log time (RFC 3339, UTC, any number of fraction digits) as a sortable key."""
    whole, _, fraction = (text or "").rstrip("Z").partition(".")
    return whole, fraction.ljust(9, "0")


def merge_logs(batches):
    """[(host, name, entry)] of ``batches`` ([(host, name, log entries)]) ordered by the
    entries' time; entries of the same time keep their order."""
    merged = [(host, name, entry) for host, name, entries in batches for entry in entries]
    merged.sort(key=lambda item: _time_key(item[2].get("time")))
    return merged


class ReplicaLogs:
    """The logs of several containers across hosts ([(host, inspect object)]), through a
    session per host: each read() returns what they logged since the previous one,
    merged by time (the first: everything, or the last ``tail`` entries of each)."""

    def __init__(self, inventory, containers, tail=None, forks=32, timeout=10.0):
        self.inventory, self.tail, self.forks, self.timeout = inventory, tail, forks, timeout
        self.replicas = [{"host": host, "name": c["Name"].lstrip("/"), "id": c["Id"],
                          "offset": None, "running": c["State"]["Running"], "done": False}
                         for host, c in containers]
        self.sessions = {}

    @property
    def following(self):
        """Whether a replica may still log: it runs, or its last read brought news."""
        return any(not replica["done"] for replica in self.replicas)

    def _read_host(self, host):
        from fleet.transport.session import Session
        from fleet.transport.targets import target_for
        session = self.sessions.get(host)
        if session is None:
            session = self.sessions[host] = Session.open(
                target_for(self.inventory, host, self.timeout))
        batches = []
        for replica in self.replicas:
            if replica["host"] != host or replica["done"]:
                continue
            params = {"name": replica["id"], "logs": True}
            if replica["offset"] is not None:
                params["offset"] = replica["offset"]
            elif self.tail is not None:
                params["tail"] = self.tail
            result = session.call("container_info", params)
            if result.get("failed"):
                if str(result.get("msg")).startswith("no such container"):
                    replica["done"] = True  # removed meanwhile
                    continue
                raise RuntimeError(result.get("msg"))
            running = result["containers"][0]["State"]["Running"]
            replica["done"] = not running and replica["offset"] == result["log_offset"]
            replica["offset"], replica["running"] = result["log_offset"], running
            batches.append((host, replica["name"], result.get("logs") or []))
        return batches

    def read(self):
        """(entries [(host, name, entry)] in time order, {host: error})."""
        from fleet.transport.pool import run_parallel
        hosts = list(dict.fromkeys(r["host"] for r in self.replicas if not r["done"]))
        batches, errors = [], {}
        for host, (found, error) in run_parallel(hosts, self._read_host, self.forks).items():
            if error is not None:
                errors[host] = error
            else:
                batches.extend(found)
        return merge_logs(batches), errors

    def close(self):
        for session in self.sessions.values():
            session.close()
        self.sessions = {}


def size_text(size):
    """Bytes as docker stats shows them: 3.586MiB, 1.944GiB."""
    if size is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.4g}{unit}"
        size /= 1024
    return str(size)


def on_host(inventory, host, module, params):
    """One module call on one host; its result."""
    return call_module(inventory, host, module, params, timeout=10.0)


def _parse_time(text):
    if not text or text.startswith("0001-"):
        return None
    # RFC 3339 with nanoseconds: keep microseconds for datetime
    whole, _, rest = text.rstrip("Z").partition(".")
    moment = datetime.datetime.strptime(whole, "%Y-%m-%dT%H:%M:%S")
    micros = int((rest + "000000")[:6]) if rest else 0
    return moment.replace(microsecond=micros, tzinfo=datetime.timezone.utc)


def ago(text, now=None):
    """"3 minutes" for a time that long ago, as docker ps says it."""
    moment = _parse_time(text)
    if moment is None:
        return ""
    seconds = ((now or datetime.datetime.now(datetime.timezone.utc)) - moment).total_seconds()
    for size, unit in ((86400, "day"), (3600, "hour"), (60, "minute"), (1, "second")):
        if seconds >= size:
            count = int(seconds // size)
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return "Less than a second"


def status_text(state, now=None):
    """docker ps's STATUS column."""
    status = state.get("Status")
    if state.get("Restarting"):
        return f"Restarting ({state.get('ExitCode', 0)}) {ago(state.get('FinishedAt'), now)} ago"
    if state.get("Running"):
        return f"Up {ago(state.get('StartedAt'), now)}"
    if status == "exited":
        return f"Exited ({state.get('ExitCode', 0)}) {ago(state.get('FinishedAt'), now)} ago"
    return (status or "unknown").capitalize()


def ports_text(settings):
    """docker ps's PORTS column: 0.0.0.0:8887->80/tcp, ..."""
    shown = []
    for port, bindings in sorted((settings.get("Ports") or {}).items()):
        for binding in bindings or []:
            shown.append(f"{binding['HostIp']}:{binding['HostPort']}->{port}")
    return ", ".join(shown)

"""Containers across hosts, through each host's payload: list, inspect, logs, and the
start / stop / remove of existing ones (the container module does the work)."""

import datetime

from fleet.remote import call_module, call_on_hosts


def list_containers(inventory, hosts, include_stopped=False, forks=32):
    """{host: (inspect objects, error)} for every host, in order."""
    found = {}
    for host, (result, error) in call_on_hosts(inventory, hosts, "container_info",
                                               lambda _: {"all": include_stopped},
                                               forks).items():
        if error is None and result.get("failed"):
            error = RuntimeError(result.get("msg"))
        found[host] = (None if error else result["containers"], error)
    return found


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

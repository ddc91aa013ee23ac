"""``fleet ping``: connect to hosts, start the payload, ask for its facts, time the answer."""

import time
from dataclasses import asdict, dataclass

from fleet.transport.pool import run_parallel
from fleet.transport.session import Session


@dataclass
class PingResult:
    """One host's answer (or why there was none)."""

    host: str
    reachable: bool
    error: str | None = None
    python: str | None = None
    kernel: str | None = None
    cgroup: str | None = None
    overlayfs: bool | None = None
    user_namespaces: bool | None = None
    payload: str | None = None
    connect_ms: float | None = None
    rtt_ms: float | None = None

    def as_dict(self):
        return asdict(self)


def ping_target(target):
    """Connect, start the payload and run ``facts``; return a PingResult, never raise."""
    started = time.perf_counter()
    try:
        session = Session.open(target)
    except Exception as exc:
        return PingResult(target.name, False, error=str(exc))
    try:
        connected = time.perf_counter()
        result = session.call("facts")
        answered = time.perf_counter()
    except Exception as exc:
        return PingResult(target.name, False, error=str(exc))
    finally:
        session.close()
    facts = result.get("ansible_facts", {})
    return PingResult(
        host=target.name,
        reachable=True,
        python=facts.get("python_version"),
        kernel=facts.get("kernel"),
        cgroup=facts.get("fleet_cgroup_mode"),
        overlayfs=facts.get("fleet_overlayfs"),
        user_namespaces=facts.get("fleet_user_namespaces"),
        payload=session.cache_state,
        connect_ms=round((connected - started) * 1000, 1),
        rtt_ms=round((answered - connected) * 1000, 1),
    )


def ping(targets, forks=32, on_result=None):
    """Ping every target in parallel; return PingResults in target order."""
    outcomes = run_parallel(targets, ping_target, forks,
                            on_done=(lambda t, value, exc: on_result(value)) if on_result else None)
    return [value for value, _ in outcomes.values()]

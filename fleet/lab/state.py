"""The lab's recorded state (lab.json): its hosts, their PIDs and liveness."""

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path


class LabError(RuntimeError):
    """The lab cannot be brought up or down; str() is one line saying why."""


@dataclass
class LabHost:
    name: str
    index: int
    address: str
    pid: int = 0
    alive: bool = False


@dataclass
class LabState:
    hosts: list = field(default_factory=list)
    registries: list = field(default_factory=list)
    inventory: str = ""
    known_hosts: str = ""
    client_key: str = ""


def load_state(config):
    """The lab's recorded state, with each host's liveness checked."""
    try:
        raw = json.loads(config.state_file.read_text())
    except (FileNotFoundError, ValueError):
        return LabState()
    # Keys this version does not know (a lab written by another version) are ignored.
    known = {f.name for f in fields(LabState)} - {"hosts"}
    state = LabState(**{k: v for k, v in raw.items() if k in known})
    state.hosts = [LabHost(**h) for h in raw.get("hosts", [])]
    for host in state.hosts:
        host.alive = is_our_sshd(host.pid, config, host.index)
    return state


def save_state(config, state):
    tmp = config.state_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(state), indent=2) + "\n")
    os.replace(tmp, config.state_file)


def is_our_sshd(pid, config, index):
    if not pid:
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    if stat.rsplit(")", 1)[-1].split()[0] == "Z":
        return False
    return str(config.host_dir(index) / "sshd_config").encode() in cmdline

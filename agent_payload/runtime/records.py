"""What a detached container's directory records, shared by the monitor (which writes
it) and the payload (which reads it): ``state.json`` (running with its pid, then exited
with the exit code, the time and whether the OOM killer ended it, the restart count,
the health), ``container.log`` in Docker's json-file format (one JSON object a line:
log, stream, time), the ``stop`` file by which the payload says a stop was asked for,
and Docker's restart policies (no, on-failure[:N], always, unless-stopped) with their
back-off (100 ms, doubling, reset after 10 s of running).
"""

import os
import time

from agent_payload import jsonwire
from agent_payload.jsonfile import read_json, write_json
from agent_payload.runtime.health import stamp

STATE = "state.json"
LOG = "container.log"
STOP = "stop"
BACKOFF_START, BACKOFF_MAX, BACKOFF_RESET = 0.1, 60.0, 10.0


def now():
    """The current time as Docker writes times."""
    return stamp(time.time())


def list_containers(store_root):
    """[(directory, config)] of every container in the store (STORE/containers/ID)."""
    base = os.path.join(store_root, "containers")
    found = []
    for entry in sorted(os.listdir(base)) if os.path.isdir(base) else []:
        directory = os.path.join(base, entry)
        config = read_json(os.path.join(directory, "config.json"))
        if config:
            found.append((directory, config))
    return found


def find_container(store_root, name):
    """(directory, config) of the container named ``name`` (or with that id), else None."""
    for directory, config in list_containers(store_root):
        if config.get("name") == name or os.path.basename(directory) == name:
            return directory, config
    return None


def update_state(directory, **fields):
    """Merge ``fields`` into the container's state.json (nothing once the container's
    directory is gone: it was removed meanwhile)."""
    if not os.path.isdir(directory):
        return dict(fields)
    path = os.path.join(directory, STATE)
    state = read_json(path, {}) or {}
    state.update(fields)
    write_json(path, state)
    return state


def should_restart(policy, exit_code, restarts, stopped):
    """Docker's restart policies: no, on-failure[:N], always, unless-stopped."""
    if stopped:
        return False
    name, _, limit = (policy or "no").partition(":")
    if name == "always" or name == "unless-stopped":
        return True
    if name == "on-failure":
        return exit_code != 0 and (not limit or restarts < int(limit))
    return False


class Log:
    """Appends json-file lines for each complete line (or a full buffer) of a stream."""

    def __init__(self, path):
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        self.partial = {"stdout": b"", "stderr": b""}

    def add(self, stream, data):
        buffered = self.partial[stream] + data
        lines = buffered.split(b"\n")
        self.partial[stream] = lines.pop()
        if len(self.partial[stream]) > 16384:
            lines.append(self.partial[stream])
            self.partial[stream] = b""
        self._write(stream, [line + b"\n" for line in lines])

    def flush(self):
        for stream, rest in self.partial.items():
            if rest:
                self._write(stream, [rest])
                self.partial[stream] = b""

    def _write(self, stream, chunks):
        if not chunks:
            return
        stamp = now()
        text = "".join(jsonwire.dumps({"log": chunk.decode("utf-8", "replace"),
                                       "stream": stream, "time": stamp}) + "\n"
                       for chunk in chunks)
        os.write(self.fd, text.encode())

"""container_info: the host's containers as docker inspect shows them, and their logs.

Options:
  name: only this container (a name or an id); all of them when omitted.
  all: with no name, stopped containers too (default: running ones, as docker ps).
  logs: with name, return its log entries as ``logs`` ([{log, stream, time}]).
  tail: only the last N log entries (default: all, at most MAX_LOG_ENTRIES).
  offset: with logs, only what the log gained after this byte offset (what an earlier
      call returned as ``log_offset``: how `fleet logs -f` follows).
  store: the content store's root (default /var/lib/fleet).

Returns ``containers`` (inspect objects). Never changes anything.
"""

import os

from agent_payload import jsonwire
from agent_payload.oci.store import Store, StoreError
from agent_payload.runtime import containers, records

ARGUMENT_SPEC = {
    "name": {"type": "str"},
    "all": {"type": "bool", "default": False},
    "logs": {"type": "bool", "default": False},
    "tail": {"type": "int"},
    "offset": {"type": "int"},
    "store": {"type": "path", "default": "/var/lib/fleet"},
}
MAX_LOG_ENTRIES = 10000


def _log_entries(directory, tail, offset=None):
    """(entries, the offset up to which they were read)."""
    limit = min(tail, MAX_LOG_ENTRIES) if tail is not None and tail >= 0 else MAX_LOG_ENTRIES
    try:
        with open(os.path.join(directory, records.LOG), "rb") as handle:
            if offset:
                handle.seek(offset)
            data = handle.read()
    except FileNotFoundError:
        return [], offset or 0
    end = data.rfind(b"\n") + 1  # a line still being written waits for the next call
    data, read_to = data[:end], (offset or 0) + end
    lines = data.splitlines()
    entries = []
    for line in lines[-limit:] if limit else []:
        try:
            entries.append(jsonwire.loads(line.decode("utf-8", "replace")))
        except ValueError:
            continue  # a line cut short by a crash
    return entries, read_to


def run(params, ctx):
    """List (or show one of) the containers."""
    try:
        store = Store(params["store"])
        if params.get("name"):
            found = containers.find(store, params["name"])
            if found is None:
                return {"failed": True, "changed": False,
                        "msg": f"no such container: {params['name']}"}
            # a container whose monitor died is taken up again by this call
            containers.state(found[0], ctx.payload_info.get("version"))
            result = {"changed": False, "containers": [containers.inspect(*found)]}
            if params["logs"]:
                result["logs"], result["log_offset"] = _log_entries(
                    found[0], params.get("tail"), params.get("offset"))
            return result
        shown = []
        for directory, config in containers.list_all(store):
            inspected = containers.inspect(directory, config)
            if params["all"] or inspected["State"]["Running"]:
                shown.append(inspected)
    except StoreError as exc:
        return {"failed": True, "changed": False, "msg": str(exc)}
    return {"changed": False, "containers": shown}

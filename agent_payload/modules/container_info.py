"""container_info: the host's containers as docker inspect shows them, and their logs.

Options:
  name: only this container (a name or an id); all of them when omitted.
  all: with no name, stopped containers too (default: running ones, as docker ps).
  logs: with name, return its log entries as ``logs`` ([{log, stream, time}]).
  tail: only the last N log entries (default: all, at most MAX_LOG_ENTRIES).
  offset: with logs, only what the log gained after this byte offset (what an earlier
      call returned as ``log_offset``: how `fleet logs -f` follows).
  stats: also measure every running container shown, from its cgroup (what `fleet top`
      shows): its usage is read twice, STATS_INTERVAL seconds apart, so the call takes
      that long. Returned as ``stats``: {container id: {cpu_percent (of one CPU over
      the interval), cpu_ns (CPU time used so far), memory (bytes, less the inactive
      page cache, as Docker counts it), memory_limit (the cgroup's limit, or the host's
      memory when it has none or a larger one), pids}}.
  store: the content store's root (default /var/lib/fleet).

Returns ``containers`` (inspect objects). Never changes anything.
"""

import os
import time

from agent_payload import cgroups, jsonwire
from agent_payload.oci.store import Store, StoreError
from agent_payload.runtime import containers, records

ARGUMENT_SPEC = {
    "name": {"type": "str"},
    "all": {"type": "bool", "default": False},
    "logs": {"type": "bool", "default": False},
    "tail": {"type": "int"},
    "offset": {"type": "int"},
    "stats": {"type": "bool", "default": False},
    "store": {"type": "path", "default": "/var/lib/fleet"},
}
MAX_LOG_ENTRIES = 10000
STATS_INTERVAL = 0.5


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


def memory_total(meminfo="/proc/meminfo"):
    """The host's memory in bytes (MemTotal), or None."""
    try:
        with open(meminfo) as handle:
            for line in handle:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def sample(groups, interval=STATS_INTERVAL, total=None, sleep=time.sleep):
    """{key: stats} of ``groups`` ({key: cgroup}): each read twice ``interval`` seconds
    apart; CPU% is the CPU time used in between over the time elapsed (100 = one CPU)."""
    first = {}
    for key, group in groups.items():
        first[key] = (time.monotonic(), group.stats())
    if groups:
        sleep(interval)
    shown = {}
    for key, group in groups.items():
        since, before = first[key]
        now = group.stats()
        elapsed = time.monotonic() - since
        used = max(now["cpu_ns"] - before["cpu_ns"], 0)
        limit = now["memory_limit"]
        if total and (limit is None or limit > total):
            limit = total
        shown[key] = {"cpu_percent": round(used / (elapsed * 1e9) * 100, 2) if elapsed > 0
                      else 0.0, "cpu_ns": now["cpu_ns"], "memory": now["memory"],
                      "memory_limit": limit, "pids": now["pids"]}
    return shown


def _stats(found):
    """{id: stats} of the running ones of [(directory, config, inspected)]."""
    running = [(config["cgroup"], inspected["Id"]) for _, config, inspected in found
               if inspected["State"]["Running"] and config.get("cgroup")]
    driver = cgroups.open_driver() if running else None
    groups = {cid: driver.cgroup(cgroup["parent"], cgroup["name"]) for cgroup, cid in running}
    return sample(groups, total=memory_total())


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
            inspected = containers.inspect(*found)
            result = {"changed": False, "containers": [inspected]}
            if params["logs"]:
                result["logs"], result["log_offset"] = _log_entries(
                    found[0], params.get("tail"), params.get("offset"))
            if params["stats"]:
                result["stats"] = _stats([(found[0], found[1], inspected)])
            return result
        shown = []
        for directory, config in containers.list_all(store):
            inspected = containers.inspect(directory, config)
            if params["all"] or inspected["State"]["Running"]:
                shown.append((directory, config, inspected))
        result = {"changed": False, "containers": [inspected for _, _, inspected in shown]}
        if params["stats"]:
            result["stats"] = _stats(shown)
    except (StoreError, cgroups.CgroupError) as exc:
        return {"failed": True, "changed": False, "msg": str(exc)}
    return result

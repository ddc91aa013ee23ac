"""Container cgroups: one interface over cgroup v1 and v2, the version chosen by probing.

``open_driver()`` reads the host's cgroup mounts (probe.cgroup_mounts) and returns a V2
driver when the unified hierarchy holds the controllers containers need (memory, pids,
cpu), else a V1 driver over the v1 hierarchies that have them. ``driver.cgroup(parent,
name)`` is a container's cgroup ``PARENT/NAME`` in every hierarchy; ``create(limits)``
makes it and writes the limits, ``add(pid)`` moves a process in, ``oom_kills()``,
``usage()``, ``stats()`` and ``pids()`` read it back, ``kill()`` and ``remove()`` end it.

Limits use Docker's names and units: ``memory`` and ``memory_swap`` in bytes
(``memory_swap`` is memory plus swap; -1 lifts the swap limit; unset, swap equals memory
as in Docker), ``cpus`` (a float, as a CFS quota over a 100 ms period), ``cpu_shares``
(v1 shares; converted to a v2 weight as runc does) and ``pids_limit`` (0 or -1: none).

Paths come in as arguments (a mountinfo file, the mount points), so tests run both
drivers against temporary trees; the container never sees the host's cgroup paths.
"""

import _signal as signal  # the signal module imports enum: milliseconds per payload
import errno
import os
import time

from agent_payload import probe

MIN_MEMORY = 6 * 1024 * 1024  # Docker refuses less: the runtime itself needs some
CPU_PERIOD = 100000  # microseconds, the CFS default
WANTED = ("memory", "pids", "cpu")
DEFAULT_PARENT = "fleet"
# v1 writes "no limit" as the largest page-aligned counter (9223372036854771712 with 4 KiB
# pages); anything from 2**62 up is taken for it.
V1_UNLIMITED = 2 ** 62


class CgroupError(Exception):
    """A cgroup could not be made, set or removed (one line naming the file)."""


def check_limits(limits):
    """Raise CgroupError for limits Docker would refuse (before anything is created)."""
    memory = limits.get("memory")
    if memory is not None and 0 < memory < MIN_MEMORY:
        raise CgroupError("minimum memory limit allowed is 6 MiB")
    swap = limits.get("memory_swap")
    if swap is not None and swap not in (0, -1):
        if memory is None or memory <= 0:
            raise CgroupError("memory_swap needs memory set as well")
        if swap < memory:
            raise CgroupError("memory_swap must be at least memory (memory plus swap)")
    cpus = limits.get("cpus")
    if cpus is not None and cpus < 0:
        raise CgroupError("cpus must not be negative")
    shares = limits.get("cpu_shares")
    if shares is not None and shares < 0:
        raise CgroupError("cpu_shares must not be negative")


def shares_to_weight(shares):
    """cpu.shares (2..262144) as cpu.weight (1..10000), runc's mapping."""
    shares = min(max(shares, 2), 262144)
    return 1 + ((shares - 2) * 9999) // 262142


def _write(path, value):
    try:
        with open(path, "w") as handle:
            handle.write(str(value))
    except OSError as exc:
        raise CgroupError(f"cannot write {value} to {path}: {exc.strerror}") from None


def _read(path, default=None):
    try:
        with open(path) as handle:
            return handle.read()
    except OSError:
        return default


def _int(text):
    """An integer file's value, or None when it is missing or not a number ("max")."""
    text = (text or "").strip()
    return int(text) if text.lstrip("-").isdigit() else None


def _keyed(text):
    """{key: int} of a flat keyed file (memory.events, memory.oom_control, cpu.stat)."""
    values = {}
    for line in (text or "").splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("-").isdigit():
            values[parts[0]] = int(parts[1])
    return values


def _rmdir(path, timeout):
    """Remove a cgroup dir; processes that were just killed take a moment to leave it."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError as exc:
            if exc.errno != errno.EBUSY or time.monotonic() >= deadline:
                raise CgroupError(f"cannot remove {path}: {exc.strerror}") from None
            time.sleep(0.01)


class _Cgroup:
    """A container's cgroup: one directory per hierarchy (one in v2)."""

    def __init__(self, dirs, version):
        self.dirs = dirs  # {controller or "unified": path}
        self.version = version

    @property
    def procs_files(self):
        return [os.path.join(path, "cgroup.procs") for path in sorted(set(self.dirs.values()))]

    def add(self, pid):
        """Move process ``pid`` into this cgroup (in every hierarchy)."""
        for path in self.procs_files:
            _write(path, pid)

    def pids(self):
        """The pids in this cgroup."""
        found = set()
        for path in self.procs_files:
            found.update(int(p) for p in (_read(path) or "").split())
        return sorted(found)

    def kill(self, timeout=5.0):
        """SIGKILL every process in the cgroup until it is empty (or ``timeout``)."""
        deadline = time.monotonic() + timeout
        while True:
            pids = self.pids()
            if not pids:
                return True
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)

    def remove(self, timeout=5.0):
        """Kill what is left and remove the directories."""
        self.kill(timeout)
        for path in sorted(set(self.dirs.values()), reverse=True):
            _rmdir(path, timeout)


class _V1Cgroup(_Cgroup):
    def create(self, limits):
        """Make the directories and write ``limits``."""
        check_limits(limits)
        for path in sorted(set(self.dirs.values())):
            os.makedirs(path, exist_ok=True)
        try:
            self._apply(limits)
        except BaseException:
            self.remove()
            raise

    def _apply(self, limits):
        memory_dir = self.dirs.get("memory")
        memory = limits.get("memory")
        if memory_dir and memory:
            _write(os.path.join(memory_dir, "memory.limit_in_bytes"), memory)
            swap = limits.get("memory_swap")
            memsw = os.path.join(memory_dir, "memory.memsw.limit_in_bytes")
            if os.path.exists(memsw):  # swap accounting may be off in the kernel
                _write(memsw, -1 if swap == -1 else (swap or 2 * memory))
        cpu_dir = self.dirs.get("cpu")
        if cpu_dir and limits.get("cpus"):
            _write(os.path.join(cpu_dir, "cpu.cfs_period_us"), CPU_PERIOD)
            _write(os.path.join(cpu_dir, "cpu.cfs_quota_us"), int(limits["cpus"] * CPU_PERIOD))
        if cpu_dir and limits.get("cpu_shares"):
            _write(os.path.join(cpu_dir, "cpu.shares"), limits["cpu_shares"])
        pids_dir = self.dirs.get("pids")
        if pids_dir and limits.get("pids_limit") not in (None, 0, -1):
            _write(os.path.join(pids_dir, "pids.max"), limits["pids_limit"])

    def oom_kills(self):
        """How many processes the kernel's OOM killer ended in this cgroup."""
        memory_dir = self.dirs.get("memory")
        if not memory_dir:
            return 0
        return _keyed(_read(os.path.join(memory_dir, "memory.oom_control"))).get("oom_kill", 0)

    def usage(self):
        """{"memory": bytes, "cpu_ns": nanoseconds} used so far."""
        memory = _read(os.path.join(self.dirs.get("memory", ""), "memory.usage_in_bytes"))
        cpu = _read(os.path.join(self.dirs.get("cpuacct", ""), "cpuacct.usage"))
        return {"memory": int(memory) if memory else 0, "cpu_ns": int(cpu) if cpu else 0}

    def stats(self):
        """What `fleet top` shows, as Docker computes it: {"cpu_ns": CPU time used so far,
        "memory": bytes used less the inactive page cache, "memory_limit": bytes or None
        when unlimited, "pids": tasks in the cgroup}."""
        memory_dir, pids_dir = self.dirs.get("memory", ""), self.dirs.get("pids", "")
        used = _int(_read(os.path.join(memory_dir, "memory.usage_in_bytes"))) or 0
        inactive = _keyed(_read(os.path.join(memory_dir, "memory.stat"))).get(
            "total_inactive_file", 0)
        limit = _int(_read(os.path.join(memory_dir, "memory.limit_in_bytes")))
        pids = _int(_read(os.path.join(pids_dir, "pids.current")))
        return {"cpu_ns": self.usage()["cpu_ns"], "memory": max(used - inactive, 0),
                "memory_limit": limit if limit is not None and 0 < limit < V1_UNLIMITED
                else None,
                "pids": pids if pids is not None else len(self.pids())}


class _V2Cgroup(_Cgroup):
    def create(self, limits):
        """Make the directory (delegating controllers down to it) and write ``limits``."""
        check_limits(limits)
        path = self.dirs["unified"]
        _enable_controllers(os.path.dirname(path), self.root)
        os.makedirs(path, exist_ok=True)
        try:
            self._apply(path, limits)
        except BaseException:
            self.remove()
            raise

    def _apply(self, path, limits):
        memory = limits.get("memory")
        if memory:
            _write(os.path.join(path, "memory.max"), memory)
            swap = limits.get("memory_swap")
            swap_file = os.path.join(path, "memory.swap.max")
            if os.path.exists(swap_file):
                _write(swap_file, "max" if swap == -1 else (swap or 2 * memory) - memory)
        if limits.get("cpus"):
            _write(os.path.join(path, "cpu.max"),
                   f"{int(limits['cpus'] * CPU_PERIOD)} {CPU_PERIOD}")
        if limits.get("cpu_shares"):
            _write(os.path.join(path, "cpu.weight"), shares_to_weight(limits["cpu_shares"]))
        if limits.get("pids_limit") not in (None, 0, -1):
            _write(os.path.join(path, "pids.max"), limits["pids_limit"])

    def oom_kills(self):
        """How many processes the kernel's OOM killer ended in this cgroup."""
        events = _read(os.path.join(self.dirs["unified"], "memory.events"))
        return _keyed(events).get("oom_kill", 0)

    def usage(self):
        """{"memory": bytes, "cpu_ns": nanoseconds} used so far."""
        path = self.dirs["unified"]
        memory = _read(os.path.join(path, "memory.current"))
        cpu = _keyed(_read(os.path.join(path, "cpu.stat"))).get("usage_usec", 0)
        return {"memory": int(memory) if memory else 0, "cpu_ns": cpu * 1000}

    def stats(self):
        """What `fleet top` shows, as Docker computes it: {"cpu_ns": CPU time used so far,
        "memory": bytes used less the inactive page cache, "memory_limit": bytes or None
        when unlimited ("max"), "pids": tasks in the cgroup}."""
        path = self.dirs["unified"]
        used = _int(_read(os.path.join(path, "memory.current"))) or 0
        inactive = _keyed(_read(os.path.join(path, "memory.stat"))).get("inactive_file", 0)
        pids = _int(_read(os.path.join(path, "pids.current")))
        return {"cpu_ns": self.usage()["cpu_ns"], "memory": max(used - inactive, 0),
                "memory_limit": _int(_read(os.path.join(path, "memory.max"))),
                "pids": pids if pids is not None else len(self.pids())}

    def kill(self, timeout=5.0):
        """cgroup.kill where the kernel has it (5.14+), else signal each process."""
        kill_file = os.path.join(self.dirs["unified"], "cgroup.kill")
        if os.path.exists(kill_file):
            try:
                _write(kill_file, 1)
            except CgroupError:
                pass
        return super().kill(timeout)


def _enable_controllers(parent, root):
    """Enable memory, pids and cpu for the children of every dir from ``root`` down to
    ``parent`` (v2 delegates controllers one level at a time)."""
    chain = []
    path = parent
    while True:
        chain.append(path)
        if os.path.normpath(path) == os.path.normpath(root):
            break
        up = os.path.dirname(path)
        if up == path:
            break
        path = up
    for path in reversed(chain):
        os.makedirs(path, exist_ok=True)
        available = set((_read(os.path.join(path, "cgroup.controllers")) or "").split())
        enabled = set((_read(os.path.join(path, "cgroup.subtree_control")) or "").split())
        missing = [c for c in WANTED if c in available and c not in enabled]
        if missing:
            _write(os.path.join(path, "cgroup.subtree_control"),
                   " ".join("+" + c for c in missing))


class Driver:
    """Makes container cgroups in the hierarchies the probe found."""

    def __init__(self, version, mounts):
        self.version = version
        self.mounts = mounts  # v1: {controller: mount point}; v2: {"unified": mount point}

    def cgroup(self, parent, name):
        """The cgroup PARENT/NAME (not created yet)."""
        parts = [p for p in (parent or DEFAULT_PARENT).split("/") if p] + [name]
        if any(p in (".", "..") for p in parts):
            raise CgroupError(f"bad cgroup path {parent}/{name}")
        dirs = {ctrl: os.path.join(mount, *parts) for ctrl, mount in self.mounts.items()}
        if self.version == 2:
            group = _V2Cgroup(dirs, 2)
            group.root = self.mounts["unified"]
            return group
        return _V1Cgroup(dirs, 1)


def open_driver(mountinfo="/proc/self/mountinfo", root="/sys/fs/cgroup"):
    """The driver for this host; CgroupError when it has no usable cgroup hierarchy."""
    mounts = probe.cgroup_mounts(mountinfo)
    for point, fstype, _ in mounts:
        if fstype == "cgroup2":
            available = set((_read(os.path.join(point, "cgroup.controllers")) or "").split())
            if all(c in available for c in WANTED):
                return Driver(2, {"unified": point})
    v1 = {}
    for point, fstype, options in mounts:
        if fstype != "cgroup":
            continue
        for option in options.split(","):
            if option in WANTED + ("cpuacct",) and option not in v1:
                v1[option] = point
    if all(c in v1 for c in WANTED):
        return Driver(1, v1)
    raise CgroupError(f"no cgroup hierarchy with the {', '.join(WANTED)} controllers "
                      f"under {root}")

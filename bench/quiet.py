"""How busy this machine's CPUs are, and waiting for them to go quiet before a timed run.

The lab hosts share this machine's CPUs with every tool the benches time. What one run
leaves behind (sessions closing, processes exiting on 32 hosts) would otherwise be
billed to whichever command runs next."""

import time
from pathlib import Path


def cpu_times():
    """(busy, total) jiffies of all CPUs since boot, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle, iowait
    return sum(values) - idle, sum(values)


def busy_during(seconds):
    """The fraction of this machine's CPU time that was busy over ``seconds``."""
    busy, total = cpu_times()
    time.sleep(seconds)
    busy_after, total_after = cpu_times()
    return (busy_after - busy) / max(1, total_after - total)


def wait_quiet(threshold, patience, window=2.0):
    """Wait (at most ``patience`` seconds) for a ``window``-second stretch in which this
    machine's CPUs are busy less than ``threshold``; return that stretch's busy fraction."""
    deadline = time.monotonic() + patience
    while True:
        busy = busy_during(window)
        if busy < threshold or time.monotonic() >= deadline:
            return busy

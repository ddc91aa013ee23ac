"""Time `fleet lab up --hosts N` from nothing and measure the memory each lab host costs.

Memory per host is the proportional set size (PSS, from /proc/PID/smaps_rollup) of every
process in the host's PID namespace at rest, i.e. its sshd, plus the same figure read from
the host's memory cgroup (memory.usage_in_bytes on v1, memory.current on v2) where the
host has one. Uses its own lab (state dir, subnet and prefix) so a running lab is untouched.
Appends its table to bench/RESULTS.md.

Usage (as root): python3 bench/lab_bench.py [--hosts 32] [--runs 3]
"""

import argparse
import datetime
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from results import replace_section  # noqa: E402

from fleet.lab import hostns  # noqa: E402
from fleet.lab import lab as lab_lib  # noqa: E402
from fleet.lab.config import LabConfig  # noqa: E402

CONFIG = LabConfig(Path("/var/lib/fleet-lab-bench"), "10.231.9.0/24", "fleetlabb")
ENV = dict(os.environ, FLEET_LAB_DIR=str(CONFIG.state_dir), FLEET_LAB_SUBNET=CONFIG.subnet,
           FLEET_LAB_PREFIX=CONFIG.prefix)


def fleet(*args):
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "fleet", *args], env=ENV, check=True,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def pss_kib(pid):
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0


def cgroup_kib(index):
    for point, _, fstype, directory in hostns.host_cgroup_dirs(CONFIG.cgroup_leaf(index)):
        for name in ("memory.usage_in_bytes", "memory.current"):
            path = Path(directory, name)
            if (point.endswith("/memory") or fstype == "cgroup2") and path.exists():
                return int(path.read_text()) // 1024
    return None


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=32)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    ups, again, downs, pss, cgroup = [], [], [], [], []
    for _ in range(args.runs):
        ups.append(fleet("lab", "up", "--hosts", str(args.hosts)))
        again.append(fleet("lab", "up", "--hosts", str(args.hosts)))
        state = lab_lib.load_state(CONFIG)
        time.sleep(0.5)  # let sshd settle after start-up
        pss.append(statistics.mean(pss_kib(h.pid) for h in state.hosts))
        usage = [cgroup_kib(h.index) for h in state.hosts]
        if all(u is not None for u in usage):
            cgroup.append(statistics.mean(usage))
        downs.append(fleet("lab", "down"))
    lines = [
        "",
        f"## fleet lab up, {args.hosts} hosts "
        f"({datetime.date.today()}, `python3 bench/lab_bench.py`)",
        "",
        f"Median of {args.runs} runs; each command timed as a whole process. "
        "`up` from nothing includes the three registries and their seed images.",
        "",
        "| lab up (cold) | lab up (again, idempotent) | lab down | PSS per host | "
        "memory cgroup per host |",
        "|---|---|---|---|---|",
        f"| {statistics.median(ups):.2f} s | {statistics.median(again):.2f} s | "
        f"{statistics.median(downs):.2f} s | {statistics.median(pss) / 1024:.2f} MiB | "
        + (f"{statistics.median(cgroup) / 1024:.2f} MiB |" if cgroup else "n/a |"),
    ]
    print("\n".join(lines))
    replace_section("## fleet lab up", lines)


if __name__ == "__main__":
    main()

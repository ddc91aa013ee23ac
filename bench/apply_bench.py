"""fleet apply vs ansible-playbook vs pyinfra on the same lab hosts, plus the SSH floors.

Workloads (bench/workloads/): (a) ten `command: true` tasks with changed_when false,
(b) copy a 1 MiB random file and set its mode, (c) a directory and a template in it.
Each tool runs each workload twice (the first run makes the changes, the second must
change nothing); every command is timed as a whole process, started when the machine is
quiet (see run). ansible runs with pipelining and ControlPersist on, gather_facts false,
forks = hosts; fleet keeps its sessions too (ControlPersist 60 s, its default); pyinfra
with --parallel = hosts. Appends a section to bench/RESULTS.md.

Usage (as root): python3 bench/apply_bench.py [--hosts 32] [--runs 5]
"""

import argparse
import datetime
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORK = HERE / "workloads"
LAB = Path(os.environ.get("FLEET_LAB_DIR", "/var/lib/fleet-lab"))
sys.path.insert(0, str(HERE))

from ping_bench import (  # noqa: E402
    fleet_bin,
    lab_hosts,
    precompile,
    ssh_floor_command,
    write_inventory,
)
from quiet import wait_quiet  # noqa: E402
from results import replace_section  # noqa: E402

WORKLOADS = ("a_commands", "b_copy", "c_template")


# Before each timed command: wait (at most QUIET_WAIT s) for QUIET_WINDOW s in which the
# CPUs are less than QUIET busy, so no run pays for what the one before left running.
QUIET, QUIET_WINDOW, QUIET_WAIT = 0.1, 0.5, 10.0


def run(argv, env, check_output=None):
    wait_quiet(QUIET, QUIET_WAIT, QUIET_WINDOW)
    started = time.perf_counter()
    proc = subprocess.run(argv, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:3])} failed ({proc.returncode}):\n"
                         f"{(proc.stdout + proc.stderr)[-1500:]}")
    if check_output and check_output not in proc.stdout + proc.stderr:
        raise SystemExit(f"{' '.join(argv[:3])}: expected {check_output!r} in its output:\n"
                         f"{(proc.stdout + proc.stderr)[-1500:]}")
    return elapsed


def pyinfra_inventory(directory, hosts, extra):
    path = directory / "pyinfra_inventory.py"
    data = {"ssh_user": "root", "ssh_key": str(LAB / "client_key"),
            "ssh_known_hosts_file": str(LAB / "known_hosts"),
            "ssh_strict_host_key_checking": "yes", "ssh_allow_agent": False,
            "ssh_look_for_keys": False}
    data.update(extra)
    entries = ",\n".join(f"    ({address!r}, {{**DATA, 'name_': {name!r}}})"
                         for name, address in hosts)
    path.write_text(f"DATA = {data!r}\nbench = [\n{entries},\n]\n")
    return path


def cleanup(hosts, env):
    """Remove what earlier runs left on the hosts, so each tool starts from nothing."""
    script = "rm -rf /tmp/fleet-bench-*"
    argv = ["bash", "-c", " ".join(
        f"ssh -i {LAB / 'client_key'} -o UserKnownHostsFile={LAB / 'known_hosts'} "
        f"-o BatchMode=yes root@{address} '{script}' &" for _, address in hosts) + " wait"]
    subprocess.run(argv, env=env, check=True, capture_output=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=32)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--tools", default="fleet,ansible,pyinfra")
    args = parser.parse_args()
    tools = args.tools.split(",")
    precompile()
    fleet = fleet_bin()
    subprocess.run([fleet, "lab", "up", "--hosts", str(args.hosts), "-o", "json"], check=True,
                   stdout=subprocess.DEVNULL)
    hosts = lab_hosts()[:args.hosts]
    work = Path(tempfile.mkdtemp(prefix="fleet-bench-"))
    bench_file = work / "random-1m.bin"
    bench_file.write_bytes(random.Random(1).randbytes(1024 * 1024))
    inventory = write_inventory(work, hosts)
    control = work / "cp"
    control.mkdir()
    env = dict(os.environ, ANSIBLE_PIPELINING="True", ANSIBLE_HOST_KEY_CHECKING="True",
               ANSIBLE_SSH_ARGS="-o ControlMaster=auto -o ControlPersist=60s",
               ANSIBLE_SSH_CONTROL_PATH_DIR=str(control), ANSIBLE_HOME=str(work / "ah"),
               ANSIBLE_NOCOLOR="1", ANSIBLE_CONFIG=str(work / "ansible.cfg"),
               ANSIBLE_RETRY_FILES_ENABLED="False",
               FLEET_SESSIONS_DIR=str(work / "fs"))
    (work / "ansible.cfg").write_text("[defaults]\n")
    timings = {}
    try:
        for sample in range(args.runs):
            for workload in WORKLOADS:
                for tool in tools:
                    cleanup(hosts, env)
                    argv = _command(tool, workload, fleet, inventory, work, bench_file, hosts)
                    first = run(argv, env)
                    second = run(argv, env, check_output=_unchanged_marker(tool))
                    timings.setdefault((workload, tool), []).append((first, second))
                    print(sample, workload, tool, round(first, 2), round(second, 2),
                          flush=True)
            floors = {"paramiko floor": [sys.executable, str(HERE / "paramiko_floor.py"),
                                         str(LAB / "client_key"), str(LAB / "known_hosts"),
                                         "root"] + [a for _, a in hosts],
                      "OpenSSH floor": ssh_floor_command(hosts)}
            for name, argv in floors.items():
                timings.setdefault(("floor", name), []).append((run(argv, env),) * 2)
    finally:
        cleanup(hosts, env)
        for sock in control.iterdir():
            subprocess.run(["ssh", "-o", f"ControlPath={sock}", "-O", "exit", "bench"],
                           capture_output=True)
        subprocess.run([fleet, "sessions", "close"], env=env, capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    write_results(timings, tools, args)


def _unchanged_marker(tool):
    # pyinfra's shell operations run (and count as changes) every time: its second run
    # is timed but not checked.
    return {"fleet": "changed=0", "ansible": "changed=0"}.get(tool)


def _command(tool, workload, fleet, inventory, work, bench_file, hosts):
    extra = {"tool": tool, "bench_file": str(bench_file),
             "bench_template": str(WORK / "app.conf.j2")}
    if tool == "fleet":
        return [fleet, "apply", str(WORK / f"{workload}.yml"), "-i", str(inventory),
                "-f", str(len(hosts))] + [a for k, v in extra.items() for a in ("-e", f"{k}={v}")]
    if tool == "ansible":
        return ["ansible-playbook", str(WORK / f"{workload}.yml"), "-i", str(inventory),
                "-f", str(len(hosts))] + [a for k, v in extra.items() for a in ("-e", f"{k}={v}")]
    inv = pyinfra_inventory(work, hosts, extra)
    return ["pyinfra", str(inv), str(WORK / f"{workload}.py"), "-y", "--parallel",
            str(len(hosts))]


def write_results(timings, tools, args):
    lines = [
        "",
        f"## fleet apply vs ansible-playbook vs pyinfra, {args.hosts} hosts "
        f"({datetime.date.today()}, `python3 bench/apply_bench.py`)",
        "",
        f"Median of {args.runs} runs, seconds, each command timed as a whole process, "
        f"started once the CPUs were less than {QUIET:.0%} busy for {QUIET_WINDOW} s; "
        "first run / second run (the second changes nothing).",
        "",
        "| workload | " + " | ".join(tools) + " | paramiko floor | OpenSSH floor |",
        "|---|" + "---|" * (len(tools) + 2),
    ]
    floor = {n: statistics.median(t[0] for t in timings[("floor", n)])
             for n in ("paramiko floor", "OpenSSH floor")}
    for workload in WORKLOADS:
        cells = []
        for tool in tools:
            pairs = timings[(workload, tool)]
            cells.append(f"{statistics.median(p[0] for p in pairs):.2f} / "
                         f"{statistics.median(p[1] for p in pairs):.2f}")
        lines.append(f"| {workload} | " + " | ".join(cells)
                     + f" | {floor['paramiko floor']:.2f} | {floor['OpenSSH floor']:.2f} |")
    lines += _bars(timings, tools, floor["paramiko floor"])
    print("\n".join(lines))
    replace_section("## fleet apply", lines)


# The bars: how many times faster than fleet each tool must be at least (or, for
# the floor, how many times slower fleet may be at most).
BARS = {"pyinfra": 1.5, "ansible": 10.0}
FLOOR_BAR = 1.5


def _bars(timings, tools, floor):
    """One line per workload: the worst ratio against each bar, first and second run."""
    lines = ["", "Against the bars (worst of first and second run):", ""]
    for workload in WORKLOADS:
        fleet = [statistics.median(p[i] for p in timings[(workload, "fleet")])
                 for i in (0, 1)] if "fleet" in tools else None
        if not fleet:
            continue
        parts = []
        for tool, bar in BARS.items():
            if tool in tools:
                other = [statistics.median(p[i] for p in timings[(workload, tool)])
                         for i in (0, 1)]
                worst = min(o / f for o, f in zip(other, fleet))
                parts.append(f"{tool} / fleet {worst:.2f}x (bar {bar:g}x: "
                             f"{'met' if worst >= bar else 'not met'})")
        worst = max(fleet) / floor
        parts.append(f"fleet / paramiko floor {worst:.2f}x (bar {FLOOR_BAR:g}x: "
                     f"{'met' if worst <= FLOOR_BAR else 'not met'})")
        lines.append(f"- {workload}: " + "; ".join(parts) + ".")
    return lines


if __name__ == "__main__":
    main()

"""Time `fleet ping` against `ansible all -m ping` and two SSH floors on 1, 8 and 32 lab hosts.

Every command is timed as a whole process (interpreter start and imports included):
- fleet ping, payload already cached on the hosts, sessions kept between commands (its
  default ControlPersist; one warm-up run first);
- ansible all -m ping with pipelining and ControlPersist on, forks = hosts (warm masters);
- OpenSSH floor: one cold `ssh HOST /usr/bin/python3 -c pass` per host, all in parallel;
- paramiko floor: the same over paramiko in threads (bench/paramiko_floor.py).
Writes the table, the commands and the machine to bench/RESULTS.md.

Usage (as root): python3 bench/ping_bench.py [--runs 5] [--sizes 1,8,32]
"""

import argparse
import datetime
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from results import replace_section  # noqa: E402

LAB = Path(os.environ.get("FLEET_LAB_DIR", "/var/lib/fleet-lab"))


def precompile():
    """Byte-compile fleet as an install would: with PYTHONDONTWRITEBYTECODE set (as here),
    an editable checkout would otherwise recompile changed modules on every run."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(HERE.parent / "fleet"),
                    str(HERE.parent / "agent_payload")], check=True, stdout=subprocess.DEVNULL)


def fleet_bin():
    """The installed console script (its shebang names the real interpreter, no shim)."""
    candidate = Path(sys.executable).with_name("fleet")
    return str(candidate) if candidate.exists() else shutil.which("fleet")


def bench_lab(fleet, hosts):
    """Bring the lab up with ``hosts`` hosts; (its inventory path, its plain registry)."""
    subprocess.run([fleet, "lab", "up", "--hosts", str(hosts), "-o", "json"], check=True,
                   stdout=subprocess.DEVNULL)
    inventory = LAB / "inventory.ini"
    return str(inventory), inventory.read_text().split("fleet_lab_registry=")[1].split()[0]


def lab_hosts():
    hosts = []
    for line in (LAB / "inventory.ini").read_text().splitlines():
        if "ansible_host=" in line:
            name, rest = line.split(None, 1)
            hosts.append((name, rest.split("ansible_host=")[1].split()[0]))
    return hosts


def write_inventory(directory, hosts):
    path = directory / f"hosts-{len(hosts)}.ini"
    lines = ["[bench]"] + [f"{name} ansible_host={address}" for name, address in hosts]
    lines += ["", "[all:vars]", "ansible_user=root",
              "ansible_python_interpreter=/usr/bin/python3",
              f"ansible_ssh_private_key_file={LAB / 'client_key'}",
              f"ansible_ssh_known_hosts_file={LAB / 'known_hosts'}",
              f"ansible_ssh_common_args='-o UserKnownHostsFile={LAB / 'known_hosts'} "
              "-o StrictHostKeyChecking=yes'"]
    path.write_text("\n".join(lines) + "\n")
    return path


def time_command(argv, env, runs, warmup=1):
    """Median and minimum wall seconds of ``argv`` over ``runs`` runs after warm-ups."""
    samples = []
    for index in range(warmup + runs):
        started = time.perf_counter()
        proc = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
        elapsed = time.perf_counter() - started
        if proc.returncode != 0:
            raise SystemExit(f"{argv[0]} failed ({proc.returncode}): {proc.stderr.strip()[-300:]}")
        if index >= warmup:
            samples.append(elapsed)
    return statistics.median(samples), min(samples)


def ssh_floor_command(hosts):
    ssh = (f"ssh -i {LAB / 'client_key'} -o UserKnownHostsFile={LAB / 'known_hosts'} "
           "-o StrictHostKeyChecking=yes -o ControlMaster=no -o ControlPath=none "
           "-o BatchMode=yes")
    loop = " ".join(address for _, address in hosts)
    script = (f'pids=""; for a in {loop}; do {ssh} root@$a /usr/bin/python3 -c pass & '
              'pids="$pids $!"; done; rc=0; for p in $pids; do wait $p || rc=1; done; exit $rc')
    return ["bash", "-c", script]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--sizes", default="1,8,32")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    precompile()
    fleet = fleet_bin()
    subprocess.run([fleet, "lab", "up", "--hosts", str(max(sizes)), "-o", "json"], check=True,
                   stdout=subprocess.DEVNULL)
    hosts = lab_hosts()
    work = Path(tempfile.mkdtemp(prefix="fleet-bench-"))
    control_dir = work / "cp"
    control_dir.mkdir()
    env = dict(os.environ, ANSIBLE_PIPELINING="True", ANSIBLE_HOST_KEY_CHECKING="True",
               ANSIBLE_SSH_ARGS="-o ControlMaster=auto -o ControlPersist=60s",
               ANSIBLE_SSH_CONTROL_PATH_DIR=str(control_dir), ANSIBLE_HOME=str(work / "ah"),
               ANSIBLE_NOCOLOR="1", ANSIBLE_LOCALHOST_WARNING="False",
               ANSIBLE_CONFIG=str(work / "ansible.cfg"),
               FLEET_SESSIONS_DIR=str(work / "fs"))
    (work / "ansible.cfg").write_text("[defaults]\n")
    rows = []
    commands = {}
    try:
        for size in sizes:
            subset = hosts[:size]
            inventory = write_inventory(work, subset)
            argvs = {
                "fleet ping": [fleet, "ping", "-i", str(inventory)],
                "ansible -m ping": ["ansible", "all", "-i", str(inventory), "-m", "ping",
                                    "-f", str(size)],
                "OpenSSH floor": ssh_floor_command(subset),
                "paramiko floor": [sys.executable, str(HERE / "paramiko_floor.py"),
                                   str(LAB / "client_key"), str(LAB / "known_hosts"), "root"]
                + [address for _, address in subset],
            }
            timings = {name: time_command(argv, env, args.runs) for name, argv in argvs.items()}
            rows.append((size, timings))
            commands = argvs
            print(size, {k: round(v[0], 3) for k, v in timings.items()}, flush=True)
    finally:
        for sock in control_dir.iterdir():
            subprocess.run(["ssh", "-o", f"ControlPath={sock}", "-O", "exit", "fleet-bench"],
                           capture_output=True)
        subprocess.run([fleet, "sessions", "close"], env=env, capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    write_results(rows, commands, args.runs)


def write_results(rows, commands, runs):
    names = ["fleet ping", "ansible -m ping", "OpenSSH floor", "paramiko floor"]
    lines = [
        "# fleet ping vs ansible ping and the SSH floors",
        "",
        f"Measured {datetime.date.today()} by `python3 bench/ping_bench.py` on {platform.node()}"
        f" ({os.cpu_count()} cores, kernel {platform.release()}), lab hosts from `fleet lab up`.",
        f"Median of {runs} runs after one warm-up (minimum in brackets), seconds, each command "
        "timed as a whole process. fleet keeps its sessions between commands (ControlPersist "
        "60 s, its default) and ansible its SSH masters (ControlPersist=60s): both start warm; "
        "the floors connect anew each time.",
        "",
        "| hosts | " + " | ".join(names) + " | fleet / paramiko floor | ansible / fleet |",
        "|---|" + "---|" * (len(names) + 2),
    ]
    for size, timings in rows:
        cells = [f"{timings[n][0]:.2f} ({timings[n][1]:.2f})" for n in names]
        ratio_floor = timings["fleet ping"][0] / timings["paramiko floor"][0]
        ratio_ansible = timings["ansible -m ping"][0] / timings["fleet ping"][0]
        lines.append(f"| {size} | " + " | ".join(cells)
                     + f" | {ratio_floor:.2f}x | {ratio_ansible:.1f}x |")
    lines += ["", "Commands (for the largest size; the inventory lists that many lab hosts):", ""]
    for name, argv in commands.items():
        shown = " ".join(argv)
        if len(shown) > 400:
            shown = shown[:400] + " …"
        lines.append(f"- {name}: `{shown}`")
    lines += ["", "ansible runs with ANSIBLE_PIPELINING=True and ANSIBLE_SSH_ARGS="
              "'-o ControlMaster=auto -o ControlPersist=60s' (its warm-up run opens the masters "
              "the timed runs reuse)."]
    replace_section("# fleet ping", lines)


if __name__ == "__main__":
    main()

"""Create + start + wait of a busybox container running `true`, one after another: fleet's
payload on a lab host vs runc, crun and podman on this machine, same rootfs.

- fleet (open session): N container_run calls over one payload session, as `fleet apply`
  would send them; the container is created, started, waited for and removed each time.
- fleet run --rm: the whole command, SSH connection and payload start included.
- runc run / crun run: a bundle whose rootfs is a copy of the image's layer as fleet
  unpacked it on the lab host, `runc spec` defaults (new network namespace), args true.
  crun refuses this machine's hybrid cgroups, so it runs in a mount namespace of its own
  with /sys/fs/cgroup/unified unmounted (shared/PEERS.md).
- podman run --rm --network none, with the bench's own storage (pull_bench's set-up).

Milliseconds per container, median of the runs.

Density: N detached `sleep` containers on one lab host through the container module, and
the memory of what supervises each (proportional set size from /proc/PID/smaps_rollup)
next to podman's conmon, measured the same way for N `podman run -d` containers.

Writes a section of bench/RESULTS.md.

Usage (as root): python3 bench/run_bench.py [--runs 50] [--density 100]
"""

import argparse
import datetime
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from ping_bench import LAB, bench_lab, fleet_bin, precompile  # noqa: E402
from pull_bench import podman_command, remove_runtime_dirs  # noqa: E402
from results import replace_section  # noqa: E402

WORK = Path("/var/tmp/fleet-bench-run")


def _ms(seconds):
    return seconds * 1000


def fleet_session(inventory, host, image, runs):
    from fleet.inventory import load_inventory
    from fleet.transport.session import Session
    from fleet.transport.targets import target_for
    session = Session.open(target_for(load_inventory(inventory), host, 10.0))
    times = []
    try:
        for _ in range(runs + 1):
            started = time.perf_counter()
            result = session.call("container_run", {"image": image, "command": ["true"],
                                                    "network_mode": "none"}, timeout=60)
            times.append(time.perf_counter() - started)
            if result.get("rc") != 0:
                raise SystemExit(f"fleet container_run failed: {result}")
    finally:
        session.close()
    return [_ms(t) for t in times[1:]]  # the first call also imports the runtime


def _pss_kib(pids_text):
    return [int(v) for v in pids_text.split() if v.isdigit()]


def fleet_density(inventory, host, address, image, count):
    """PSS (KiB) per container of what supervises ``count`` detached sleep containers on
    ``host``: the monitor(s) named in their state, divided by the containers."""
    from fleet.inventory import load_inventory
    from fleet.transport.session import Session
    from fleet.transport.targets import target_for
    session = Session.open(target_for(load_inventory(inventory), host, 10.0))
    names = [f"fleet-bench-density-{i}" for i in range(count)]
    try:
        for name in names:
            result = session.call("container", {"name": name, "image": image,
                                                "command": ["sleep", "3600"],
                                                "network_mode": "none"}, timeout=60)
            if result.get("failed"):
                raise SystemExit(f"fleet container failed: {result}")
        time.sleep(1)
        script = ("for p in $(cat /var/lib/fleet/containers/*/state.json | "
                  "grep -o '\"supervisor\":[0-9]*' | cut -d: -f2 | sort -u); do "
                  "awk '/^Pss:/{print $2}' /proc/$p/smaps_rollup; done")
        out = subprocess.run(["ssh", "-i", str(LAB / "client_key"), "-o",
                              f"UserKnownHostsFile={LAB / 'known_hosts'}", f"root@{address}",
                              script], check=True, capture_output=True, text=True).stdout
        return [sum(_pss_kib(out)) / count]
    finally:
        for name in names:
            session.call("container", {"name": name, "state": "absent", "force_kill": True},
                         timeout=60)
        session.close()


def conmon_density(podman, image, count):
    """PSS (KiB) of each conmon of ``count`` `podman run -d` sleep containers."""
    try:
        for _ in range(count):
            subprocess.run(podman + ["run", "-d", "--network", "none", image, "sleep", "3600"],
                           check=True, stdout=subprocess.DEVNULL)
        time.sleep(1)
        pids = subprocess.run(["pgrep", "-x", "conmon"], capture_output=True,
                              text=True).stdout.split()
        values = []
        for pid in pids:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    values.append(int(line.split()[1]))
        return values
    finally:
        subprocess.run(podman + ["rm", "-f", "-a", "-t", "0"], capture_output=True)


def timed_each(argv_for, runs):
    times = []
    for i in range(runs):
        started = time.perf_counter()
        subprocess.run(argv_for(i), check=True, stdout=subprocess.DEVNULL)
        times.append(_ms(time.perf_counter() - started))
    return times


def make_bundle(fleet, inventory, host, image):
    """A runc bundle whose rootfs is the image's layer as fleet unpacked it on ``host``."""
    shown = subprocess.run([fleet, "image", "inspect", "-i", inventory, host, image],
                           check=True, capture_output=True, text=True).stdout
    lower = json.loads(shown)[0]["GraphDriver"]["Data"]["LowerDir"].split(":")
    if len(lower) != 1:
        raise SystemExit("the bench expects a one-layer image")
    on_machine = LAB / "hosts" / host / "var-lib-fleet" / os.path.relpath(lower[0],
                                                                          "/var/lib/fleet")
    bundle = WORK / "bundle"
    shutil.rmtree(bundle, ignore_errors=True)
    bundle.mkdir(parents=True)
    subprocess.run(["cp", "-a", str(on_machine), str(bundle / "rootfs")], check=True)
    subprocess.run(["runc", "spec", "--bundle", str(bundle)], check=True)
    spec = json.loads((bundle / "config.json").read_text())
    spec["process"]["args"] = ["true"]
    spec["process"]["terminal"] = False
    (bundle / "config.json").write_text(json.dumps(spec))
    return bundle


def crun_times(bundle, runs):
    """Each crun run timed inside one private mount namespace (see the module's note)."""
    script = ("umount /sys/fs/cgroup/unified 2>/dev/null; i=0; "
              f"while [ $i -lt {runs} ]; do s=$(date +%s%N); "
              f"crun run --bundle {bundle} fleet-bench-crun-$i >/dev/null || exit 1; "
              "e=$(date +%s%N); echo $(( (e - s) / 1000 )); i=$((i + 1)); done")
    out = subprocess.run(["unshare", "-m", "sh", "-c", script], check=True,
                         capture_output=True, text=True).stdout
    return [int(line) / 1000 for line in out.split()]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--density", type=int, default=100)
    args = parser.parse_args()
    precompile()
    fleet = fleet_bin()
    inventory, registry = bench_lab(fleet, 2)
    image, host = f"{registry}/busybox:latest", "lab01"
    subprocess.run([fleet, "pull", "-i", inventory, host, image], check=True,
                   stdout=subprocess.DEVNULL)
    address = (LAB / "inventory.ini").read_text().split(f"{host} ansible_host=")[1].split()[0]
    density = {"fleet monitor (per container)": fleet_density(inventory, host, address, image,
                                                 args.density)}
    results = {"fleet (open session)": fleet_session(inventory, host, image, args.runs),
               "fleet run --rm": timed_each(
                   lambda i: [fleet, "run", "--rm", "--network", "none", "-i", inventory,
                              host, image, "true"],
                   max(5, args.runs // 5))}
    bundle = make_bundle(fleet, inventory, host, image)
    try:
        results["runc run"] = timed_each(
            lambda i: ["runc", "run", "--bundle", str(bundle), f"fleet-bench-runc-{i}"],
            args.runs)
        if shutil.which("crun"):
            results["crun run"] = crun_times(bundle, args.runs)
        podman = podman_command(WORK)
        if podman:
            subprocess.run(podman + ["pull", "--quiet", "--tls-verify=false", image],
                           check=True, stdout=subprocess.DEVNULL)
            results["podman run --rm --network none"] = timed_each(
                lambda i: podman + ["run", "--rm", "--network", "none", image, "true"],
                max(5, args.runs // 5))
            density["podman conmon"] = conmon_density(podman, image, args.density)
    finally:
        if shutil.which("podman"):
            subprocess.run(["podman", "rmi", "-af"], capture_output=True)
        shutil.rmtree(WORK, ignore_errors=True)
        remove_runtime_dirs()
    medians = {name: statistics.median(times) for name, times in results.items()}
    fleet_ms = medians["fleet (open session)"]
    lines = [
        f"## Containers: create + start + wait of `true` ({datetime.date.today()}, "
        "`python3 bench/run_bench.py`)",
        "",
        f"busybox from the lab registry, one container after another; median milliseconds "
        f"per container ({args.runs} runs; fewer for the whole-command rows).",
        "",
        "| " + " | ".join(medians) + " |",
        "|" + "---|" * len(medians),
        "| " + " | ".join(f"{value:.1f}" for value in medians.values()) + " |",
        "",
    ]
    notes = []
    podman_ms = medians.get("podman run --rm --network none")
    if podman_ms:
        notes.append(f"fleet is {podman_ms / fleet_ms:.1f}x faster than podman (bar 3x)")
    notes.append(f"fleet / runc {fleet_ms / medians['runc run']:.2f}x (bar: within 2x)")
    lines.append("; ".join(notes) + ".")
    lines += ["", f"Density: {args.density} detached `sleep 3600` containers; proportional set "
              "size per container of what supervises it, KiB (median).", "",
              "| " + " | ".join(density) + " |", "|" + "---|" * len(density),
              "| " + " | ".join(f"{statistics.median(v):.0f}" if v else "-"
                                for v in density.values()) + " |"]
    print("\n".join(lines))
    replace_section("## Containers: create", lines)


if __name__ == "__main__":
    main()

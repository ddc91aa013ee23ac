"""Deploy the demo (playbooks/bestwebappever.yml) on 3, 8 and 32 lab hosts, one web replica
per host, with the images already on the hosts; wall time of `fleet apply` (a first
deploy: nothing of the project runs) and per host, and the time until every host's
port 8887 answers. Bar: 32 hosts in under 3x the time of 3 hosts.

--sessions says what each timed apply finds: "kept" (the default), the payload sessions
the down before it kept (ControlPersist, 60 s by default), as consecutive commands do;
"first", no session kept and no keeper running (`fleet sessions close` before it), as the
first command of the day with the default settings; "none", FLEET_PERSIST=no, a
connection per command. "first" and "none" write sections of their own.

One lab of the largest size (`fleet lab up --hosts N --demo`); the images go onto every
host by an apply and down per size (after a down --images, so that no host keeps an older
build), then each round deploys every size in turn to the first N hosts (an inventory grouped as
`lab up --hosts N` groups them): apply (timed), wait for every answer (timed), `fleet down
--volumes`. The sizes take turns because this machine's speed drifts over minutes (the
32-host time by up to a third within a quarter of an hour): measured one size after the
other, the ratio between them carried that drift. Runs in a lab of its own
($FLEET_LAB_DIR, default /var/lib/fleet-lab-bench on 10.234.0.0/24), brought down at the
end unless --keep.

Usage (as root): python3 bench/demo_bench.py [--sizes 3 8 32] [--runs 5]
                [--sessions kept|first|none]
"""

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
os.environ.setdefault("FLEET_LAB_DIR", "/var/lib/fleet-lab-bench")
os.environ.setdefault("FLEET_LAB_PREFIX", "fleetbnch")
os.environ.setdefault("FLEET_LAB_SUBNET", "10.234.0.0/24")

from ping_bench import fleet_bin, precompile  # noqa: E402
from quiet import wait_quiet  # noqa: E402
from results import replace_section  # noqa: E402

PLAYBOOK = ROOT / "playbooks" / "bestwebappever.yml"
# Each timed apply starts once the CPUs were less than QUIET busy for QUIET_WINDOW s
# (waiting at most QUIET_WAIT s).
QUIET, QUIET_WINDOW, QUIET_WAIT = 0.1, 0.5, 20.0
LAB = Path(os.environ["FLEET_LAB_DIR"])
# --sessions: (the RESULTS.md heading, what the timed applies found)
SESSIONS = {
    "kept": ("## Demo deploy:", "each apply found the sessions the down before it kept "
                                "(ControlPersist 60 s, fleet's default)"),
    "first": ("## Demo deploy (first command):", "each apply found no kept session and no "
                                                 "keeper (the first command, default settings)"),
    "none": ("## Demo deploy (no kept sessions):", "a connection per command "
                                                   "(FLEET_PERSIST=no)"),
}


def run(fleet, *args, check=True):
    return subprocess.run([fleet, *args], check=check, capture_output=True, text=True)


def addresses(inventory):
    return [line.split("ansible_host=")[1].split()[0]
            for line in Path(inventory).read_text().splitlines() if "ansible_host=" in line]


def all_answer(hosts, deadline=120.0):
    """Seconds until every host's port 8887 answers."""
    started = time.perf_counter()
    waiting = set(hosts)
    while waiting:
        for address in sorted(waiting):
            try:
                with urllib.request.urlopen(f"http://{address}:8887/", timeout=2):
                    waiting.discard(address)
            except urllib.error.HTTPError:
                waiting.discard(address)  # an answer (busybox httpd has no index page)
            except OSError:
                pass
        if waiting:
            if time.perf_counter() - started > deadline:
                raise SystemExit(f"no answer from {sorted(waiting)} in {deadline:.0f}s")
            time.sleep(0.1)
    return time.perf_counter() - started


def light_playbook():
    """The demo with busybox httpd as the web tier (same links, port and replicas): what
    fleet itself costs per host, without the web app's own start-up on the shared CPUs."""
    text = PLAYBOOK.read_text().replace(
        'image: "{{ registry }}/demo/web:latest"',
        'image: "{{ registry }}/busybox:latest"\n        command: ["httpd", "-f", "-p", "80"]')
    path = LAB / "bestwebappever-light.yml"
    path.write_text(text)
    return path


def sub_inventory(size):
    """The lab's inventory cut to its first ``size`` hosts, grouped as `fleet lab up
    --hosts SIZE` groups them (web: the first half, rounded up; db: the rest)."""
    text = (LAB / "inventory.ini").read_text()
    hosts = [line for line in text.splitlines() if "ansible_host=" in line][:size]
    half = (size + 1) // 2
    lines = ["[web]", *hosts[:half], "", "[db]", *hosts[half:], ""]
    lines += text[text.index("[all:vars]"):].splitlines()
    path = LAB / f"inventory-{size}.ini"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def close_sessions(fleet):
    """End every kept session and wait until the keeper has left."""
    answers = run(fleet, "sessions", "ls", "-o", "json").stdout
    keepers = {s["keeper"] for s in json.loads(answers)["sessions"]}
    run(fleet, "sessions", "close")
    deadline = time.monotonic() + 30
    while any(os.path.exists(f"/proc/{pid}") for pid in keepers):
        if time.monotonic() > deadline:
            raise SystemExit(f"session keeper(s) {sorted(keepers)} did not leave")
        time.sleep(0.05)


def measure(fleet, sizes, runs, playbook, first=False):
    """{size: ([apply seconds], [seconds until every host answers])}, the sizes taking
    turns in each round (order rotated) on one lab of max(sizes) hosts."""
    run(fleet, "lab", "up", "--hosts", str(max(sizes)), "--demo")
    everyone = str(LAB / "inventory.ini")
    # The images onto the hosts, as the lab has them now: a host's store that kept an
    # older demo/web:latest (lab down keeps the hosts' stores) would deploy that one, as
    # pull: missing does.
    run(fleet, "down", str(playbook), "-i", everyone, "--volumes", "--images")
    inventories = {size: sub_inventory(size) for size in sizes}
    for inventory in inventories.values():  # each size's db host is another host
        run(fleet, "apply", str(playbook), "-i", inventory)
        run(fleet, "down", str(playbook), "-i", inventory, "--volumes")
    samples = {size: ([], []) for size in sizes}
    for index in range(runs):
        shift = index % len(sizes)
        for size in sizes[shift:] + sizes[:shift]:
            inventory = inventories[size]
            if first:
                close_sessions(fleet)
            # What the last down left running (monitors and payloads exiting on every
            # host) must not be billed to this apply.
            wait_quiet(QUIET, QUIET_WAIT, QUIET_WINDOW)
            started = time.perf_counter()
            done = run(fleet, "apply", str(playbook), "-i", inventory, check=False)
            applied = time.perf_counter() - started
            if done.returncode != 0:
                raise SystemExit(f"apply on {size} hosts failed:\n{done.stdout}{done.stderr}")
            samples[size][0].append(applied)
            samples[size][1].append(applied + all_answer(addresses(inventory)))
            run(fleet, "down", str(playbook), "-i", inventory, "--volumes")
            print(f"round {index + 1}: {size} hosts apply {applied:.2f}s", flush=True)
    return samples


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[3, 8, 32])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--keep", action="store_true", help="leave the bench's lab up")
    parser.add_argument("--light", action="store_true",
                        help="also deploy with busybox httpd as the web tier")
    parser.add_argument("--sessions", choices=sorted(SESSIONS), default="kept",
                        help="what each timed apply finds (see above)")
    args = parser.parse_args()
    if args.sessions == "none":
        os.environ["FLEET_PERSIST"] = "no"
    else:
        os.environ.pop("FLEET_PERSIST", None)
    sizes = sorted(set(args.sizes))
    fleet = fleet_bin()
    precompile()
    try:
        first = args.sessions == "first"
        demo = measure(fleet, sizes, args.runs, PLAYBOOK, first)
        light = measure(fleet, sizes, args.runs, light_playbook(), first) if args.light else {}
    finally:
        run(fleet, "sessions", "close", check=False)
        if not args.keep:
            run(fleet, "lab", "down", check=False)
    first, last = sizes[0], sizes[-1]
    lines = [
        f"{SESSIONS[args.sessions][0]} bestwebappever on N hosts "
        f"({datetime.date.today()}, "
        f"`{' '.join(['python3 bench/demo_bench.py'] + sys.argv[1:])}`)",
        "",
        "PostgreSQL and Redis on one host, one web replica per host linked to both (across "
        "hosts), port 8887 published; images already on the hosts; a first deploy (nothing "
        f"of the project runs). One lab of {last} hosts, each size deploying to its first N "
        f"(grouped as `fleet lab up --hosts N` groups them); {args.runs} rounds, the sizes "
        "taking turns in each (so that the machine's drift over minutes falls on every "
        f"size alike), each apply started once the CPUs were less than {QUIET:.0%} busy for "
        f"{QUIET_WINDOW} s; medians; {SESSIONS[args.sessions][1]}. All lab hosts share this "
        "machine's 2 CPUs.",
        "",
        "| hosts | fleet apply (s) | per host (ms) | until every host answers (s) |"
        + (" apply, busybox web (s) |" if light else ""),
        "|---|---|---|---|" + ("---|" if light else ""),
    ]
    for size in sizes:
        apply_s = statistics.median(demo[size][0])
        lines.append(f"| {size} | {apply_s:.2f} | {apply_s / size * 1000:.0f} | "
                     f"{statistics.median(demo[size][1]):.2f} |"
                     + (f" {statistics.median(light[size][0]):.2f} |" if light else ""))
    rounds = [b / a for a, b in zip(demo[first][0], demo[last][0])]
    medians = statistics.median(demo[last][0]) / statistics.median(demo[first][0])
    lines += ["", f"{last} hosts take {statistics.median(rounds):.2f}x the time of {first} "
              f"(the median of the rounds' ratios: "
              f"{', '.join(f'{r:.2f}x' for r in rounds)}; ratio of the medians "
              f"{medians:.2f}x; bar: under 3x)"
              + (f"; with busybox as the web tier "
                 f"{statistics.median(light[last][0]) / statistics.median(light[first][0]):.2f}x"
                 if light else "") + "."]
    print("\n".join(lines))
    replace_section(SESSIONS[args.sessions][0], lines)


if __name__ == "__main__":
    main()

"""Deploy the demo (playbooks/bestwebappever.yml) on 3, 8 and 32 lab hosts, one web replica
per host, with the images already on the hosts; wall time of `fleet apply` (a first
deploy: nothing of the project runs) and per host, and the time until every host's
port 8887 answers. Bar: 32 hosts in under 3x the time of 3 hosts.

Each size: `fleet lab up --hosts N --demo`, one apply and down (which pulls the images
onto the hosts and keeps them), then per run: apply (timed), wait for every answer
(timed), `fleet down --volumes`. Runs in a lab of its own ($FLEET_LAB_DIR, default
/var/lib/fleet-lab-bench on 10.234.0.0/24), brought down at the end unless --keep.

Usage (as root): python3 bench/demo_bench.py [--sizes 3 8 32] [--runs 3]
"""

import argparse
import datetime
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


def measure(fleet, size, runs, playbook):
    run(fleet, "lab", "up", "--hosts", str(size), "--demo")
    inventory = str(LAB / "inventory.ini")
    hosts = addresses(inventory)
    run(fleet, "apply", str(playbook), "-i", inventory)  # the images onto the hosts
    run(fleet, "down", str(playbook), "-i", inventory, "--volumes")
    applies, answers = [], []
    for _ in range(runs):
        # What the last down left running (monitors and payloads exiting on every host)
        # must not be billed to this apply.
        wait_quiet(QUIET, QUIET_WAIT, QUIET_WINDOW)
        started = time.perf_counter()
        done = run(fleet, "apply", str(playbook), "-i", inventory, check=False)
        applies.append(time.perf_counter() - started)
        if done.returncode != 0:
            raise SystemExit(f"apply on {size} hosts failed:\n{done.stdout}{done.stderr}")
        answers.append(applies[-1] + all_answer(hosts))
        run(fleet, "down", str(playbook), "-i", inventory, "--volumes")
    return statistics.median(applies), statistics.median(answers)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[3, 8, 32])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="leave the bench's lab up")
    parser.add_argument("--light", action="store_true",
                        help="also deploy with busybox httpd as the web tier")
    args = parser.parse_args()
    fleet = fleet_bin()
    precompile()
    results, light = {}, {}
    try:
        for size in args.sizes:
            results[size] = measure(fleet, size, args.runs, PLAYBOOK)
            print(f"{size} hosts: apply {results[size][0]:.2f}s, all answering "
                  f"{results[size][1]:.2f}s", flush=True)
            if args.light:
                light[size] = measure(fleet, size, args.runs, light_playbook())
                print(f"{size} hosts, busybox web: apply {light[size][0]:.2f}s", flush=True)
    finally:
        if not args.keep:
            run(fleet, "lab", "down", check=False)
    first, last = min(results), max(results)
    lines = [
        f"## Demo deploy: bestwebappever on N hosts ({datetime.date.today()}, "
        "`python3 bench/demo_bench.py`)",
        "",
        "PostgreSQL and Redis on one host, one web replica per host linked to both (across "
        "hosts), port 8887 published; images already on the hosts; a first deploy (nothing "
        f"of the project runs). Median of {args.runs} runs, each started once the CPUs were "
        f"less than {QUIET:.0%} busy for {QUIET_WINDOW} s; all lab hosts share this "
        "machine's 2 CPUs.",
        "",
        "| hosts | fleet apply (s) | per host (ms) | until every host answers (s) |"
        + (" apply, busybox web (s) |" if light else ""),
        "|---|---|---|---|" + ("---|" if light else ""),
    ]
    for size, (apply_s, answer_s) in sorted(results.items()):
        lines.append(f"| {size} | {apply_s:.2f} | {apply_s / size * 1000:.0f} | "
                     f"{answer_s:.2f} |" + (f" {light[size][0]:.2f} |" if light else ""))
    ratio = results[last][0] / results[first][0]
    lines += ["", f"{last} hosts take {ratio:.2f}x the time of {first} (bar: under 3x)"
              + (f"; with busybox as the web tier {light[last][0] / light[first][0]:.2f}x"
                 if light else "") + "."]
    print("\n".join(lines))
    replace_section("## Demo deploy", lines)


if __name__ == "__main__":
    main()

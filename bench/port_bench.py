"""Throughput and latency of a published port: the kernel's NAT and the userland proxy
against the same server reached directly on the container's address from its own host.

A small HTTP server (busybox httpd serving a 13-byte index.html) runs in a container on
lab01; `wrk --latency` loads it for --duration seconds with --connections connections:

- NAT: the container on network fleet-bench-nat (kernel NAT), port published on lab01;
  wrk on lab02 asks http://LAB01:PORT/.
- direct: wrk on lab01 itself asks http://CONTAINER_IP:80/ (the bar's baseline).
- proxy: a second container on network fleet-bench-proxy (userland_proxy: true), port
  published on lab01; wrk on lab02 asks http://LAB01:PORT/.
- NAT, from lab01 (only with --local, for context): wrk on lab01 asks its own address's
  published port, the client where the direct path has it, the DNAT done in lab01's
  OUTPUT chain. Not by default: its connections and the direct path's leave lab01 by the
  same masqueraded address for the same container port, so the two share a conntrack
  tuple space and each slows the other (SYNs sent again, lab01's TcpExtTCPSynRetrans);
  this path then runs at a fraction of the others with a p50 under 1 ms, and the direct
  path drops from ~7600 to ~5000-6500 requests/s.

It all lives in a content store of its own on lab01 (STORE, removed at the end), so the
lab's own containers and networks are left alone.

The paths run one after another, --rounds times, in an order that rotates each round;
each figure is the median over the rounds, requests/s with its range. Also counted: the
SYNs the server's network namespace dropped because httpd's accept queue was full
(TcpExt ListenOverflows; busybox httpd listens with a backlog of 9, so with more
connections than that a client waits out a SYN retransmission, 1 s, which shows in p99),
and how busy this machine's CPUs were in the 2 s before each run, when nothing of the
bench runs: other work on the machine skews the figures, so each run first waits (at
most --quiet-wait seconds) for 2 s in which the CPUs are less than --quiet busy.

--connections defaults to 10, wrk's own default. With 32, the accept queue overflowed in
every run and a path's figure depended on how many of its clients sat out a 1 s SYN
retransmission: NAT / direct read anywhere from 0.77x to 0.96x on the same code. With 10
there were no overflows, and two runs of five rounds gave medians of 0.82x and 0.85x.

wrk runs on the lab hosts over SSH (they see this machine's /usr/bin/wrk). busybox httpd
answers one request per connection and wrk closes first, so every request leaves a
TIME_WAIT socket on the wrk host: at thousands of requests/s the 28232 ephemeral ports to
one address are used up within the run, and connect() then spends the rest of it looking
for a free port (kernel time; any path drops to some hundreds of requests/s, depending
on what the previous runs left). So during the runs the wrk hosts' network namespaces get
net.ipv4.tcp_tw_reuse=1 (TIME_WAIT ports reused for new outgoing connections), and their
own value back at the end; --no-tw-reuse leaves it alone. Everything named fleet-bench-*
is removed at the end.

Writes a section of bench/RESULTS.md.

Usage (as root): python3 bench/port_bench.py [--rounds 3] [--duration 10] [--connections 10]
"""

import argparse
import datetime
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from ping_bench import LAB, bench_lab, fleet_bin, lab_hosts, precompile  # noqa: E402
from quiet import wait_quiet  # noqa: E402
from results import replace_section  # noqa: E402

SERVER, CLIENT = "lab01", "lab02"
NAT_NET, PROXY_NET = "fleet-bench-nat", "fleet-bench-proxy"
NAT_BOX, PROXY_BOX = "fleet-bench-nat", "fleet-bench-proxy"
STORE = "/var/lib/fleet/fleet-bench-store"
BODY = "hello, fleet"
HTTPD = ["sh", "-c", f"mkdir -p /www && echo '{BODY}' > /www/index.html && "
         "exec httpd -f -p 80 -h /www"]
# --server keepalive: an HTTP/1.1 server that keeps connections open (python3 of the
# demo's web image), so that a run measures forwarding, not a connection per request.
KEEPALIVE = ["python3", "-c", (
    "from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer\n"
    "class H(BaseHTTPRequestHandler):\n"
    "    protocol_version = 'HTTP/1.1'\n"
    "    disable_nagle_algorithm = True\n"  # headers and body are two writes
    "    def do_GET(self):\n"
    f"        body = b'{BODY}\\n'\n"
    "        self.send_response(200)\n"
    "        self.send_header('Content-Length', str(len(body)))\n"
    "        self.end_headers()\n"
    "        self.wfile.write(body)\n"
    "    def log_message(self, *args):\n"
    "        pass\n"
    "ThreadingHTTPServer.daemon_threads = True\n"
    "ThreadingHTTPServer.request_queue_size = 128\n"
    "ThreadingHTTPServer(('', 80), H).serve_forever()\n")]
TW_REUSE = "/proc/sys/net/ipv4/tcp_tw_reuse"
UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60000.0}
PATHS = ["NAT", "direct", "proxy"]
LOCAL = f"NAT, from {SERVER}"


def ssh_argv(address, command):
    return ["ssh", "-i", str(LAB / "client_key"),
            "-o", f"UserKnownHostsFile={LAB / 'known_hosts'}",
            "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes",
            f"root@{address}", command]


def ssh(address, command, timeout=120):
    proc = subprocess.run(ssh_argv(address, command), capture_output=True, text=True,
                          timeout=timeout)
    if proc.returncode != 0:
        raise SystemExit(f"{command!r} on {address} failed ({proc.returncode}): "
                         f"{proc.stderr.strip()[-300:]}")
    return proc.stdout


def _ms(text):
    """A wrk duration ('812.34us', '1.20ms', '2.01s') in milliseconds."""
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not match:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(match.group(1)) * UNITS[match.group(2)]


def parse_wrk(out):
    """requests/s, latency avg/p50/p99 (ms), requests, errors from `wrk --latency`."""
    found = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
             "avg": _ms(re.search(r"^\s+Latency\s+(\S+)", out, re.M).group(1)),
             "requests": int(re.search(r"(\d+) requests in", out).group(1)),
             "errors": 0}
    for pct in ("50", "99"):
        found[f"p{pct}"] = _ms(re.search(rf"^\s+{pct}%\s+(\S+)", out, re.M).group(1))
    socket = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                       out)
    if socket:
        found["errors"] += sum(int(v) for v in socket.groups())
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if bad:
        found["errors"] += int(bad.group(1))
    return found


def wrk_command(url, threads, connections, duration):
    return f"wrk -t{threads} -c{connections} -d{duration}s --latency {url}"


def wait_served(address, url, timeout=15.0):
    """Until ``url`` answers with the page, asked from lab host ``address``."""
    probe = (f"python3 -c \"import sys, time, urllib.request\n"
             f"end = time.time() + {timeout}\n"
             "while True:\n"
             "    try:\n"
             f"        sys.exit(0 if b'{BODY}' in urllib.request.urlopen('{url}', timeout=2)"
             ".read() else 1)\n"
             "    except OSError:\n"
             "        if time.time() > end: raise\n"
             "        time.sleep(0.2)\"")
    ssh(address, probe, timeout=timeout + 30)


def checked(result, what):
    if result.get("failed"):
        raise SystemExit(f"{what} failed: {result.get('msg') or result}")
    return result


def set_tw_reuse(values):
    """Set net.ipv4.tcp_tw_reuse on lab hosts ({address: value}); return the values
    they had."""
    had = {}
    for address, value in values.items():
        had[address] = ssh(address, f"cat {TW_REUSE}; echo {value} > {TW_REUSE}").strip()
    return had


def listen_overflows(server, container_id):
    """TcpExt ListenOverflows of the container's network namespace (on lab host
    ``server``; fleet names it fleet-ID12)."""
    out = ssh(server, f"ip netns exec fleet-{container_id[:12]} cat /proc/net/netstat")
    lines = [line.split() for line in out.splitlines() if line.startswith("TcpExt:")]
    return int(dict(zip(lines[0], lines[1]))["ListenOverflows"])


def start_servers(session, image, registry, nat_port, proxy_port, command=HTTPD):
    """The two networks and their httpd containers; {name: (container address, id)}."""
    checked(session.call("network", {"name": NAT_NET, "store": STORE}, timeout=60),
            f"network {NAT_NET}")
    checked(session.call("network", {"name": PROXY_NET, "userland_proxy": True,
                                     "store": STORE}, timeout=60), f"network {PROXY_NET}")
    addresses = {}
    for name, network, port in ((NAT_BOX, NAT_NET, nat_port),
                                (PROXY_BOX, PROXY_NET, proxy_port)):
        result = checked(session.call("container", {
            "name": name, "image": image, "command": command, "network_mode": network,
            "ports": [f"{port}:80"], "insecure_registries": [registry], "store": STORE},
            timeout=120),
            f"container {name}")
        shown = result["container"]
        addresses[name] = (shown["NetworkSettings"]["IPAddress"], shown["Id"])
    return addresses


def stop_servers(session, server):
    """The containers, then the networks (their bridges and rules are the host's), then
    the store; say what could not be removed, and go on."""
    calls = [("container", {"name": name, "state": "absent", "force_kill": True})
             for name in (NAT_BOX, PROXY_BOX)]
    calls += [("network", {"name": network, "state": "absent"})
              for network in (NAT_NET, PROXY_NET)]
    for module, params in calls:
        try:
            result = session.call(module, dict(params, store=STORE), timeout=60)
        except Exception as exc:  # noqa: BLE001 - clean up as much as possible
            result = {"failed": True, "msg": str(exc)}
        if result.get("failed"):
            print(f"cleanup: {module} {params['name']}: {result.get('msg')}", file=sys.stderr)
    subprocess.run(ssh_argv(server, f"rm -rf {STORE}"), capture_output=True, timeout=60)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--nat-port", type=int, default=18080)
    parser.add_argument("--proxy-port", type=int, default=18081)
    parser.add_argument("--quiet", type=float, default=0.2,
                        help="CPU busy fraction below which the machine counts as quiet")
    parser.add_argument("--quiet-wait", type=float, default=120,
                        help="seconds to wait for a quiet machine before each run")
    parser.add_argument("--local", action="store_true",
                        help=f"also NAT from {SERVER} itself (see the module's note)")
    parser.add_argument("--server", choices=("httpd", "keepalive"), default="httpd",
                        help="busybox httpd (a connection per request) or a keep-alive "
                             "HTTP/1.1 server (python3 of the demo's web image)")
    parser.add_argument("--no-tw-reuse", dest="tw_reuse", action="store_false",
                        help="leave the wrk hosts' net.ipv4.tcp_tw_reuse as it is")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is missing: apt-get install -y wrk")
    precompile()
    fleet = fleet_bin()
    # Never shrink a lab that is up with more hosts (lab up converges to the count given).
    have = len(lab_hosts()) if (LAB / "inventory.ini").exists() else 0
    inventory, registry = bench_lab(fleet, max(2, have))
    addresses = dict(lab_hosts())
    server, client = addresses[SERVER], addresses[CLIENT]
    image = f"{registry}/busybox:latest" if args.server == "httpd" else \
        f"{registry}/demo/web:latest"

    from fleet.inventory import load_inventory
    from fleet.transport.session import Session
    from fleet.transport.targets import target_for
    session = Session.open(target_for(load_inventory(inventory), SERVER, 10.0))
    paths = PATHS + [LOCAL] if args.local else PATHS
    samples = {path: [] for path in paths}
    tw_had = {}
    try:
        if args.tw_reuse:
            for address in (server, client):  # one at a time: restore what was changed
                tw_had.update(set_tw_reuse({address: 1}))
        boxes = start_servers(session, image, registry, args.nat_port, args.proxy_port,
                              HTTPD if args.server == "httpd" else KEEPALIVE)
        where = {"NAT": (client, f"http://{server}:{args.nat_port}/"),
                 "direct": (server, f"http://{boxes[NAT_BOX][0]}:80/"),
                 "proxy": (client, f"http://{server}:{args.proxy_port}/"),
                 LOCAL: (server, f"http://{server}:{args.nat_port}/")}
        where = {path: where[path] for path in paths}
        serving = {path: boxes[PROXY_BOX if path == "proxy" else NAT_BOX][1] for path in paths}
        for host, url in where.values():
            wait_served(host, url)
            ssh(host, wrk_command(url, args.threads, args.connections, 1))  # warm-up
        for round_index in range(args.rounds):
            order = paths[round_index % len(paths):] + paths[:round_index % len(paths)]
            for path in order:
                host, url = where[path]
                background = wait_quiet(args.quiet, args.quiet_wait)
                overflows = listen_overflows(server, serving[path])
                out = ssh(host, wrk_command(url, args.threads, args.connections,
                                            args.duration), timeout=args.duration + 60)
                found = dict(parse_wrk(out), background=background,
                             overflows=listen_overflows(server, serving[path]) - overflows)
                samples[path].append(found)
                print(f"round {round_index + 1} {path:16} {found['rps']:7.0f} req/s  "
                      f"avg {found['avg']:.2f} ms  p50 {found['p50']:.2f} ms  "
                      f"p99 {found['p99']:.2f} ms  errors {found['errors']}  "
                      f"listen overflows {found['overflows']}  "
                      f"CPU busy before {background:.0%}", flush=True)
    finally:
        try:
            stop_servers(session, server)
        finally:
            session.close()
            if tw_had:
                set_tw_reuse(tw_had)
    write_results(args, samples, where, server, client)


def write_results(args, samples, where, server, client):
    medians = {path: {key: statistics.median(s[key] for s in runs)
                      for key in ("rps", "avg", "p50", "p99", "overflows")}
               for path, runs in samples.items()}
    errors = {path: sum(s["errors"] for s in runs) for path, runs in samples.items()}
    direct = medians["direct"]["rps"]
    run_with = wrk_command("URL", args.threads, args.connections, args.duration)
    lines = [
        f"## Published ports: {'keep-alive server, ' if args.server == 'keepalive' else ''}"
        f"NAT and userland proxy vs direct ({datetime.date.today()}, "
        f"`{' '.join(['python3 bench/port_bench.py'] + sys.argv[1:])}`)",
        "",
        (f"busybox httpd (`httpd -f`, a {len(BODY) + 1}-byte index.html)"
         if args.server == "httpd" else
         f"a keep-alive HTTP/1.1 server (Python's ThreadingHTTPServer, a {len(BODY) + 1}-byte "
         "body; `--server keepalive`)")
        + f" in a container on {SERVER}; `{run_with}` from a lab host over SSH; median of "
        f"{args.rounds} rounds "
        "(paths alternating, order rotated each round). "
        + ("net.ipv4.tcp_tw_reuse=1 on the wrk hosts during the runs (see the script: "
           "without it each run uses up the ephemeral ports and measures connect()'s search "
           "for a free one)." if args.tw_reuse else
           "The wrk hosts' net.ipv4.tcp_tw_reuse left as it was (--no-tw-reuse): runs may "
           "measure connect()'s search for a free ephemeral port more than the path."),
        "",
        "| path | wrk on | URL | requests/s (range) | latency avg | p50 | p99 | vs direct "
        "| listen overflows per run | errors |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    names = {server: SERVER, client: CLIENT}
    for path in samples:
        m = medians[path]
        host, url = where[path]
        rps = [s["rps"] for s in samples[path]]
        lines.append(f"| {path} | {names[host]} | {url} | {m['rps']:.0f} ({min(rps):.0f}–"
                     f"{max(rps):.0f}) | {m['avg']:.2f} ms | {m['p50']:.2f} ms "
                     f"| {m['p99']:.2f} ms | {m['rps'] / direct:.2f}x | {m['overflows']:.0f} "
                     f"| {errors[path]} |")
    # The verdict takes each round's pair (runs minutes apart, under the same conditions)
    # rather than the ratio of two medians taken from different rounds.
    per_round = [n["rps"] / d["rps"] for n, d in zip(samples["NAT"], samples["direct"])]
    nat = statistics.median(per_round)
    proxy = statistics.median(p["rps"] / d["rps"] for p, d in zip(samples["proxy"],
                                                                  samples["direct"]))
    latency = {key: medians["NAT"][key] / medians["direct"][key] for key in ("avg", "p50", "p99")}
    background = [s["background"] for runs in samples.values() for s in runs]
    lines += [
        "",
        f"NAT / direct, requests/s: {nat:.2f}x, the median of the rounds' ratios "
        f"({', '.join(f'{r:.2f}x' for r in per_round)}; ratio of the medians "
        f"{medians['NAT']['rps'] / direct:.2f}x). Bar: within 10%, i.e. >= 0.90x: "
        f"{'met' if nat >= 0.9 else 'not met'}. Latency, NAT / direct: avg "
        f"{latency['avg']:.2f}x, p50 {latency['p50']:.2f}x, p99 {latency['p99']:.2f}x "
        f"(medians; bar: at most 1.10x: "
        f"{'met' if max(latency.values()) <= 1.1 else 'not met'}). "
        f"Userland proxy / direct: {proxy:.2f}x "
        f"(ratio of the medians {medians['proxy']['rps'] / direct:.2f}x); proxy / NAT "
        f"{medians['proxy']['rps'] / medians['NAT']['rps']:.2f}x.",
        "",
        f"This machine's CPUs were busy {statistics.median(background):.0%} (median; at most "
        f"{max(background):.0%}) in the 2 s before each run, when the bench itself runs "
        f"nothing (each run waited up to {args.quiet_wait:.0f} s for less than "
        f"{args.quiet:.0%}): other work on the machine, which may have gone on during the "
        "run.",
        "",
        f"Caveat: measured on {platform.node()} ({os.cpu_count()} cores, kernel "
        f"{platform.release()}). The lab hosts are namespaces of this one machine, so wrk, "
        "the server, the proxy and the kernel's forwarding share these cores: the load "
        "generator competes with the server for CPU, and the figures are a comparison "
        f"between paths, not a capacity (wrk's {args.threads} threads alone can take "
        f"{args.threads} cores). The NAT and proxy rows also cross the lab's switch (a "
        f"macvlan) from {CLIENT}, which the direct row does not."
        + (" busybox httpd forks a process per "
           "connection and closes it after each response, so every request is a new TCP "
           "connection (and, on the NAT path, a new conntrack entry); it listens with a "
           "backlog of 9, so with more connections than that some SYNs are dropped (listen "
           "overflows) and their clients wait 1 s to send them again, which is what a p99 "
           "near 1 s is." if args.server == "httpd" else
           " The keep-alive server holds each of wrk's connections open: NAT and conntrack "
           "work once per connection, not per request."),
    ]
    print("\n".join(lines))
    replace_section("## Published ports" + (": keep-alive" if args.server == "keepalive"
                                            else ": NAT"), lines)


if __name__ == "__main__":
    main()

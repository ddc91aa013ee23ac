"""The packet filter on this machine, for both tools (iptables and nftables), each run in
a network namespace of its own (unshare -n): rules added, found by tag, removed, fleet's
chains gone afterwards; and a published port reached through the kernel's NAT, on the
host's address and on 127.0.0.1, then nothing left."""

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"),
                                reason="needs root and unshare")
BACKENDS = [tool for tool, binary in (("iptables", "iptables-restore"), ("nft", "nft"))
            if shutil.which(binary)]


def _in_private_netns(tool, script):
    """Run ``script`` with python in a new network namespace; its last line is JSON."""
    env = dict(os.environ, FLEET_FIREWALL=tool, PYTHONPATH=ROOT)
    proc = subprocess.run(["unshare", "-n", sys.executable, "-c", textwrap.dedent(script)],
                          capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("tool", BACKENDS)
def test_rules_by_tag(tool):
    seen = _in_private_netns(tool, """
        import json
        from agent_payload.runtime import firewall as F
        net = [{"chain": F.FORWARD, "in": "!fleetq0", "out": "fleetq0", "action": "drop"},
               {"chain": F.FORWARD, "in": "fleetq0", "out": "fl-+", "action": "drop"},
               {"chain": F.POSTROUTING, "src": "10.77.0.0/24", "out": "!fleetq0",
                "action": "masquerade"}]
        F.add([dict(r, tag="fleet-net-q") for r in net])
        port = {"chain": F.FORWARD, "dst": "10.77.0.2", "proto": "udp", "dport": 53,
                "action": "accept", "tag": "fleet-port-q"}
        F.add([port], first=True)
        during = {tag: len(rules) for tag, rules in F.tagged("fleet").items()}
        F.remove("fleet-port-q")
        after_port = sorted(F.tagged("fleet"))
        F.teardown()  # refused: the network's rules are still there
        kept = sorted(F.tagged("fleet"))
        F.remove("fleet-net-q")
        F.teardown()
        print(json.dumps([during, after_port, kept, F.tagged("fleet")]))
    """)
    during, after_port, kept, gone = seen
    assert during == {"fleet-net-q": 3, "fleet-port-q": 1, "fleet-replies": 1}
    assert after_port == kept == ["fleet-net-q", "fleet-replies"]
    assert gone == {}


@pytest.mark.parametrize("tool", BACKENDS)
def test_published_port_through_nat(tool, tmp_path):
    seen = _in_private_netns(tool, f"""
        import json, os, subprocess, time, urllib.request
        from agent_payload.oci.store import Store
        from agent_payload.runtime import firewall, network
        store = Store({str(tmp_path)!r})
        cid = os.urandom(32).hex()
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
        made = network.ensure(store, "fleetfw", "10.78.0.0/24")
        ports = [{{"host_ip": "", "host_port": 0, "port": 8080, "proto": "tcp"}},
                 {{"host_ip": "127.0.0.1", "host_port": 0, "port": 8080, "proto": "tcp"}}]
        settings = network.attach(store, "fleetfw", cid, ports)
        # what the container's PID 1 does first: the inside of its namespace
        serve = ("import http.server, sys; from agent_payload.runtime import netlink; "
                 "netlink.configure(sys.argv[1], int(sys.argv[2]), sys.argv[3]); "
                 "http.server.ThreadingHTTPServer(('', 8080), "
                 "http.server.SimpleHTTPRequestHandler).serve_forever()")
        server = subprocess.Popen(["ip", "netns", "exec", network.netns_name(cid),
                                   {sys.executable!r}, "-c", serve, settings["IPAddress"],
                                   str(settings["IPPrefixLen"]), settings["Gateway"]],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        answers = []
        try:
            for binding in [b for m in settings["Ports"].values() for b in m]:
                where = made["gateway"] if binding["HostIp"] == "0.0.0.0" else "127.0.0.1"
                for _ in range(100):
                    try:
                        with urllib.request.urlopen(
                                f"http://{{where}}:{{binding['HostPort']}}/", timeout=2) as r:
                            answers.append([where, r.status])
                            break
                    except OSError:
                        time.sleep(0.05)
        finally:
            server.kill()
            server.wait()
            network.detach(store, "fleetfw", cid)
            network.remove(store, "fleetfw")
        left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        print(json.dumps([answers, firewall.tagged("fleet"), network.netns_name(cid) in left,
                          os.path.exists("/sys/class/net/" + made["bridge"])]))
    """)
    answers, rules, netns_left, bridge_left = seen
    assert sorted(answers) == [["10.78.0.1", 200], ["127.0.0.1", 200]]
    assert rules == {} and not netns_left and not bridge_left

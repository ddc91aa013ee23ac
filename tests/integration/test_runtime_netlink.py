"""rtnetlink and named namespaces in real network namespaces (unshare -n): netlink.configure
makes the same interfaces, address and default route as the ip commands it stands for, and
a second run (a restarted PID 1) changes nothing and fails nothing; netns.add with
netlink.add_veth makes what ``ip netns add`` and ``ip link add ... type veth`` would, and
refuses names in use. nfgen's ruleset generation moves by one per committed
iptables-restore section."""

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

SCRIPT = """
import json, subprocess
from agent_payload.runtime import netlink
# eth0 as an older payload left it: a veth end in the namespace, down, no address.
subprocess.run(["ip", "link", "add", "eth0", "type", "veth", "peer", "name", "fleetnlpeer"],
               check=True)
setup = ("10.93.4.7", 24, "10.93.4.1")
netlink.configure(*setup)
first = subprocess.run(["ip", "-j", "addr", "show"], capture_output=True, text=True).stdout
netlink.configure(*setup)
second = subprocess.run(["ip", "-j", "addr", "show"], capture_output=True, text=True).stdout
routes = subprocess.run(["ip", "-j", "route", "show"], capture_output=True, text=True).stdout
try:
    netlink.configure("10.93.4.8", 24, "10.93.9.1")
    refused = ""
except netlink.NetlinkError as exc:
    refused = str(exc)
print(json.dumps([json.loads(first), first == second, json.loads(routes), refused]))
"""


def test_configure_matches_the_ip_commands():
    proc = subprocess.run(["unshare", "-n", sys.executable, "-c", textwrap.dedent(SCRIPT)],
                          capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, PYTHONPATH=ROOT))
    assert proc.returncode == 0, proc.stderr
    links, unchanged, routes, refused = json.loads(proc.stdout.strip().splitlines()[-1])
    by_name = {link["ifname"]: link for link in links}
    assert "UP" in by_name["lo"]["flags"] and "UP" in by_name["eth0"]["flags"]
    assert [(a["local"], a["prefixlen"]) for a in by_name["eth0"]["addr_info"]
            if a["family"] == "inet"] == [("10.93.4.7", 24)]
    assert unchanged
    assert {"dst": "default", "gateway": "10.93.4.1", "dev": "eth0"}.items() <= \
        next(r for r in routes if r["dst"] == "default").items()
    # An unreachable gateway is the kernel's refusal, named with the command it stands for.
    assert "ip route add default via 10.93.9.1" in refused


GENERATION = """
import json, subprocess
from agent_payload.runtime import nfgen
first = nfgen.generation()
chain = ":FLEET-GENTEST - [0:0]\\nCOMMIT\\n"
subprocess.run(["iptables-restore", "-w", "--noflush"], check=True, text=True,
               input="*filter\\n" + chain + "*nat\\n" + chain)
second = nfgen.generation()
subprocess.run(["iptables-save"], check=True, capture_output=True)
print(json.dumps([first, second, nfgen.generation()]))
"""


@pytest.mark.skipif(not shutil.which("iptables-restore") or "nft" not in os.path.realpath(
    shutil.which("iptables") or ""), reason="needs iptables-nft")
def test_the_ruleset_generation_counts_commits():
    proc = subprocess.run(["unshare", "-n", sys.executable, "-c", textwrap.dedent(GENERATION)],
                          capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, PYTHONPATH=ROOT))
    assert proc.returncode == 0, proc.stderr
    first, second, third = json.loads(proc.stdout.strip().splitlines()[-1])
    assert isinstance(first, int)
    assert second == first + 2  # one per COMMIT
    assert third == second  # a look changes nothing


NAMESPACE = """
import json, os, socket, subprocess, tempfile
from agent_payload.runtime import netlink, netns
run_dir = tempfile.mkdtemp(prefix="fleet-netns-test-")  # this mount namespace's own
subprocess.run(["ip", "link", "add", "fleettbr0", "type", "bridge"], check=True)
host, host_ns = netlink.Route(), os.open("/proc/self/ns/net", os.O_RDONLY)
bridge = socket.if_nametoindex("fleettbr0")


def pair(outer, mac):
    return lambda: netlink.add_veth(host, host_ns, outer, bridge, mac)


path = netns.add("fleet-t1", run_dir, inside=pair("fleetvt1", "02:42:0a:5d:04:07"))
outer = json.loads(subprocess.run(["ip", "-j", "-d", "link", "show", "fleetvt1"],
                                  capture_output=True, text=True, check=True).stdout)[0]
inner = json.loads(subprocess.run(["nsenter", "--net=" + path, "ip", "-j", "link", "show",
                                   "eth0"], capture_output=True, text=True,
                                  check=True).stdout)[0]
errors = []
for name, outer_name in (("fleet-t1", "fleetvt2"), ("fleet-t2", "fleetvt1")):
    try:
        netns.add(name, run_dir, inside=pair(outer_name, "02:42:0a:5d:04:08"))
    except OSError as exc:
        errors.append(str(exc))
after_errors = sorted(os.listdir(run_dir))
for _ in range(2):  # a second removal finds nothing, which is no error
    netlink.delete_link("fleetvt1")
    netns.remove("fleet-t1", run_dir)
left = subprocess.run(["ip", "-j", "link", "show"], capture_output=True, text=True).stdout
print(json.dumps([outer, inner, errors, after_errors, os.listdir(run_dir),
                  [link["ifname"] for link in json.loads(left)]]))
"""


def test_namespace_and_veth_match_the_ip_commands():
    # A network and mount namespace of the test's own: nothing reaches the host's.
    proc = subprocess.run(["unshare", "-n", "-m", sys.executable, "-c",
                           textwrap.dedent(NAMESPACE)],
                          capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, PYTHONPATH=ROOT))
    assert proc.returncode == 0, proc.stderr
    outer, inner, errors, after_errors, files, links = json.loads(
        proc.stdout.strip().splitlines()[-1])
    assert outer["master"] == "fleettbr0" and "UP" in outer["flags"]
    assert "LOWER_UP" in outer["flags"]  # both ends up: the bridge port can forward now
    assert outer["linkinfo"]["info_kind"] == "veth"
    assert inner["address"] == "02:42:0a:5d:04:07" and "UP" in inner["flags"]
    assert inner["ifindex"] == outer["link_index"]  # the pair's two ends
    assert "File exists" in errors[0]  # the name is taken
    assert "ip link add eth0 type veth peer name fleetvt1: File exists" in errors[1]
    assert after_errors == ["fleet-t1"]  # a failed add leaves no name behind
    assert files == [] and "fleetvt1" not in links

"""netlink.configure in a real network namespace (unshare -n): the same interfaces,
address and default route as the ip commands it stands for, and a second run (a
restarted PID 1) changes nothing and fails nothing. nfgen's ruleset generation there
moves by one per committed iptables-restore section."""

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
# eth0 as the payload leaves it: a veth end in the namespace, down, with no address.
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

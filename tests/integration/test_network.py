"""Container networks on a lab host: addresses, reachability on one network, isolation
between networks, and nothing left (bridge, veth, namespace, iptables rule) afterwards."""

import uuid

import pytest

from tests.integration.conftest import LAB_MARKS
from tests.integration.helpers import busybox_session, ssh_run

pytestmark = LAB_MARKS


@pytest.fixture
def host(lab, lab_inventory):
    """A session on the second lab host, a store and cgroup parent of this test's own."""
    with busybox_session(lab, lab_inventory, 1) as (session, store, parent, image, tag):
        yield session, store, parent, image, tag


def test_networks_reach_within_and_not_across(lab, host):
    session, store, parent, image, tag = host
    config, state = lab
    first, second = f"fleet-na-{tag}", f"fleet-nb-{tag}"
    base = {"image": image, "store": store, "cgroup_parent": parent}
    try:
        made = session.call("network", {"name": first, "subnet": "10.91.7.0/24",
                                        "store": store})
        assert made["changed"] and made["network"]["Gateway"] == "10.91.7.1", made
        server = session.call("container", dict(base, name=f"fleet-srv-{tag}",
                                                network_mode=first, command=["sleep", "60"],
                                                init=True), timeout=60)
        settings = server["container"]["NetworkSettings"]
        address = settings["IPAddress"]
        assert address.startswith("10.91.7.") and settings["Networks"][first]["IPPrefixLen"] == 24
        near = session.call("container_run", dict(base, network_mode=first, command=[
            "sh", "-c", f"ping -c1 -W2 {address} >/dev/null && echo reached; "
                        "grep -c $(hostname) /etc/hosts"]), timeout=60)
        assert near["stdout"].split() == ["reached", "1"], near
        far = session.call("container_run", dict(base, network_mode=second, command=[
            "sh", "-c", f"ping -c1 -W1 {address} >/dev/null && echo reached || echo apart"]),
            timeout=60)
        assert far["stdout"].strip() == "apart", far
        busy = session.call("network", {"name": first, "state": "absent", "store": store})
        assert busy["failed"] and "in use" in busy["msg"], busy
    finally:
        session.call("container", {"name": f"fleet-srv-{tag}", "state": "absent",
                                   "store": store, "force_kill": True}, timeout=60)
        for name in (first, second):
            session.call("network", {"name": name, "state": "absent", "store": store})
    from agent_payload.runtime.network import _device, netns_name
    server_id = server["container"]["Id"]
    devices = "\\|".join([_device(first, store), _device(second, store),
                          "fleetv" + server_id[:8]])
    left = ssh_run(config, state.hosts[1].address,
                   f"ip netns list | grep -c {netns_name(server_id)}; "
                   f"ip link | grep -c '{devices}'; "
                   f"iptables-save | grep -c 'fleet-net-\\({devices}\\)'", check=False)
    assert left.split() == ["0", "0", "0"], left


def test_published_ports(lab, host):
    session, store, parent, image, tag = host
    config, state = lab
    net = f"fleet-np-{tag}"
    base = {"image": image, "store": store, "cgroup_parent": parent, "network_mode": net}
    name = f"fleet-web-{tag}"
    try:
        made = session.call("network", {"name": net, "subnet": "10.91.8.0/24",
                                        "store": store})
        assert not made["failed"], made
        web = session.call("container", dict(base, name=name, ports=["80"], command=[
            "sh", "-c", "mkdir -p /www && echo hello-web > /www/index.html && "
                        "exec httpd -f -p 80 -h /www"]), timeout=60)
        assert not web["failed"], web
        bound = web["container"]["NetworkSettings"]["Ports"]["80/tcp"][0]
        port = int(bound["HostPort"])
        fetch = ("python3 -c \"import urllib.request,time\nfor _ in range(30):\n try:\n"
                 f"  print(urllib.request.urlopen('http://{state.hosts[1].address}:{port}/',"
                 " timeout=2).read().decode().strip()); break\n"
                 " except OSError: time.sleep(0.1)\"")
        # from another host of the fleet, and from the host itself
        assert ssh_run(config, state.hosts[0].address, fetch).strip() == "hello-web"
        assert ssh_run(config, state.hosts[1].address, fetch).strip() == "hello-web"
        taken = session.call("container", dict(base, name=f"fleet-web2-{tag}",
                                               ports=[f"{port}:80"], command=["true"]),
                             timeout=60)
        assert taken["failed"] and "already published" in taken["msg"], taken
    finally:
        for gone in (name, f"fleet-web2-{tag}"):
            session.call("container", {"name": gone, "state": "absent", "store": store,
                                       "force_kill": True}, timeout=60)
        session.call("network", {"name": net, "state": "absent", "store": store})
    rules = ssh_run(config, state.hosts[1].address,
                    "iptables-save | grep -c fleet-port; true", check=False)
    assert rules.strip() == "0", rules


def test_network_commands(lab, lab_inventory):
    import json
    import subprocess
    import sys
    name = "fleet-cli-" + uuid.uuid4().hex[:6]

    def fleet(*args):
        proc = subprocess.run([sys.executable, "-m", "fleet", "network", args[0], "-i",
                               lab_inventory, *args[1:], "-o", "json"],
                              capture_output=True, text=True, timeout=60)
        return proc.returncode, json.loads(proc.stdout)["hosts"]

    try:
        code, hosts = fleet("create", "all", name, "--subnet", "10.91.9.0/24")
        assert code == 0 and all(h["changed"] for h in hosts), hosts
        code, hosts = fleet("ls", "all")
        assert all(any(n["Name"] == name and n["Bridge"].startswith("fl-")
                       for n in h["networks"]) for h in hosts), hosts
    finally:
        code, hosts = fleet("rm", "all", name)
    assert code == 0 and all(h["changed"] for h in hosts), hosts


def test_links_on_one_host(lab, host):
    session, store, parent, image, tag = host
    net = f"fleet-nl-{tag}"
    base = {"image": image, "store": store, "cgroup_parent": parent, "network_mode": net}
    db = f"fleet-db-{tag}"
    try:
        made = session.call("network", {"name": net, "subnet": "10.91.10.0/24",
                                        "store": store})
        assert not made["failed"], made
        target = session.call("container", dict(base, name=db, expose=["80"], init=True,
                                                env={"SECRET_MODE": "x", "HOME": "/h"},
                                                command=["sh", "-c", "mkdir -p /www && echo db-here"
                                                         " > /www/index.html && exec httpd -f "
                                                         "-p 80 -h /www"]), timeout=60)
        address = target["container"]["NetworkSettings"]["IPAddress"]
        linked = session.call("container_run", dict(base, links=[f"{db}:dbapp"], command=[
            "sh", "-c", "grep dbapp /etc/hosts; echo $DBAPP_PORT $DBAPP_PORT_80_TCP_ADDR "
                        "$DBAPP_ENV_SECRET_MODE ${DBAPP_ENV_HOME:-nohome}; "
                        "wget -qO- http://dbapp/"]), timeout=60)
        lines = linked["stdout"].splitlines()
        assert lines[0].split() == [address, "dbapp", db], linked
        assert lines[1].split() == [f"tcp://{address}:80", address, "x", "nohome"], linked
        assert lines[2] == "db-here", linked
        quiet = session.call("container_run", dict(
            base, links=[f"{db}:dbapp"], link_env=False,
            command=["sh", "-c", "echo ${DBAPP_PORT:-none}"]))
        assert quiet["stdout"].strip() == "none", quiet
        missing = session.call("container_run", dict(base, links=["fleet-nobody"],
                                                     command=["true"]))
        assert missing["failed"] and "no container named fleet-nobody" in missing["msg"]
    finally:
        session.call("container", {"name": db, "state": "absent", "store": store,
                                   "force_kill": True}, timeout=60)
        session.call("network", {"name": net, "state": "absent", "store": store})


STUB_SERVER = """
import socket, sys
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("0.0.0.0", int(sys.argv[1])))
server.listen(4)
server.settimeout(30)
while True:
    try:
        conn, peer = server.accept()
    except OSError:
        break
    conn.sendall(peer[0].encode() + b"\\n")
    conn.close()
"""


def test_masquerading_to_a_stub_outside(lab, host):
    """Outbound traffic leaves with the host's address; a network without masquerading
    lets nothing out. The "outside" is a namespace on the lab's own subnet."""
    import ipaddress
    import subprocess
    import sys
    config, state = lab
    session, store, parent, image, tag = host
    stub = f"fleet-stub-{tag}"
    stub_ip = str(ipaddress.ip_network(config.subnet)[250])
    port = 18000 + int(tag[:3], 16) % 1000
    server = None

    def sh(*argv):
        subprocess.run(argv, check=True, capture_output=True)

    try:
        sh("ip", "netns", "add", stub)
        sh("ip", "link", "add", "link", config.wire, "name", "eth0", "netns", stub,
           "type", "macvlan", "mode", "bridge")  # a port on the lab's switch
        sh("ip", "-n", stub, "addr", "add",
           f"{stub_ip}/{ipaddress.ip_network(config.subnet).prefixlen}", "dev", "eth0")
        sh("ip", "-n", stub, "link", "set", "eth0", "up")
        server = subprocess.Popen(["ip", "netns", "exec", stub, sys.executable, "-c",
                                   STUB_SERVER, str(port)])
        results = {}
        for masquerade in (True, False):
            net = f"fleet-nm{int(masquerade)}-{tag}"
            made = session.call("network", {"name": net, "masquerade": masquerade,
                                            "subnet": f"10.91.{11 + int(masquerade)}.0/24",
                                            "store": store})
            assert not made["failed"], made
            out = session.call("container_run", {
                "image": image, "store": store, "cgroup_parent": parent,
                "network_mode": net, "command": ["sh", "-c", "for i in 1 2 3; do "
                                                 f"nc -w 1 {stub_ip} {port} && break; "
                                                 "sleep 0.2; done; true"]}, timeout=60)
            results[masquerade] = out["stdout"].strip()
            session.call("network", {"name": net, "state": "absent", "store": store})
        assert results[True] == state.hosts[1].address, results  # the host's address
        assert results[False] == "", results
    finally:
        if server is not None:
            server.terminate()
            server.wait(10)
        subprocess.run(["ip", "netns", "del", stub], capture_output=True)

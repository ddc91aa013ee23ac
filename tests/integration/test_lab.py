"""The lab: hosts that look like separate machines, a closed network, idempotent up/down."""

import os
import subprocess
import urllib.request
from pathlib import Path

from fleet.lab import hostns
from fleet.lab import lab as lab_lib
from fleet.lab.config import LAB_USER, LabConfig
from tests.integration.conftest import LAB_MARKS, leftovers
from tests.integration.helpers import ssh_run

pytestmark = LAB_MARKS


def test_hosts_have_their_own_hostname_pids_and_private_dirs(lab):
    config, state = lab
    first, second = state.hosts[0], state.hosts[1]
    assert ssh_run(config, first.address, "hostname").strip() == first.name
    # PID 1 is the host's sshd; the machine's processes are invisible.
    comm = ssh_run(config, first.address, "cat /proc/1/cmdline | tr '\\0' ' '")
    assert "sshd" in comm
    pids = ssh_run(config, first.address, "ls /proc | grep -c '^[0-9]'")
    assert int(pids) < 20
    ssh_run(config, first.address, "echo fleet-private > /tmp/fleet-test-private")
    ssh_run(config, first.address, "mkdir -p /var/lib/fleet/fleet-test && touch /root/fleet-t")
    out = ssh_run(config, second.address,
                  "ls /tmp/fleet-test-private /var/lib/fleet/fleet-test /root/fleet-t 2>&1; true")
    assert out.count("No such file") == 3
    # Neither the machine's /tmp nor its root home (no shell start-up files of its own).
    assert not Path("/tmp/fleet-test-private").exists()
    listing = set(ssh_run(config, first.address, "ls -A /root").split())
    # Only what tools create there (fleet's payload cache, ansible's temp dir), nothing of
    # the machine's own root home.
    assert "fleet-t" in listing
    assert not (listing & set(os.listdir("/root"))) - {".cache", ".ansible"}


def test_each_host_has_its_own_cgroup_subtree(lab):
    config, state = lab
    host = state.hosts[0]
    assert ssh_run(config, host.address, "cat /proc/self/cgroup | cut -d: -f3 | sort -u").split() \
        == ["/"]
    ssh_run(config, host.address, "mkdir /sys/fs/cgroup/pids/fleet-test-cg")
    try:
        leaf = config.cgroup_leaf(host.index)
        mine = [d for p, _, fstype, d in hostns.host_cgroup_dirs(leaf) if p.endswith("/pids")]
        assert os.path.isdir(os.path.join(mine[0], "fleet-test-cg"))
        other = [d for p, _, _, d in hostns.host_cgroup_dirs(config.cgroup_leaf(2))
                 if p.endswith("/pids")]
        assert not os.path.exists(os.path.join(other[0], "fleet-test-cg"))
    finally:
        ssh_run(config, host.address, "rmdir /sys/fs/cgroup/pids/fleet-test-cg")


def test_hosts_live_on_a_journaled_disk(lab):
    """The hosts' files are on the lab's own ext4 image, with a journal (the machine's
    filesystem may have none), private to root."""
    config, state = lab
    target = config.hosts_dir
    source = subprocess.run(["findmnt", "-n", "-o", "SOURCE,FSTYPE", str(target)],
                            capture_output=True, text=True, check=True).stdout.split()
    assert source[1] == "ext4" and source[0].startswith("/dev/loop"), source
    assert os.path.isdir(f"/proc/fs/jbd2/{os.path.basename(source[0])}-8")
    assert os.stat(config.state_dir / "disk.img").st_mode & 0o777 == 0o600
    written = ssh_run(config, state.hosts[0].address,
                      "echo probe > /var/lib/fleet/fleet-disk-probe && stat -c %d "
                      "/var/lib/fleet/fleet-disk-probe && rm /var/lib/fleet/fleet-disk-probe")
    assert int(written) == os.stat(target).st_dev


def test_network_is_closed(lab):
    config, state = lab
    host = state.hosts[0]
    routes = ssh_run(config, host.address, "ip route")
    assert "default" not in routes
    assert Path(f"/proc/sys/net/ipv4/conf/{config.gateway_link}/forwarding").read_text() \
        .strip() == "0"
    # Hosts reach each other and the gateway by name and address.
    probe = ("/usr/bin/python3 -c \"import socket;"
             f"socket.create_connection(('{state.hosts[1].name}', 22), 2);print('ok')\"")
    assert ssh_run(config, host.address, probe).strip() == "ok"


def test_hosts_reach_each_other_under_a_forward_drop_policy(lab):
    """Docker sets FORWARD's policy to DROP; the lab's switch carries frames from host to
    host outside the root namespace's netfilter, so they still talk."""
    import shutil

    import pytest

    if not shutil.which("iptables"):
        pytest.skip("no iptables on this machine")
    config, state = lab
    policy = next(line.split()[2] for line in subprocess.run(
        ["iptables", "-w", "-S", "FORWARD"], capture_output=True, text=True,
        check=True).stdout.splitlines() if line.startswith("-P FORWARD"))
    probe = ("/usr/bin/python3 -c \"import socket;"
             f"socket.create_connection(('{state.hosts[1].address}', 22), 3);print('ok')\"")
    subprocess.run(["iptables", "-w", "-P", "FORWARD", "DROP"], check=True)
    try:
        assert ssh_run(config, state.hosts[0].address, probe).strip() == "ok"
    finally:
        subprocess.run(["iptables", "-w", "-P", "FORWARD", policy], check=True)


def test_registries_are_reachable_from_hosts(lab):
    config, state = lab
    plain = next(r for r in state.registries if r["name"] == "plain")
    code = ssh_run(config, state.hosts[0].address,
                   "/usr/bin/python3 -c \"import urllib.request as u;"
                   f"print(u.urlopen('{plain['url']}/v2/').status)\"")
    assert code.strip() == "200"
    with urllib.request.urlopen(f"{plain['url']}/v2/_catalog") as answer:
        assert b"busybox" in answer.read()


def test_lab_user_has_sudo(lab):
    config, state = lab
    address = state.hosts[0].address
    assert ssh_run(config, address, "id -un", user=LAB_USER).strip() == LAB_USER
    assert ssh_run(config, address, "sudo -n id -u", user=LAB_USER).strip() == "0"


def test_up_is_idempotent(lab):
    config, state = lab
    again = lab_lib.up(config, len(state.hosts))
    assert [h.pid for h in again.hosts] == [h.pid for h in state.hosts]
    status = lab_lib.status(config)
    assert all(h.alive for h in status.hosts)
    assert {r["name"] for r in status.registries} == {"plain", "basic", "token"}


def test_cli_status_and_inventory(lab):
    config, _ = lab
    env = dict(os.environ, FLEET_LAB_DIR=str(config.state_dir), FLEET_LAB_SUBNET=config.subnet,
               FLEET_LAB_PREFIX=config.prefix)
    out = subprocess.run(["python3", "-m", "fleet", "lab", "status"], env=env,
                         capture_output=True, text=True, check=True).stdout
    assert "lab01" in out and str(config.inventory_path) in out
    graph = subprocess.run(["python3", "-m", "fleet", "inventory", "-i",
                            str(config.inventory_path), "--graph"],
                           capture_output=True, text=True, check=True).stdout
    assert "@web:" in graph and "@db:" in graph


def test_down_leaves_nothing(lab):
    """A second, one-host lab comes up beside the shared one and goes away completely."""
    config = LabConfig(Path("/var/lib/fleet-lab-test-down"), "10.231.8.0/24", "fleetlabd")
    try:
        state = lab_lib.up(config, 1)
        assert state.hosts[0].alive
        assert leftovers(config)
    finally:
        lab_lib.down(config)
    assert leftovers(config) == []
    assert not config.state_dir.exists()

"""The lab's pure parts: LabConfig, cgroup placement from fake files, inventory and hosts."""

import textwrap
from pathlib import Path

import pytest

from fleet.inventory import load_inventory
from fleet.lab import hostns
from fleet.lab.config import LabConfig
from fleet.lab.hostfiles import hosts_text, inventory_text
from fleet.lab.state import LabHost, LabState
from fleet.transport.targets import target_for

IFNAMSIZ = 16  # Linux interface names hold at most 15 characters


def test_defaults():
    config = LabConfig()
    assert config.state_dir == Path("/var/lib/fleet-lab")
    assert config.subnet == "10.231.0.0/24"
    assert config.prefix == "fleetlab"
    assert (config.gateway_link, config.wire, config.wire_peer) == \
        ("fleetlab0", "fleetlabw", "fleetlabp")
    assert config.gateway == "10.231.0.1"
    assert config.prefixlen == 24
    assert config.max_hosts == 99


@pytest.mark.parametrize("index, name, address", [
    (1, "lab01", "10.231.0.11"),
    (2, "lab02", "10.231.0.12"),
    (9, "lab09", "10.231.0.19"),
    (10, "lab10", "10.231.0.20"),
    (244, "lab244", "10.231.0.254"),  # the last one before the broadcast address
])
def test_names_and_addresses(index, name, address):
    config = LabConfig()
    assert config.host_name(index) == name
    assert config.host_address(index) == address
    assert config.netns(index) == config.cgroup_leaf(index) == \
        f"fleetlab-{name}"
    assert config.host_dir(index) == Path("/var/lib/fleet-lab/hosts") / name


def test_paths_follow_the_state_dir(tmp_path):
    config = LabConfig(state_dir=tmp_path)
    assert config.inventory_path == tmp_path / "inventory.ini"
    assert config.known_hosts_path == tmp_path / "known_hosts"
    assert config.client_key_path == tmp_path / "client_key"
    assert config.authorized_keys_path == tmp_path / "authorized_keys"
    assert config.state_file == tmp_path / "lab.json"


def test_every_address_is_in_the_subnet_and_distinct():
    import ipaddress
    config = LabConfig(subnet="10.9.8.0/27")
    network = ipaddress.ip_network(config.subnet)
    addresses = [config.host_address(i) for i in range(1, config.max_hosts + 1)]
    assert config.max_hosts == 32 - 11 - 1
    assert len(set(addresses)) == len(addresses)
    for address in addresses:
        ip = ipaddress.ip_address(address)
        assert ip in network
        assert ip not in (network.network_address, network.broadcast_address)
        assert address != config.gateway


@pytest.mark.parametrize("count, web, db", [
    (1, ["lab01"], []),
    (2, ["lab01"], ["lab02"]),
    (3, ["lab01", "lab02"], ["lab03"]),
    (4, ["lab01", "lab02"], ["lab03", "lab04"]),
    (5, ["lab01", "lab02", "lab03"], ["lab04", "lab05"]),
])
def test_groups(count, web, db):
    assert LabConfig().groups(count) == {"web": web, "db": db}


@pytest.mark.parametrize("prefix", ["fleetlab", "fleet", "fleettest", "fleetT1"])
def test_good_prefixes(prefix):
    config = LabConfig(prefix=prefix)
    assert config.gateway_link == prefix + "0"
    assert config.netns(3) == f"{prefix}-lab03"


@pytest.mark.parametrize("prefix", ["lab", "fleettests", "fleet-lab", "fleet_x", "", "Fleetlab",
                                    "fleet lab"])
def test_bad_prefixes(prefix):
    with pytest.raises(ValueError, match="must start with 'fleet'"):
        LabConfig(prefix=prefix)


def test_from_env(monkeypatch, tmp_path):
    monkeypatch.setenv("FLEET_LAB_DIR", str(tmp_path))
    monkeypatch.setenv("FLEET_LAB_SUBNET", "10.99.0.0/24")
    monkeypatch.setenv("FLEET_LAB_PREFIX", "fleettest")
    config = LabConfig.from_env()
    assert (config.state_dir, config.subnet, config.prefix) == (tmp_path, "10.99.0.0/24",
                                                                 "fleettest")
    for name in ("FLEET_LAB_DIR", "FLEET_LAB_SUBNET", "FLEET_LAB_PREFIX"):
        monkeypatch.delenv(name)
    assert LabConfig.from_env() == LabConfig()


def test_interface_names_fit():
    config = LabConfig(prefix="fleettest")  # the longest prefix allowed
    assert all(len(name) < IFNAMSIZ
               for name in (config.gateway_link, config.wire, config.wire_peer))


# This machine's kind: cgroup v1 with separate cpu and cpuacct hierarchies, a named
# systemd hierarchy, cgroup2 at /sys/fs/cgroup/unified, and a process whose memory cgroup
# is /process_api/abc.
HYBRID_MOUNTINFO = textwrap.dedent("""\
    22 1 8:1 / / rw,relatime - ext4 /dev/vda rw
    31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
    32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
    33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
    34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset,clone_children
    35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
    36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
    39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
    40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
    41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
    50 31 0:50 / /sys/fs/cgroup/net_cls rw,relatime - cgroup cgroup rw,net_cls
    """)
HYBRID_CGROUP = textwrap.dedent("""\
    9:name=systemd:/
    8:pids:/
    5:devices:/
    4:memory:/process_api/abc
    3:cpuset:/
    2:cpuacct:/
    1:cpu:/
    0::/
    """)

V2_MOUNTINFO = ("22 1 8:1 / / rw,relatime - ext4 /dev/vda rw\n"
                "30 24 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec - cgroup2 cgroup2 "
                "rw,nsdelegate,memory_recursiveprot\n")
V2_CGROUP = "0::/user.slice/user-1000.slice/session-3.scope\n"


def write_files(tmp_path, mountinfo, cgroup):
    (tmp_path / "mountinfo").write_text(mountinfo)
    (tmp_path / "cgroup").write_text(cgroup)
    return str(tmp_path / "mountinfo"), str(tmp_path / "cgroup")


def test_host_cgroup_dirs_on_a_hybrid_v1_machine(tmp_path):
    mountinfo, cgroup = write_files(tmp_path, HYBRID_MOUNTINFO, HYBRID_CGROUP)
    assert hostns.host_cgroup_dirs("fleetlab-lab01", mountinfo, cgroup) == [
        ("/sys/fs/cgroup/cpu", "cpu", "cgroup", "/sys/fs/cgroup/cpu/fleetlab-lab01"),
        ("/sys/fs/cgroup/cpuacct", "cpuacct", "cgroup",
         "/sys/fs/cgroup/cpuacct/fleetlab-lab01"),
        ("/sys/fs/cgroup/cpuset", "cpuset,clone_children", "cgroup",
         "/sys/fs/cgroup/cpuset/fleetlab-lab01"),
        ("/sys/fs/cgroup/memory", "memory", "cgroup",
         "/sys/fs/cgroup/memory/process_api/abc/fleetlab-lab01"),
        ("/sys/fs/cgroup/devices", "devices", "cgroup", "/sys/fs/cgroup/devices/fleetlab-lab01"),
        ("/sys/fs/cgroup/pids", "pids", "cgroup", "/sys/fs/cgroup/pids/fleetlab-lab01"),
        ("/sys/fs/cgroup/systemd", "xattr,name=systemd", "cgroup",
         "/sys/fs/cgroup/systemd/fleetlab-lab01"),
        ("/sys/fs/cgroup/unified", "", "cgroup2", "/sys/fs/cgroup/unified/fleetlab-lab01"),
        # net_cls is mounted but this process is in no net_cls cgroup: left out
    ]


def test_host_cgroup_dirs_with_comounted_controllers(tmp_path):
    mountinfo = ("32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup "
                 "rw,cpu,cpuacct\n")
    mountinfo, cgroup = write_files(tmp_path, mountinfo, "2:cpuacct,cpu:/batch\n")
    assert hostns.host_cgroup_dirs("leaf", mountinfo, cgroup) == [
        ("/sys/fs/cgroup/cpu,cpuacct", "cpu,cpuacct", "cgroup",
         "/sys/fs/cgroup/cpu,cpuacct/batch/leaf")]


def test_host_cgroup_dirs_on_a_v2_machine(tmp_path):
    mountinfo, cgroup = write_files(tmp_path, V2_MOUNTINFO, V2_CGROUP)
    assert hostns.host_cgroup_dirs("fleettest-lab02", mountinfo, cgroup) == [
        ("/sys/fs/cgroup", "nsdelegate,memory_recursiveprot", "cgroup2",
         "/sys/fs/cgroup/user.slice/user-1000.slice/session-3.scope/fleettest-lab02")]


def test_own_cgroups(tmp_path):
    _, cgroup = write_files(tmp_path, "", HYBRID_CGROUP)
    mine = hostns.own_cgroups(cgroup)
    assert mine["memory"] == "/process_api/abc"
    assert mine["name=systemd"] == "/"
    assert mine[""] == "/"


def lab_state(config, count, registries=()):
    hosts = [LabHost(config.host_name(i), i, config.host_address(i)) for i in
             range(1, count + 1)]
    return LabState(hosts=hosts, registries=list(registries))


def test_inventory_text_loads_with_groups_and_connection_vars(tmp_path):
    config = LabConfig(state_dir=tmp_path)
    state = lab_state(config, 3, [{"name": "plain", "address": "10.231.0.1:5000"},
                                  {"name": "token", "address": "10.231.0.1:5443"}])
    path = tmp_path / "inventory.ini"
    path.write_text(inventory_text(config, state))
    inv = load_inventory(path)
    assert inv.warnings == []
    assert inv.select("web") == ["lab01", "lab02"]
    assert inv.select("db") == ["lab03"]
    assert inv.select("all") == ["lab01", "lab02", "lab03"]
    for host in state.hosts:
        conn = inv.connection(host.name)
        assert conn.host == host.address
        assert conn.port == 22
        assert conn.user == "root"
        assert conn.key_file == str(config.client_key_path)
        assert conn.known_hosts_file == str(config.known_hosts_path)
        assert conn.python == "/usr/bin/python3"
        assert conn.become is False
    assert inv.host_vars("lab01")["fleet_lab_registry"] == "10.231.0.1:5000"


def test_inventory_text_targets_use_the_lab_known_hosts(tmp_path):
    config = LabConfig(state_dir=tmp_path)
    path = tmp_path / "inventory.ini"
    path.write_text(inventory_text(config, lab_state(config, 2)))
    inv = load_inventory(path)
    target = target_for(inv, "lab02", connect_timeout=3)
    assert (target.host, target.user, target.known_hosts) == (
        "10.231.0.12", "root", str(config.known_hosts_path))
    assert "fleet_lab_registry" not in inv.host_vars("lab02")
    # the common args name the same file, for ansible's own ssh
    from fleet.transport.ssh import known_hosts_from_common_args
    assert known_hosts_from_common_args(
        inv.host_vars("lab02")["ansible_ssh_common_args"]) == str(config.known_hosts_path)


def test_hosts_text_lists_every_host(tmp_path):
    config = LabConfig(state_dir=tmp_path, subnet="10.50.0.0/24")
    state = lab_state(config, 4)
    text = hosts_text(config, state.hosts)
    lines = text.splitlines()
    assert text.endswith("\n")
    assert "127.0.0.1\tlocalhost" in lines
    assert "10.50.0.1\tfleetlab-gateway" in lines
    for host in state.hosts:
        assert f"{host.address}\t{host.name}" in lines
    assert len(lines) == 3 + 4

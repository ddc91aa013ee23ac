"""agent_payload.probe and the facts module's helpers on fake /proc, /sys and /etc files."""

import json
import os
import textwrap

import pytest

from agent_payload import probe
from agent_payload.modules import facts

ROOT_LINES = textwrap.dedent("""\
    22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw,errors=remount-ro
    23 22 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw
    24 22 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
    """)
TMPFS_CGROUP = ("31 24 0:28 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs "
                "ro,mode=755\n")
V1_LINES = textwrap.dedent("""\
    32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:10 - cgroup cgroup rw,cpu,cpuacct
    33 31 0:30 / /sys/fs/cgroup/memory rw,nosuid shared:11 - cgroup cgroup rw,memory
    34 31 0:31 / /sys/fs/cgroup/systemd rw,nosuid shared:13 - cgroup cgroup rw,xattr,name=systemd
    """)
UNIFIED_LINE = ("35 31 0:32 / /sys/fs/cgroup/unified rw,nosuid shared:14 - cgroup2 cgroup2 "
                "rw,nsdelegate\n")
V2_LINE = ("30 24 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 "
           "cgroup2 rw,nsdelegate,memory_recursiveprot\n")

MOUNTINFOS = {
    "v1": ROOT_LINES + TMPFS_CGROUP + V1_LINES,
    "hybrid": ROOT_LINES + TMPFS_CGROUP + V1_LINES + UNIFIED_LINE,
    "v2": ROOT_LINES + V2_LINE,
    "none": ROOT_LINES,
}


def write(tmp_path, name, text):
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("mode", sorted(MOUNTINFOS))
def test_cgroup_mode(tmp_path, mode):
    assert probe.cgroup_mode(write(tmp_path, "mountinfo", MOUNTINFOS[mode])) == mode


def test_cgroup_mode_of_a_missing_file_is_none(tmp_path):
    assert probe.cgroup_mode(str(tmp_path / "absent")) == "none"


def test_cgroup_mode_root_is_a_parameter(tmp_path):
    """cgroup2 mounted only elsewhere, with v1 beside it, is hybrid; at root it is v2."""
    text = ROOT_LINES + V1_LINES + UNIFIED_LINE
    path = write(tmp_path, "mountinfo", text)
    assert probe.cgroup_mode(path) == "hybrid"
    assert probe.cgroup_mode(path, root="/sys/fs/cgroup/unified") == "v2"


def test_cgroup_mounts(tmp_path):
    path = write(tmp_path, "mountinfo", MOUNTINFOS["hybrid"])
    assert probe.cgroup_mounts(path) == [
        ("/sys/fs/cgroup/cpu,cpuacct", "cgroup", "rw,cpu,cpuacct"),
        ("/sys/fs/cgroup/memory", "cgroup", "rw,memory"),
        ("/sys/fs/cgroup/systemd", "cgroup", "rw,xattr,name=systemd"),
        ("/sys/fs/cgroup/unified", "cgroup2", "rw,nsdelegate"),
    ]


def test_cgroup_mounts_without_optional_fields_and_junk(tmp_path):
    text = ("40 31 0:40 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids\n"
            "garbage line\n\n"
            "41 31 0:41 / /x rw - cgroup\n")
    assert probe.cgroup_mounts(write(tmp_path, "mountinfo", text)) == [
        ("/sys/fs/cgroup/pids", "cgroup", "rw,pids")]


def test_read_text_default(tmp_path):
    assert probe.read_text(str(tmp_path / "nope")) == ""
    assert probe.read_text(str(tmp_path / "nope"), "x") == "x"
    assert probe.read_text(write(tmp_path, "f", "abc")) == "abc"


FILESYSTEMS = "nodev\tsysfs\nnodev\tproc\n\text4\nnodev\tcgroup2\n"


def test_has_overlayfs_from_proc_filesystems(tmp_path):
    path = write(tmp_path, "filesystems", FILESYSTEMS + "nodev\toverlay\n")
    assert probe.has_overlayfs(path) is True


def test_has_overlayfs_false_on_a_fake_tree_without_it(tmp_path):
    assert probe.has_overlayfs(write(tmp_path, "filesystems", FILESYSTEMS),
                               sys_module=str(tmp_path)) is False


def test_has_overlayfs_ignores_lookalike_names(tmp_path, monkeypatch):
    monkeypatch.setattr(probe.os.path, "exists", lambda path: False)
    path = write(tmp_path, "filesystems", "nodev\toverlayfs_not\nnodev\tfuse.overlay\n")
    assert probe.has_overlayfs(path) is False


@pytest.mark.parametrize("files, expected", [
    ({"user/max_user_namespaces": "63451\n"}, True),
    ({"user/max_user_namespaces": "0\n"}, False),
    ({}, False),
    ({"user/max_user_namespaces": "15000\n", "kernel/unprivileged_userns_clone": "1\n"}, True),
    ({"user/max_user_namespaces": "15000\n", "kernel/unprivileged_userns_clone": "0\n"}, False),
])
def test_user_namespaces(tmp_path, files, expected):
    for name, text in files.items():
        write(tmp_path, name, text)
    assert probe.user_namespaces(str(tmp_path)) is expected


DEBIAN = """\
PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
VERSION="12 (bookworm)"
VERSION_CODENAME=bookworm
ID=debian
"""
UBUNTU = """\
NAME="Ubuntu"
VERSION="22.04.4 LTS (Jammy Jellyfish)"
ID=ubuntu
ID_LIKE=debian
VERSION_ID="22.04"
VERSION_CODENAME=jammy
"""
ORACLE = """\
NAME="Oracle Linux Server"
VERSION="9.3"
ID="ol"
ID_LIKE="fedora"
VERSION_ID="9.3"
"""
ALMA = """\
NAME="AlmaLinux"
VERSION="9.3 (Shamrock Pampas Cat)"
ID="almalinux"
ID_LIKE="rhel centos fedora"
VERSION_ID="9.3"
"""
MINT = """\
NAME="Linux Mint"
ID=linuxmint
ID_LIKE="ubuntu debian"
VERSION_ID="21.3"
VERSION_CODENAME=virginia
"""
RHEL = """\
NAME="Red Hat Enterprise Linux"
VERSION="9.3 (Plow)"
ID="rhel"
ID_LIKE="fedora"
VERSION_ID="9.3"
"""
OPENSUSE = """\
NAME="openSUSE Leap"
VERSION="15.5"
ID="opensuse-leap"
ID_LIKE="suse opensuse"
VERSION_ID="15.5"
"""


def test_os_release_parses_quotes_and_ignores_junk(tmp_path):
    text = DEBIAN + "# a comment\n\nBROKEN LINE\nSINGLE='quoted'\n"
    assert facts.os_release(write(tmp_path, "os-release", text)) == {
        "PRETTY_NAME": "Debian GNU/Linux 12 (bookworm)", "NAME": "Debian GNU/Linux",
        "VERSION_ID": "12", "VERSION": "12 (bookworm)", "VERSION_CODENAME": "bookworm",
        "ID": "debian", "SINGLE": "quoted"}


def test_os_release_missing_is_empty(tmp_path):
    assert facts.os_release(str(tmp_path / "absent")) == {}


@pytest.mark.parametrize("text, expected", [
    (DEBIAN, {"distribution": "Debian", "distribution_version": "12",
              "distribution_major_version": "12", "distribution_release": "bookworm",
              "os_family": "Debian"}),
    (UBUNTU, {"distribution": "Ubuntu", "distribution_version": "22.04",
              "distribution_major_version": "22", "distribution_release": "jammy",
              "os_family": "Debian"}),
    (ALMA, {"distribution": "AlmaLinux", "distribution_version": "9.3",
            "distribution_major_version": "9", "distribution_release": "",
            "os_family": "RedHat"}),
])
def test_distribution_facts(tmp_path, text, expected):
    release = facts.os_release(write(tmp_path, "os-release", text))
    assert facts.distribution_facts(release) == expected


@pytest.mark.parametrize("text, family", [
    (ORACLE, "RedHat"),  # ID=ol is unknown: ID_LIKE=fedora decides
    (MINT, "Debian"),  # ID_LIKE="ubuntu debian"
    (RHEL, "RedHat"),
])
def test_os_family_from_id_like(tmp_path, text, family):
    release = facts.os_release(write(tmp_path, "os-release", text))
    assert facts.distribution_facts(release)["os_family"] == family


def test_distribution_facts_without_os_release():
    assert facts.distribution_facts({}) == {
        "distribution": "Linux", "distribution_version": "", "distribution_major_version": "",
        "distribution_release": "", "os_family": ""}


def test_unknown_distribution_family_is_its_capitalized_id():
    assert facts.distribution_facts({"ID": "gentoo", "NAME": "Gentoo"})["os_family"] == "Gentoo"


@pytest.mark.parametrize("text, name", [
    (RHEL, "RedHat"),
    (ORACLE, "OracleLinux"),
    (MINT, "Linux Mint"),
])
def test_distribution_name_is_ansibles(tmp_path, text, name):
    release = facts.os_release(write(tmp_path, "os-release", text))
    assert facts.distribution_facts(release)["distribution"] == name


def test_opensuse_family_uses_any_id_like_word(tmp_path):
    release = facts.os_release(write(tmp_path, "os-release", OPENSUSE))
    assert facts.distribution_facts(release)["os_family"] == "Suse"


MEMINFO = """\
MemTotal:       16315744 kB
MemFree:         1200128 kB
MemAvailable:    9876543 kB
Buffers:          123456 kB
SwapTotal:       2097148 kB
HugePages_Total:       0
"""


def test_memory_facts(tmp_path):
    assert facts.memory_facts(write(tmp_path, "meminfo", MEMINFO)) == {
        "memtotal_mb": 15933, "memfree_mb": 1172, "swaptotal_mb": 2047}


def test_memory_facts_missing_file(tmp_path):
    assert facts.memory_facts(str(tmp_path / "absent")) == {
        "memtotal_mb": 0, "memfree_mb": 0, "swaptotal_mb": 0}


ROUTE_HEADER = ("Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\t"
                "Window\tIRTT\n")


@pytest.mark.parametrize("rows, expected", [
    (["eth0\t0000E70A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0",
      "eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0"], ("eth0", "192.0.2.1")),
    (["ens3\t00000000\t0101A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0"], ("ens3", "192.168.1.1")),
    (["eth0\t0000E70A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0"], (None, None)),
    ([], (None, None)),
])
def test_default_route(tmp_path, rows, expected):
    path = write(tmp_path, "route", ROUTE_HEADER + "".join(r + "\n" for r in rows))
    assert facts.default_route(path) == expected


def test_default_route_missing_file(tmp_path):
    assert facts.default_route(str(tmp_path / "absent")) == (None, None)


FIB_TRIE = """\
Main:
  +-- 0.0.0.0/0 3 0 5
     |-- 0.0.0.0
        /0 universe UNICAST
     +-- 10.231.0.0/24 2 0 2
        |-- 10.231.0.0
           /24 link UNICAST
        |-- 10.231.0.11
           /32 host LOCAL
     +-- 127.0.0.0/8 2 0 2
        |-- 127.0.0.1
           /32 host LOCAL
     |-- 192.0.2.2
        /32 host LOCAL
     |-- 192.0.2.255
        /32 link BROADCAST
Local:
  +-- 0.0.0.0/0 3 0 5
     |-- 10.231.0.11
        /32 host LOCAL
     |-- 127.0.0.1
        /32 host LOCAL
     |-- 192.0.2.2
        /32 host LOCAL
"""


def test_ipv4_addresses(tmp_path):
    assert facts.ipv4_addresses(write(tmp_path, "fib_trie", FIB_TRIE)) == [
        "10.231.0.11", "192.0.2.2"]


def test_ipv4_addresses_missing_file(tmp_path):
    assert facts.ipv4_addresses(str(tmp_path / "absent")) == []


ANSIBLE_KEYS = ("hostname", "nodename", "fqdn", "system", "kernel", "kernel_version",
                "architecture", "machine", "processor_vcpus", "user_id", "user_uid",
                "python_version", "python", "all_ipv4_addresses", "default_ipv4",
                "distribution", "distribution_version", "distribution_major_version",
                "distribution_release", "os_family", "memtotal_mb", "memfree_mb",
                "swaptotal_mb")


@pytest.fixture
def no_dns(monkeypatch):
    import socket
    monkeypatch.setattr(socket, "getfqdn", lambda name="": name or "localhost")


def test_gather_is_json_with_the_ansible_keys(no_dns):
    gathered = facts.gather({"version": "abc", "cache": "cached", "pid": 1})
    assert json.loads(json.dumps(gathered)) == gathered
    for key in ANSIBLE_KEYS:
        assert key in gathered, key
    assert gathered["system"] == "Linux"
    assert gathered["user_uid"] == os.geteuid()
    assert gathered["fleet_cgroup_mode"] in ("v1", "v2", "hybrid", "none")
    assert isinstance(gathered["fleet_overlayfs"], bool)
    assert isinstance(gathered["fleet_user_namespaces"], bool)
    assert gathered["fleet_payload"] == {"version": "abc", "cache": "cached"}
    assert gathered["hostname"] == gathered["nodename"].split(".")[0]
    assert set(gathered["python"]["version"]) == {"major", "minor", "micro", "releaselevel",
                                                  "serial"}


def test_gather_without_payload_info(no_dns):
    assert "fleet_payload" not in facts.gather()


def test_facts_module_run(no_dns):
    class Ctx:
        payload_info = {"version": "v", "cache": "uploaded"}

    result = facts.run({"gather_subset": ["all"]}, Ctx())
    assert result["changed"] is False
    assert result["ansible_facts"]["fleet_payload"]["cache"] == "uploaded"


ROUTE_TWO_NETS = ROUTE_HEADER + (
    "fleetlab0\t0000E70A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n"
    "eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n"
    "eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n")
FIB_TWO_NETS = """\
Main:
  +-- 0.0.0.0/0 3 0 5
     +-- 10.231.0.0/24 2 0 2
        |-- 10.231.0.1
           /32 host LOCAL
     +-- 192.0.2.0/24 2 0 2
        |-- 192.0.2.2
           /32 host LOCAL
"""


def test_default_ipv4_address_is_on_the_default_interface(monkeypatch, no_dns):
    real = probe.read_text
    fake = {"/proc/net/route": ROUTE_TWO_NETS, "/proc/net/fib_trie": FIB_TWO_NETS}
    monkeypatch.setattr(probe, "read_text",
                        lambda path, default="": fake[path] if path in fake else
                        real(path, default))
    gathered = facts.gather()
    assert gathered["all_ipv4_addresses"] == ["10.231.0.1", "192.0.2.2"]
    assert gathered["default_ipv4"] == {"interface": "eth0", "gateway": "192.0.2.1",
                                        "address": "192.0.2.2"}

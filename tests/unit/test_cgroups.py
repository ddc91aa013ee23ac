"""agent_payload.cgroups against temporary cgroup trees (v1 and v2); the real v1 hierarchy
of this machine is exercised by tests/integration/test_cgroups_host.py."""

import os

import pytest

from agent_payload import cgroups
from agent_payload.cgroups import CgroupError

MiB = 1024 * 1024


def _mountinfo(tmp_path, lines):
    path = tmp_path / "mountinfo"
    path.write_text("".join(
        f"{30 + i} 25 0:{26 + i} / {point} rw,nosuid - {fstype} {fstype} {options}\n"
        for i, (point, fstype, options) in enumerate(lines)))
    return str(path)


@pytest.fixture
def v1(tmp_path):
    root = tmp_path / "cg"
    points = {"memory": root / "memory", "cpu,cpuacct": root / "cpu,cpuacct",
              "pids": root / "pids", "freezer": root / "freezer"}
    for point in points.values():
        point.mkdir(parents=True)
    info = _mountinfo(tmp_path, [(str(p), "cgroup", f"rw,{name}")
                                 for name, p in points.items()]
                      + [(str(root / "unified"), "cgroup2", "rw")])
    (root / "unified").mkdir()
    return cgroups.open_driver(info, str(root)), root


@pytest.fixture
def v2(tmp_path):
    root = tmp_path / "cg"
    root.mkdir()
    (root / "cgroup.controllers").write_text("cpuset cpu io memory hugetlb pids rdma\n")
    (root / "cgroup.subtree_control").write_text("")
    info = _mountinfo(tmp_path, [(str(root), "cgroup2", "rw,nsdelegate")])
    return cgroups.open_driver(info, str(root)), root


def test_v1_chosen_when_the_unified_mount_has_no_controllers(v1):
    driver, root = v1
    assert driver.version == 1
    assert driver.mounts == {"memory": str(root / "memory"), "cpu": str(root / "cpu,cpuacct"),
                             "cpuacct": str(root / "cpu,cpuacct"), "pids": str(root / "pids")}


def test_v1_limits(v1):
    driver, root = v1
    group = driver.cgroup("fleet", "c1")
    memsw = root / "memory" / "fleet" / "c1" / "memory.memsw.limit_in_bytes"
    memsw.parent.mkdir(parents=True)
    memsw.write_text("")  # the kernel has swap accounting
    group.create({"memory": 64 * MiB, "cpus": 1.5, "cpu_shares": 512, "pids_limit": 50})
    assert (root / "memory/fleet/c1/memory.limit_in_bytes").read_text() == str(64 * MiB)
    assert memsw.read_text() == str(128 * MiB)  # Docker: swap as much as memory
    assert (root / "cpu,cpuacct/fleet/c1/cpu.cfs_quota_us").read_text() == "150000"
    assert (root / "cpu,cpuacct/fleet/c1/cpu.cfs_period_us").read_text() == "100000"
    assert (root / "cpu,cpuacct/fleet/c1/cpu.shares").read_text() == "512"
    assert (root / "pids/fleet/c1/pids.max").read_text() == "50"
    group.add(4242)
    assert sorted(group.procs_files) == sorted(
        str(root / d / "fleet/c1/cgroup.procs") for d in ("memory", "cpu,cpuacct", "pids"))
    assert (root / "pids/fleet/c1/cgroup.procs").read_text() == "4242"


def test_v1_swap_unlimited_and_no_limits(v1):
    driver, root = v1
    memsw = root / "memory" / "fleet" / "c2" / "memory.memsw.limit_in_bytes"
    memsw.parent.mkdir(parents=True)
    memsw.write_text("")
    driver.cgroup("fleet", "c2").create({"memory": 32 * MiB, "memory_swap": -1})
    assert memsw.read_text() == "-1"
    driver.cgroup("fleet", "c3").create({})
    assert sorted(os.listdir(root / "memory/fleet/c3")) == []


def test_v1_oom_kills_and_usage(v1):
    driver, root = v1
    group = driver.cgroup("fleet", "c4")
    group.create({})
    (root / "memory/fleet/c4/memory.oom_control").write_text(
        "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n")
    (root / "memory/fleet/c4/memory.usage_in_bytes").write_text("12345\n")
    (root / "cpu,cpuacct/fleet/c4/cpuacct.usage").write_text("987654321\n")
    assert group.oom_kills() == 2
    assert group.usage() == {"memory": 12345, "cpu_ns": 987654321}


def test_v2_delegates_controllers_down_to_the_container(v2):
    driver, root = v2
    assert driver.version == 2
    (root / "fleet").mkdir()
    (root / "fleet" / "cgroup.controllers").write_text("cpu memory pids\n")
    group = driver.cgroup("fleet", "c1")
    (root / "fleet" / "c1").mkdir()
    (root / "fleet" / "c1" / "memory.swap.max").write_text("")
    group.create({"memory": 64 * MiB, "memory_swap": 96 * MiB, "cpus": 0.5,
                  "cpu_shares": 1024, "pids_limit": 10})
    assert set((root / "cgroup.subtree_control").read_text().split()) == {
        "+memory", "+pids", "+cpu"}
    assert set((root / "fleet" / "cgroup.subtree_control").read_text().split()) == {
        "+memory", "+pids", "+cpu"}
    c1 = root / "fleet" / "c1"
    assert (c1 / "memory.max").read_text() == str(64 * MiB)
    assert (c1 / "memory.swap.max").read_text() == str(32 * MiB)
    assert (c1 / "cpu.max").read_text() == "50000 100000"
    assert (c1 / "cpu.weight").read_text() == str(cgroups.shares_to_weight(1024))
    assert (c1 / "pids.max").read_text() == "10"
    group.add(77)
    assert (c1 / "cgroup.procs").read_text() == "77"
    (c1 / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")
    (c1 / "memory.current").write_text("2048\n")
    (c1 / "cpu.stat").write_text("usage_usec 1500\nuser_usec 1000\n")
    assert group.oom_kills() == 1
    assert group.usage() == {"memory": 2048, "cpu_ns": 1_500_000}


def test_v2_chosen_only_with_the_controllers(tmp_path):
    root = tmp_path / "cg"
    root.mkdir()
    (root / "cgroup.controllers").write_text("cpu io\n")
    info = _mountinfo(tmp_path, [(str(root), "cgroup2", "rw")])
    with pytest.raises(CgroupError, match="memory, pids, cpu"):
        cgroups.open_driver(info, str(root))


@pytest.mark.parametrize("limits, message", [
    ({"memory": 4 * MiB}, "minimum memory limit allowed is 6 MiB"),
    ({"memory_swap": 64 * MiB}, "memory_swap needs memory"),
    ({"memory": 64 * MiB, "memory_swap": 32 * MiB}, "at least memory"),
    ({"cpus": -1}, "cpus must not be negative"),
])
def test_bad_limits_are_refused_before_anything_is_made(v1, limits, message):
    driver, root = v1
    with pytest.raises(CgroupError, match=message):
        driver.cgroup("fleet", "bad").create(limits)
    assert not (root / "memory" / "fleet").exists()


def test_paths_cannot_leave_the_hierarchy(v1):
    driver, _ = v1
    with pytest.raises(CgroupError, match="bad cgroup path"):
        driver.cgroup("../etc", "x")


def test_shares_to_weight_matches_runc():
    assert cgroups.shares_to_weight(2) == 1
    assert cgroups.shares_to_weight(1024) == 39
    assert cgroups.shares_to_weight(262144) == 10000


def test_v1_stats(v1):
    driver, root = v1
    group = driver.cgroup("fleet", "c5")
    group.create({})
    memory = root / "memory/fleet/c5"
    (memory / "memory.usage_in_bytes").write_text(f"{10 * MiB}\n")
    (memory / "memory.stat").write_text(
        f"cache 100\ninactive_file 7\ntotal_inactive_file {2 * MiB}\n")
    (memory / "memory.limit_in_bytes").write_text("9223372036854771712\n")  # no limit
    (root / "cpu,cpuacct/fleet/c5/cpuacct.usage").write_text("5000\n")
    (root / "pids/fleet/c5/pids.current").write_text("3\n")
    assert group.stats() == {"cpu_ns": 5000, "memory": 8 * MiB, "memory_limit": None,
                             "pids": 3}
    (memory / "memory.limit_in_bytes").write_text(f"{64 * MiB}\n")
    (root / "pids/fleet/c5/pids.current").unlink()  # no pids.current: count the procs
    (root / "pids/fleet/c5/cgroup.procs").write_text("11\n12\n")
    assert group.stats()["memory_limit"] == 64 * MiB and group.stats()["pids"] == 2


def test_v2_stats(v2):
    driver, root = v2
    group = driver.cgroup("fleet", "c2")
    group.create({"memory": 64 * MiB})
    c2 = root / "fleet" / "c2"
    (c2 / "memory.current").write_text(f"{5 * MiB}\n")
    (c2 / "memory.stat").write_text(f"anon 100\nfile 200\ninactive_file {MiB}\n")
    (c2 / "cpu.stat").write_text("usage_usec 2500\nuser_usec 2000\nsystem_usec 500\n")
    (c2 / "pids.current").write_text("4\n")
    assert group.stats() == {"cpu_ns": 2_500_000, "memory": 4 * MiB,
                             "memory_limit": 64 * MiB, "pids": 4}
    (c2 / "memory.max").write_text("max\n")
    assert group.stats()["memory_limit"] is None


def test_stats_of_a_cgroup_that_is_gone(v2):
    driver, _ = v2
    assert driver.cgroup("fleet", "never").stats() == {
        "cpu_ns": 0, "memory": 0, "memory_limit": None, "pids": 0}


def test_container_info_samples_cpu_between_two_reads(v2, monkeypatch):
    from agent_payload.modules import container_info
    driver, root = v2
    groups = {}
    for name in ("busy", "idle"):
        groups[name] = driver.cgroup("fleet", name)
        groups[name].create({"memory": 64 * MiB} if name == "busy" else {})
        (root / "fleet" / name / "cpu.stat").write_text("usage_usec 1000000\n")
        (root / "fleet" / name / "memory.current").write_text(f"{MiB}\n")
    # each container's clock: read with its first sample, and after its second
    clock = iter([100.0, 100.1, 100.5, 100.6])
    monkeypatch.setattr(container_info.time, "monotonic", lambda: next(clock))

    def sleep(seconds):
        assert seconds == container_info.STATS_INTERVAL
        # the busy one uses 0.75 s of CPU in the 0.5 s between its reads: 1.5 CPUs
        (root / "fleet" / "busy" / "cpu.stat").write_text("usage_usec 1750000\n")

    shown = container_info.sample(groups, total=32 * MiB, sleep=sleep)
    assert shown["busy"] == {"cpu_percent": 150.0, "cpu_ns": 1_750_000_000,
                             "memory": MiB, "memory_limit": 32 * MiB, "pids": 0}
    assert shown["idle"] == {"cpu_percent": 0.0, "cpu_ns": 1_000_000_000, "memory": MiB,
                             "memory_limit": 32 * MiB, "pids": 0}  # no limit: the host's
    assert container_info.sample({}, sleep=lambda _: pytest.fail("nothing to wait for")) == {}


def test_memory_total(tmp_path):
    from agent_payload.modules.container_info import memory_total
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:        2048 kB\nMemFree:          100 kB\n")
    assert memory_total(str(meminfo)) == 2 * MiB
    assert memory_total(str(tmp_path / "none")) is None

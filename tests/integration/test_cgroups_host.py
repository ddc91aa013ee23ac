"""agent_payload.cgroups on this machine's real hierarchy (v1 here, v2 where the host has
it): limits enforced, an OOM kill counted, everything removed afterwards."""

import os
import subprocess
import sys
import uuid

import pytest

from agent_payload import cgroups

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="cgroups need root")
MiB = 1024 * 1024


@pytest.fixture
def parent():
    """A parent of this test's own, removed (in every hierarchy) afterwards."""
    driver = cgroups.open_driver()
    name = "fleet-test-" + uuid.uuid4().hex[:8]
    yield driver, name
    for mount in set(driver.mounts.values()):
        path = os.path.join(mount, name)
        if os.path.isdir(path):
            os.rmdir(path)


def _waiting(code):
    """A python3 child that waits for a line on stdin, then runs ``code``."""
    return subprocess.Popen([sys.executable, "-c", f"import sys; sys.stdin.readline(); {code}"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)


def test_memory_limit_ends_in_an_oom_kill_that_is_counted(parent):
    driver, name = parent
    group = driver.cgroup(name, "oom")
    group.create({"memory": 32 * MiB, "memory_swap": 32 * MiB})
    try:
        child = _waiting("b = bytearray(256 * 1024 * 1024); print('survived')")
        group.add(child.pid)
        assert group.pids() == [child.pid]
        out, _ = child.communicate(b"go\n", timeout=30)
        assert child.returncode == -9 and b"survived" not in out
        assert group.oom_kills() >= 1
    finally:
        group.remove()
    assert not any(os.path.exists(path) for path in group.dirs.values())


def test_pids_limit_and_usage(parent):
    driver, name = parent
    group = driver.cgroup(name, "pids")
    group.create({"pids_limit": 3, "cpus": 0.5})
    try:
        code = ("import os, time\n"
                "kids = []\n"
                "for _ in range(6):\n"
                "    try:\n"
                "        pid = os.fork()\n"
                "    except OSError:\n"
                "        print('refused'); break\n"
                "    if pid == 0:\n"
                "        time.sleep(2); os._exit(0)\n"
                "    kids.append(pid)\n"
                "print(len(kids))")
        child = _waiting(code)
        group.add(child.pid)
        out, _ = child.communicate(b"go\n", timeout=30)
        assert out.split() == [b"refused", b"2"]
        usage = group.usage()
        assert usage["cpu_ns"] > 0 and usage["memory"] >= 0
    finally:
        group.remove()
    assert not any(os.path.exists(path) for path in group.dirs.values())


def test_remove_kills_what_is_left(parent):
    driver, name = parent
    group = driver.cgroup(name, "leftover")
    group.create({})
    sleeper = subprocess.Popen(["sleep", "60"])
    group.add(sleeper.pid)
    group.remove()
    assert sleeper.wait(timeout=10) == -9
    assert not any(os.path.exists(path) for path in group.dirs.values())

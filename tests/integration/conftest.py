"""The shared lab for integration tests: one per test run, torn down at its end.

The test lab has its own state directory, subnet and object prefix, so it never
touches a lab the developer has up. Integration modules ask xdist to keep them on one
worker (LAB_MARKS), but the fixture does not rely on it: every worker that needs the
lab registers under a lock, and the last one to leave takes the lab down. So the tests
themselves must not assume they are alone on a lab host.
"""

import contextlib
import fcntl
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from fleet.lab import lab as lab_lib
from fleet.lab.config import LabConfig

TEST_LAB = LabConfig(Path("/var/lib/fleet-lab-test"), "10.231.7.0/24", "fleetlabt")
NEEDED = ("ip", "/usr/sbin/sshd", "sudo", "docker-registry", "skopeo")


# Every integration module sets ``pytestmark = LAB_MARKS``: marks added later, from a
# collection hook, do not reliably reach xdist's grouping.
LAB_MARKS = [pytest.mark.integration, pytest.mark.xdist_group("lab")]


def _missing():
    if os.geteuid() != 0:
        return "integration tests need root"
    for tool in NEEDED:
        if not (os.path.exists(tool) if tool.startswith("/") else shutil.which(tool)):
            return f"integration tests need {tool}"
    return None


def leftovers(config):
    """Kernel objects and processes of ``config``'s lab still present on the machine."""
    found = []
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    found += [f"netns {line.split()[0]}" for line in netns.splitlines()
              if line.startswith(config.prefix + "-")]
    found += [f"link {name}" for name in os.listdir("/sys/class/net")
              if name.startswith(config.prefix)]
    with open("/proc/self/mountinfo") as mounts:
        found += [f"mount {line.split()[4]}" for line in mounts
                  if line.split()[4].startswith(str(config.state_dir) + "/")]
    for root, dirs, _ in os.walk("/sys/fs/cgroup"):
        found += [f"cgroup {root}/{d}" for d in dirs if d.startswith(config.prefix + "-")]
        if root.count("/") > 6:
            dirs[:] = []
    marker = str(config.state_dir).encode()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path("/proc", pid, "cmdline").read_bytes()
        except OSError:
            continue
        if marker in cmdline:
            found.append(f"process {pid} {cmdline[:80]!r}")
    return found


USERS = Path(f"/run/lock/{TEST_LAB.prefix}.users")


@contextlib.contextmanager
def _users():
    """The PIDs of test processes using the test lab, under an exclusive lock."""
    fd = os.open(f"{USERS}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        pids = {int(p) for p in USERS.read_text().split()} if USERS.exists() else set()
        pids = {p for p in pids if os.path.exists(f"/proc/{p}")}  # a crashed run left
        yield pids
        if pids:
            USERS.write_text(" ".join(map(str, sorted(pids))))
        elif USERS.exists():
            USERS.unlink()
    finally:
        os.close(fd)


@pytest.fixture(scope="session")
def lab():
    """The test lab with 3 hosts: (LabConfig, LabState)."""
    reason = _missing()
    if reason:
        pytest.skip(reason)
    with _users() as pids:
        state = lab_lib.up(TEST_LAB, 3)
        pids.add(os.getpid())
    yield TEST_LAB, state
    with _users() as pids:
        pids.discard(os.getpid())
        if not pids:
            lab_lib.down(TEST_LAB)
            assert leftovers(TEST_LAB) == []


@pytest.fixture(scope="session")
def lab_inventory(lab):
    """Path of the test lab's inventory."""
    return str(lab[0].inventory_path)

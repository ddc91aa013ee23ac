"""Foreground containers on a lab host: the container_run module (a store of the test's
own) and `fleet run` end to end, with busybox pulled from the lab registry."""

import subprocess
import sys
import time

import pytest

from tests.integration.conftest import LAB_MARKS
from tests.integration.helpers import busybox_session, ssh_run

pytestmark = LAB_MARKS


@pytest.fixture
def host(lab, lab_inventory):
    """A session on the second lab host, a store and a cgroup parent of this test's own."""
    with busybox_session(lab, lab_inventory, 1) as (session, store, parent, image, _):
        yield session, store, parent, image


def run(session, store, parent, image, command, **options):
    return session.call("container_run", dict(options, image=image, store=store,
                                              cgroup_parent=parent, command=command),
                        timeout=60)


def test_isolation_limits_and_cleanup(lab, host):
    session, store, parent, image = host
    script = ("hostname; echo $$; ls /proc | grep -c '^[0-9]'; grep CapEff /proc/self/status;"
              " cat /proc/kcore | wc -c; mount -t tmpfs x /mnt 2>/dev/null || echo refused;"
              " touch /etc/fleet-mark && echo wrote")
    out = run(session, store, parent, image, [script], entrypoint=["sh", "-c"],
              hostname="fleet-lab-box")
    assert not out["failed"] and out["rc"] == 0, out
    lines = out["stdout"].split("\n")
    assert lines[0] == "fleet-lab-box" and lines[1] == "1" and int(lines[2]) <= 3
    assert lines[3].split() == ["CapEff:", "00000000a80425fb"]
    assert lines[4:7] == ["0", "refused", "wrote"]
    oom = run(session, store, parent, image, ["dd", "if=/dev/zero", "of=/dev/null",
                                               "bs=64M", "count=1"],
              memory="16m", memory_swap="16m")
    assert oom["failed"] and oom["oom_killed"] and oom["rc"] == -9, oom
    pids = run(session, store, parent, image,
               ["sh", "-c", "for i in 1 2 3 4 5 6; do sleep 1 & done 2>&1; wait"],
               pids_limit=4)
    assert "can't fork" in pids["stdout"] + pids["stderr"], pids
    # A named volume outlives the container that wrote it (and the next one sees it).
    run(session, store, parent, image, ["sh", "-c", "echo kept > /v/file"],
        volumes=["fleet-test-data:/v"], init=True)
    again = run(session, store, parent, image, ["cat", "/v/file"],
                volumes=["fleet-test-data:/v:ro"])
    assert again["stdout"] == "kept\n", again
    missing = session.call("container_run", {"image": image, "store": store,
                                              "cgroup_parent": parent,
                                              "command": ["no-such-command"]})
    assert missing["failed"] and "executable file not found" in missing["msg"], missing
    config, state = lab
    left = ssh_run(config, state.hosts[1].address,
                   f"ls {store}/containers; findmnt -rn -t overlay | wc -l; "
                   f"find /sys/fs/cgroup/*/{parent} -mindepth 1 -type d 2>/dev/null | wc -l")
    assert left.split() == ["0", "0"], left


def test_fleet_run_cli(lab, lab_inventory, host):
    session, store, parent, image = host
    # The CLI works on the host's default store: pull there an image no other test uses.
    name = image.replace("busybox:latest", "busybox:oci")
    pull = subprocess.run([sys.executable, "-m", "fleet", "pull", "-i", lab_inventory,
                           "lab02", name], capture_output=True, text=True, timeout=120)
    assert pull.returncode == 0, pull.stdout + pull.stderr
    try:
        done = subprocess.run([sys.executable, "-m", "fleet", "run", "--rm", "-i", lab_inventory,
                               "-e", "WHO=fleet", "--memory", "32m", "lab02", name,
                               "sh", "-c", "echo hello $WHO; exit 5"],
                              capture_output=True, text=True, timeout=60)
        assert (done.returncode, done.stdout) == (5, "hello fleet\n"), done.stderr
        missing = subprocess.run([sys.executable, "-m", "fleet", "run", "-i", lab_inventory,
                                  "lab02", name, "no-such-command"],
                                 capture_output=True, text=True, timeout=60)
        assert missing.returncode == 127 and "lab02" in missing.stderr
        detached = subprocess.run([sys.executable, "-m", "fleet", "run", "-d", "--name",
                                   "fleet-test-detached", "-i", lab_inventory, "lab02", name,
                                   "sh", "-c", "echo detached; sleep 30"],
                                  capture_output=True, text=True, timeout=60)
        assert detached.returncode == 0 and len(detached.stdout.strip()) == 64, detached
        for _ in range(50):  # the supervisor writes the log as the output comes
            logs = subprocess.run([sys.executable, "-m", "fleet", "logs", "-i", lab_inventory,
                                   "lab02", "fleet-test-detached"],
                                  capture_output=True, text=True, timeout=60)
            if logs.stdout:
                break
            time.sleep(0.1)
        assert logs.stdout == "detached\n", logs
    finally:
        subprocess.run([sys.executable, "-m", "fleet", "rm", "-f", "-i", lab_inventory, "lab02",
                        "fleet-test-detached"], capture_output=True, timeout=60)
        subprocess.run([sys.executable, "-m", "fleet", "rmi", "-i", lab_inventory, "lab02",
                        name], capture_output=True, timeout=60)

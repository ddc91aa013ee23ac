"""Detached containers on a lab host: the container module's states, supervision that
outlives the SSH session, logs, stop, restart policy, and nothing left after removal."""

import json
import time
import uuid

import pytest

from agent_payload.runtime.spec import MASKED_PATHS, READONLY_PATHS
from fleet.transport.session import Session
from tests.integration.conftest import LAB_MARKS
from tests.integration.helpers import busybox_store, ssh_run

pytestmark = LAB_MARKS


@pytest.fixture
def host(lab, lab_inventory):
    """The first lab host's target, a store and cgroup parent of this test's own."""
    with busybox_store(lab, lab_inventory, 0) as (target, store, parent, image, _):
        yield target, store, parent, image, (lab[0], lab[1].hosts[0].address)


def call(target, **params):
    session = Session.open(target)
    try:
        return session.call("container", params, timeout=60)
    finally:
        session.close()


def test_detached_lifecycle(host):
    target, store, parent, image, (config, address) = host
    name = "fleet-test-web"
    common = {"name": name, "image": image, "store": store, "cgroup_parent": parent,
              "command": ["sh", "-c", "echo hello; echo oops >&2; sleep 61"], "init": True}
    first = call(target, **common)
    assert first["changed"] and not first["failed"], first
    state = first["container"]["State"]
    assert state["Running"] and state["Pid"] > 0, first
    # A new session later: still running, nothing to change.
    again = call(target, **common)
    assert again["changed"] is False and again["container"]["State"]["Running"], again
    time.sleep(0.3)
    log = ssh_run(config, address, f"cat {again['container']['LogPath']}")
    lines = [json.loads(line) for line in log.splitlines()]
    assert [(entry["stream"], entry["log"]) for entry in lines] == [
        ("stdout", "hello\n"), ("stderr", "oops\n")]
    assert all(entry["time"].endswith("Z") for entry in lines)
    stopped = call(target, **dict(common, state="stopped", stop_timeout=5))
    assert stopped["changed"] and stopped["container"]["State"]["ExitCode"] == 143, stopped
    # A changed option recreates it.
    changed = call(target, **dict(common, env={"MODE": "two"}))
    assert changed["changed"] and changed["container"]["Id"] != first["container"]["Id"]
    assert "MODE=two" in changed["container"]["Config"]["Env"]
    gone = call(target, name=name, state="absent", store=store)
    assert gone["changed"], gone
    left = ssh_run(config, address, f"ls {store}/containers | wc -l; "
                                    f"find /sys/fs/cgroup/*/{parent} -mindepth 1 -type d "
                                    "2>/dev/null | wc -l; findmnt -rn -t overlay | wc -l; "
                                    f"pgrep -f 'sleep 6[1]' | wc -l")  # this test's own sleep
    assert left.split() == ["0", "0", "0", "0"], left
    assert call(target, name=name, state="absent", store=store)["changed"] is False


def test_restart_policy_and_bad_input(host):
    target, store, parent, image, _ = host
    name = "fleet-test-flaky"
    result = call(target, name=name, image=image, store=store, cgroup_parent=parent,
                  command=["sh", "-c", "exit 3"], restart_policy="on-failure:2")
    assert not result["failed"], result
    deadline = time.monotonic() + 10
    while True:
        shown = call(target, name=name, image=image, store=store, cgroup_parent=parent,
                     command=["sh", "-c", "exit 3"], restart_policy="on-failure:2",
                     state="present")["container"]
        if shown["RestartCount"] == 2 and not shown["State"]["Running"]:
            break
        assert time.monotonic() < deadline, shown
        time.sleep(0.2)
    assert shown["State"]["ExitCode"] == 3
    call(target, name=name, state="absent", store=store)
    missing = call(target, name="fleet-test-none", image="nope/nothing", store=store,
                   pull="never")
    assert missing["failed"] and "is not present" in missing["msg"], missing
    bad = call(target, name="fleet-test-bad", image=image, store=store,
               restart_policy="sometimes")
    assert bad["failed"] and "restart_policy" in bad["msg"], bad


def test_container_commands(lab, lab_inventory, host):
    import subprocess
    import sys
    target, store, parent, image, (config, address) = host
    # The CLI works on the default store: a container name no other test uses there.
    name = "fleet-test-cli-" + uuid.uuid4().hex[:6]
    host_name = next(h.name for h in lab[1].hosts if h.address == address)

    def fleet(verb, *args):
        # options before HOST: what follows a container's name is its command
        return subprocess.run([sys.executable, "-m", "fleet", verb, "-i", lab_inventory, *args],
                              capture_output=True, text=True, timeout=60)

    pulled = fleet("pull", host_name, image)
    assert pulled.returncode == 0, pulled.stderr
    made = call(target, name=name, image=image, command=["sh", "-c", "echo up; sleep 60"],
                init=True)
    assert not made["failed"], made
    try:
        listed = fleet("ps", "all", "-o", "json")
        found = [c for h in json.loads(listed.stdout)["hosts"] for c in h["containers"]
                 if c["Name"] == "/" + name]
        assert len(found) == 1 and found[0]["State"]["Running"]
        time.sleep(0.2)
        shown = fleet("logs", host_name, name)
        assert shown.stdout == "up\n", shown
        refused = fleet("rm", host_name, name)
        assert refused.returncode == 1 and "stop it first" in refused.stderr
        # the container's own writes: seen by exec, kept through stop and start
        assert fleet("exec", host_name, name, "sh", "-c", "echo kept > /root/mark").returncode == 0
        assert fleet("stop", "-t", "2", host_name, name).returncode == 0
        inspected = json.loads(fleet("inspect", host_name, name).stdout)[0]
        assert inspected["State"]["ExitCode"] == 143 and not inspected["State"]["Running"]
        assert fleet("start", host_name, name).returncode == 0
        assert json.loads(fleet("inspect", host_name, name).stdout)[0]["State"]["Running"]
        assert fleet("exec", host_name, name, "cat", "/root/mark").stdout == "kept\n"
        # its mounts are its own: nothing of the host's tree shows through
        mounts = fleet("exec", host_name, name, "cat", "/proc/self/mountinfo").stdout
        points = {line.split()[4] for line in mounts.splitlines()}
        expected = {"/", "/proc", "/sys", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue",
                    "/etc/hostname", "/etc/hosts", "/etc/resolv.conf"} | set(
            MASKED_PATHS) | set(READONLY_PATHS)
        assert "/" in points and points <= expected, points - expected
        # exec: the same PID namespace and filesystem, Docker's capabilities, exit codes
        inside = fleet("exec", "-e", "X=1", host_name, name, "sh", "-c",
                       "echo $X; cat /proc/1/cmdline | tr '\\0' ' '; echo; "
                       "grep CapEff /proc/self/status; hostname; exit 6")
        out = inside.stdout.splitlines()
        assert inside.returncode == 6 and out[0] == "1", inside
        assert "sleep 60" in out[1] or "python" in out[1], out
        assert out[2].split() == ["CapEff:", "00000000a80425fb"]
        assert out[3] == json.loads(fleet("inspect", host_name, name).stdout)[0]["Id"][:12]
        assert fleet("exec", host_name, name, "no-such-cmd").returncode == 127
    finally:
        removed = fleet("rm", "-f", host_name, name)
    assert removed.returncode == 0, removed.stderr
    assert fleet("inspect", host_name, name).returncode == 1


def test_healthcheck(host):
    target, store, parent, image, _ = host
    name = "fleet-test-health"
    params = {"name": name, "image": image, "store": store, "cgroup_parent": parent,
              "command": ["sleep", "60"], "init": True,
              "healthcheck": {"test": ["CMD-SHELL", "test -f /tmp/ok && echo fine"],
                              "interval": "200ms", "timeout": "2s", "retries": 2}}

    def health():
        return call(target, **dict(params, state="present"))["container"]["State"]["Health"]

    def wait_for(status):
        deadline = time.monotonic() + 15
        while True:
            shown = health()
            if shown["Status"] == status:
                return shown
            assert time.monotonic() < deadline, shown
            time.sleep(0.1)

    try:
        started = call(target, **params)
        assert started["container"]["State"]["Health"]["Status"] == "starting", started
        unhealthy = wait_for("unhealthy")
        assert unhealthy["FailingStreak"] >= 2 and unhealthy["Log"][-1]["ExitCode"] == 1
        session = Session.open(target)
        try:
            done = session.call("container_exec", {"name": name, "store": store,
                                                   "command": ["touch", "/tmp/ok"]})
        finally:
            session.close()
        assert done["rc"] == 0, done
        healthy = wait_for("healthy")
        assert healthy["FailingStreak"] == 0 and healthy["Log"][-1]["Output"] == "fine\n"
    finally:
        call(target, name=name, state="absent", store=store, force_kill=True)


def test_volume_commands(lab, lab_inventory):
    import subprocess
    import sys
    name = "fleet-test-vol-" + uuid.uuid4().hex[:6]

    def fleet(*args):
        proc = subprocess.run([sys.executable, "-m", "fleet", "volume", args[0], "-i",
                               lab_inventory, *args[1:]],
                              capture_output=True, text=True, timeout=60)
        return proc.returncode, proc.stdout

    try:
        code, _ = fleet("create", "all", name, "-o", "json")
        assert code == 0
        code, out = fleet("ls", "all", "-o", "json")
        hosts = json.loads(out)["hosts"]
        assert all(any(v["Name"] == name for v in h["volumes"]) for h in hosts)
    finally:
        code, out = fleet("rm", "all", name, "-o", "json")
    assert code == 0 and all(h["changed"] for h in json.loads(out)["hosts"])


def test_a_killed_monitor_is_noticed_and_replaced(host):
    target, store, parent, image, (config, address) = host
    params = {"name": "fleet-test-orphan", "image": image, "store": store,
              "cgroup_parent": parent, "init": True,
              "command": ["sh", "-c", "i=0; while true; do echo tick $i; i=$((i+1)); "
                                      "sleep 0.1; done"]}
    first = call(target, **params)
    assert first["container"]["State"]["Running"], first
    log_path = first["container"]["LogPath"]
    state_path = log_path.replace("container.log", "state.json")
    monitor = json.loads(ssh_run(config, address, f"cat {state_path}"))["supervisor"]
    try:
        ssh_run(config, address, f"kill -9 {monitor}")
        time.sleep(0.3)
        again = call(target, **params)  # the next call notices, and a new monitor takes over
        assert again["changed"] is False and again["container"]["State"]["Running"], again
        shown = json.loads(ssh_run(config, address, f"cat {state_path}"))
        assert shown["supervisor"] not in (0, monitor), shown
        before = int(ssh_run(config, address, f"wc -l < {log_path}"))
        time.sleep(0.6)
        after = int(ssh_run(config, address, f"wc -l < {log_path}"))
        assert after > before, (before, after)  # the output flows on through its FIFO
        stopped = call(target, **dict(params, state="stopped", stop_timeout=5))
        assert not stopped["container"]["State"]["Running"], stopped
        assert stopped["container"]["State"]["ExitCode"] == -1  # not our child: unknown
    finally:
        call(target, name="fleet-test-orphan", state="absent", store=store, force_kill=True)
    left = ssh_run(config, address, "pgrep -f 'tick [$]i' | wc -l")
    assert left.strip() == "0"


def test_the_image_is_pulled_when_missing(lab, host):
    target, store, parent, image, _ = host
    plain = next(r for r in lab[1].registries if r["name"] == "plain")["address"]
    other = f"{plain}/busybox:oci"  # not in this test's store yet
    try:
        made = call(target, name="fleet-test-pulled", image=other, store=store,
                    cgroup_parent=parent, command=["true"], insecure_registries=[plain])
        assert made["changed"] and not made["failed"], made
        assert made["container"]["Config"]["Image"] == other
        refused = call(target, name="fleet-test-nopull", image=f"{plain}/layers:latest",
                       store=store, pull="never", command=["true"])
        assert refused["failed"] and "is not present" in refused["msg"], refused
    finally:
        call(target, name="fleet-test-pulled", state="absent", store=store)


def drive_terminal(args, keys=b"[ -t 0 ] && echo is-a-tty; echo hi-$((1+2)); exit 5\n"):
    """Run `fleet ARGS` on a pty of its own, type ``keys`` at the shell's prompt; return
    (everything the terminal showed, the exit code)."""
    import os
    import pty
    import select
    import sys
    pid, fd = pty.fork()
    if pid == 0:
        os.execv(sys.executable, [sys.executable, "-m", "fleet", *args])
    output, sent = b"", False
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        output += chunk
        if not sent and b"# " in output:  # the shell's prompt: it is listening
            os.write(fd, keys)
            sent = True
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return output, os.WEXITSTATUS(status)


def test_exec_with_a_terminal(lab, lab_inventory, host):
    target, store, parent, image, (config, address) = host
    host_name = next(h.name for h in lab[1].hosts if h.address == address)
    name = "fleet-test-tty-" + uuid.uuid4().hex[:6]
    # the CLI works on the default store (pulled there by another test's CLI call, maybe
    # not): the container module pulls what is missing
    plain = next(r for r in lab[1].registries if r["name"] == "plain")["address"]
    made = call(target, name=name, image=image, command=["sleep", "60"],
                insecure_registries=[plain])
    assert not made["failed"], made
    try:
        output, code = drive_terminal(["exec", "-t", "-i", lab_inventory, host_name, name,
                                       "sh"])
        assert b"is-a-tty" in output and b"hi-3" in output, output
        assert code == 5
    finally:
        call(target, name=name, state="absent", force_kill=True)


def test_volumes_from_and_capability_gated_syscalls(host):
    target, store, parent, image, _ = host
    base = {"image": image, "store": store, "cgroup_parent": parent}
    try:
        owner = call(target, name="fleet-test-owner", command=["sleep", "60"], init=True,
                     volumes=["fleet-test-shared:/shared", "/scratch"], **base)
        assert not owner["failed"], owner
        session = Session.open(target)
        try:
            borrowed = session.call("container_run", dict(
                base, volumes_from=["fleet-test-owner:ro"],
                command=["sh", "-c", "ls -d /shared /scratch; touch /shared/x || echo ro"]))
            # unshare is the kernel's to refuse without CAP_SYS_ADMIN, and the filter's
            # to allow with it
            plain = session.call("container_run", dict(base, command=["unshare", "-u", "true"]))
            admin = session.call("container_run", dict(base, cap_add=["SYS_ADMIN"],
                                                       command=["unshare", "-u", "true"]))
        finally:
            session.close()
        assert borrowed["stdout"].split() == ["/scratch", "/shared", "ro"], borrowed
        assert plain["rc"] != 0 and "not permitted" in plain["stderr"], plain
        assert admin["rc"] == 0, admin
    finally:
        call(target, name="fleet-test-owner", state="absent", store=store, force_kill=True)


def test_logs_follow_until_the_container_ends(lab, lab_inventory, host):
    import subprocess
    import sys
    target, store, parent, image, (config, address) = host
    host_name = next(h.name for h in lab[1].hosts if h.address == address)
    name = "fleet-test-follow-" + uuid.uuid4().hex[:6]
    plain = next(r for r in lab[1].registries if r["name"] == "plain")["address"]
    made = call(target, name=name, image=image, insecure_registries=[plain],
                command=["sh", "-c", "for i in 1 2 3 4; do echo line $i; sleep 0.3; done"])
    assert not made["failed"], made
    try:
        followed = subprocess.run([sys.executable, "-m", "fleet", "logs", "-f", "-i",
                                   lab_inventory, host_name, name],
                                  capture_output=True, text=True, timeout=30)
        assert followed.stdout == "line 1\nline 2\nline 3\nline 4\n", followed
    finally:
        call(target, name=name, state="absent", force_kill=True)


def test_run_with_a_terminal(lab, lab_inventory, host):
    target, store, parent, image, (config, address) = host
    host_name = next(h.name for h in lab[1].hosts if h.address == address)
    plain = next(r for r in lab[1].registries if r["name"] == "plain")["address"]
    pulled = call(target, name="fleet-test-tty-pull", image=image, state="present",
                  insecure_registries=[plain], command=["true"])  # the image in the store
    call(target, name="fleet-test-tty-pull", state="absent")
    assert not pulled["failed"], pulled
    output, code = drive_terminal(
        ["run", "-t", "--rm", "-i", lab_inventory, host_name, image, "sh"],
        b"[ -t 0 ] && echo is-a-tty; ls -l /dev/console | cut -c1; echo pid-$$; exit 4\n")
    assert b"is-a-tty" in output and b"\nc\r" in output and b"pid-1" in output, output
    assert code == 4

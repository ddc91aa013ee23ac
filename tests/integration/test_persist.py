"""Sessions kept between commands (ControlPersist) on the lab: the keeper, over real SSH.

Each test has a sessions directory of its own and closes its keeper at the end; a test
then checks that the keeper and the payload processes it kept are gone.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import replace

import pytest

from fleet.transport import persist, ssh
from fleet.transport.session import Session
from tests.integration.conftest import LAB_MARKS
from tests.integration.helpers import lab_targets, ssh_run
from tests.polling import wait_until

pytestmark = LAB_MARKS
WAIT = 15



def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def kept(monkeypatch, lab):
    """Persistence on (30 s), in a sessions directory of this test's own; afterwards the
    keepers are closed and must be gone, with every payload they kept."""
    # A short path: a unix socket's name has room for about 100 bytes.
    directory = tempfile.mkdtemp(prefix="fleet-sessions-", dir="/tmp")
    monkeypatch.setenv("FLEET_SESSIONS_DIR", directory)
    monkeypatch.setenv("FLEET_PERSIST", "30s")
    monkeypatch.setattr(persist, "_failed", [])
    yield directory
    keepers = [answer["pid"] for _, answer in persist.command("list")]
    persist.command("close")
    for pid in keepers:
        wait_until(lambda pid=pid: not alive(pid), WAIT)
    assert not any(name.endswith(".sock") for name in os.listdir(directory))
    shutil.rmtree(directory)


def payload_running(lab, address, pid):
    return ssh_run(lab[0], address, f"test -d /proc/{pid} && echo yes || true").strip() == "yes"


def test_a_second_command_gets_the_session_the_first_left(kept, lab, lab_inventory):
    targets = lab_targets(lab_inventory)
    assert all(t.persist == 30.0 for t in targets)
    first = [Session.open(t) for t in targets]
    assert all(s.call("ping")["ping"] == "pong" for s in first)
    for session in first:
        session.close()
    second = [Session.open(t) for t in targets]
    try:
        assert [s.cache_state for s in second] == ["kept"] * len(targets)
        assert [s.hello["pid"] for s in second] == [s.hello["pid"] for s in first]
        assert all(s.call("facts")["ansible_facts"] for s in second)
    finally:
        for session in second:
            session.close()
    listed = json.loads(subprocess.run(
        [sys.executable, "-m", "fleet", "sessions", "ls", "-o", "json"],
        capture_output=True, text=True, check=True).stdout)["sessions"]
    assert sorted(s["host"] for s in listed) == sorted(t.host for t in targets)
    assert {s["state"] for s in listed} == {"idle"}
    socket_file = next(p for p in os.listdir(kept) if p.endswith(".sock"))
    assert os.stat(os.path.join(kept, socket_file)).st_mode & 0o777 == 0o600
    assert os.stat(kept).st_mode & 0o777 == 0o700
    closed = subprocess.run([sys.executable, "-m", "fleet", "sessions", "close"],
                            capture_output=True, text=True, check=True)
    assert closed.stdout.strip() == f"closing {len(targets)} session(s)"
    state = lab[1]
    for host, session in zip(state.hosts, first):
        wait_until(lambda h=host, s=session: not payload_running(lab, h.address, s.hello["pid"]),
                   WAIT)


@pytest.mark.skipif(not shutil.which("ssh-agent"), reason="needs openssh-client")
def test_a_host_reached_through_ssh_agent_is_kept(kept, lab, lab_inventory, tmp_path,
                                                  monkeypatch):
    # No key file: the key is in this command's agent, which the keeper (started by an
    # earlier command, with another environment) must use all the same.
    target = replace(lab_targets(lab_inventory)[0], key_file=None)
    sock = tmp_path / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL)
    try:
        wait_until(sock.exists, WAIT)
        subprocess.run(["ssh-add", "-q", lab_targets(lab_inventory)[0].key_file], check=True,
                       env=dict(os.environ, SSH_AUTH_SOCK=str(sock)),
                       stderr=subprocess.DEVNULL)
        monkeypatch.setenv("SSH_AUTH_SOCK", str(sock))
        monkeypatch.setenv("HOME", str(tmp_path))  # no default keys to fall back on
        first = Session.open(target)
        first.close()
        second = Session.open(target)
        try:
            assert second.cache_state == "kept"
            assert second.hello["pid"] == first.hello["pid"]
        finally:
            second.close()
        monkeypatch.setenv("SSH_AUTH_SOCK", str(tmp_path / "another.sock"))
        with pytest.raises(ssh.AuthError):  # another agent (none here): not that session
            Session.open(target)
    finally:
        agent.terminate()
        agent.wait(WAIT)


def test_a_session_dropped_mid_request_is_not_kept(kept, lab, lab_inventory):
    target = lab_targets(lab_inventory)[0]
    session = Session.open(target)
    session.start("command", {"argv": ["sleep", "60"]})
    session.close()  # a request in flight: the keeper closes the session
    address = lab[1].hosts[0].address
    wait_until(lambda: not payload_running(lab, address, session.hello["pid"]), WAIT)
    again = Session.open(target)
    try:
        assert again.cache_state != "kept" and again.hello["pid"] != session.hello["pid"]
    finally:
        again.close()


def test_failures_through_the_keeper_read_as_they_do_without_it(kept, lab, lab_inventory,
                                                                tmp_path):
    target = lab_targets(lab_inventory)[0]
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    direct = replace(target, known_hosts=str(empty), persist=0.0)
    with pytest.raises(ssh.HostKeyError) as without:
        Session.open(direct)
    with pytest.raises(ssh.HostKeyError) as through:
        Session.open(replace(direct, persist=30.0))
    assert str(through.value) == str(without.value)
    closed_port = replace(target, port=1, connect_timeout=2.0)
    with pytest.raises(ssh.TransportError, match=r"^unreachable: connect to .*:1: "):
        Session.open(closed_port)


def test_the_cli_keeps_sessions_between_commands(kept, lab, lab_inventory):
    def ping():
        done = subprocess.run([sys.executable, "-m", "fleet", "ping", "-i", lab_inventory,
                               "-o", "json"], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return [h["payload"] for h in json.loads(done.stdout)["hosts"]]

    assert "kept" not in ping()
    assert ping() == ["kept"] * len(lab[1].hosts)

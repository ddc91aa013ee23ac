"""The session keeper in-process: real payload processes on pipes, commands on socketpairs.

start_payload is replaced by one that starts the payload locally (the bootstrap over
Popen pipes, as test_session_local does), so the keeper's whole relay runs without SSH:
a released session is kept and handed to the next command, one left with a request in
flight is closed, idle ones expire, and the keeper's errors carry their class.
"""

import json
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from fleet.transport import keeper as keeper_mod
from fleet.transport import persist, ssh
from fleet.transport.payload import BOOTSTRAP, current_payload
from fleet.transport.session import Session, _handshake
from tests.polling import wait_until
from tests.unit.test_session_local import FakeTransport, PipeChannel

WAIT = 10



@pytest.fixture
def keeper(tmp_path, monkeypatch):
    """A Keeper whose sessions are local payload processes; .started lists them."""
    home = tmp_path / "home"
    home.mkdir()
    payload = current_payload()
    keeper = keeper_mod.Keeper(payload)
    keeper.started = []
    keeper.fail_with = None

    def start_payload(target, payload):
        if keeper.fail_with:
            raise keeper.fail_with
        proc = subprocess.Popen([sys.executable, "-I", "-S", "-c", BOOTSTRAP, payload.digest],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, cwd=home, env={"HOME": str(home)},
                                start_new_session=True)
        channel = PipeChannel(proc)
        keeper.started.append(channel)
        return FakeTransport(), channel, _handshake(channel, target, payload)

    monkeypatch.setattr(keeper_mod, "start_payload", start_payload)
    yield keeper
    keeper.closing = True
    keeper.expire()
    for channel in keeper.started:
        if channel.proc.poll() is None:
            channel.proc.kill()
        channel.proc.wait(WAIT)
        channel.close()


def target(**fields):
    fields = {"name": "local", "host": "127.0.0.1", "connect_timeout": 5.0, "persist": 30.0,
              **fields}
    return ssh.Target(**fields)


def lease(keeper, tgt=None, digest=None):
    """A command's side of one open: (answer, socket); the keeper serves it in a thread."""
    tgt = tgt or target()
    mine, theirs = socket.socketpair()
    thread = threading.Thread(target=keeper.serve_client, args=(theirs,), daemon=True)
    thread.start()
    answer = persist.ask(mine, {"op": "open", "payload": digest or keeper.payload.digest,
                                "target": persist.target_fields(tgt)}, WAIT)
    return answer, mine, thread


def open_session(keeper, tgt=None):
    tgt = tgt or target()
    answer, sock, thread = lease(keeper, tgt)
    assert answer["ev"] == "hello", answer
    return Session(tgt, persist.KeptLink(sock), answer), thread


def idle_count(keeper):
    with keeper._lock:
        return sum(1 for k in keeper.sessions if not k.busy)


def test_a_released_session_is_kept_for_the_next_command(keeper):
    first, thread = open_session(keeper)
    assert first.cache_state in ("uploaded", "cached")
    assert first.call("ping", {"data": "one"}, timeout=WAIT)["ping"] == "one"
    first.close()
    thread.join(WAIT)
    assert idle_count(keeper) == 1
    second, thread = open_session(keeper)
    assert second.cache_state == "kept"
    assert second.hello["pid"] == first.hello["pid"] and len(keeper.started) == 1
    # Request ids start again at 1 on the same payload: the old ones are finished.
    assert second.call("ping", {"data": "two"}, timeout=WAIT)["ping"] == "two"
    second.close()
    thread.join(WAIT)
    assert keeper.sessions[0].describe()["state"] == "idle"


def test_a_session_left_with_a_request_in_flight_is_closed(keeper):
    session, thread = open_session(keeper)
    session.start("command", {"argv": ["sleep", "30"]})
    session.close()
    thread.join(WAIT)
    assert keeper.sessions == []
    # The payload saw its channel close, cancelled the command and exited.
    assert keeper.started[0].proc.wait(WAIT) == 0
    again, thread = open_session(keeper)
    assert again.cache_state != "kept" and len(keeper.started) == 2
    again.close()
    thread.join(WAIT)


def test_a_command_that_vanishes_takes_its_session_with_it(keeper):
    _answer, sock, thread = lease(keeper)
    sock.close()  # no release: a killed command
    thread.join(WAIT)
    assert keeper.sessions == []
    assert keeper.started[0].proc.wait(WAIT) == 0


def test_targets_differing_in_user_or_become_get_their_own_sessions(keeper):
    first, t1 = open_session(keeper, target(user="alice"))
    first.close()
    t1.join(WAIT)
    other, t2 = open_session(keeper, target(user="bob"))
    assert other.cache_state != "kept"
    other.close()
    t2.join(WAIT)
    same, t3 = open_session(keeper, target(user="alice", name="renamed", persist=5.0))
    assert same.cache_state == "kept" and same.hello["pid"] == first.hello["pid"]
    same.close()
    t3.join(WAIT)


def test_targets_reached_through_another_agent_or_keys_get_their_own_sessions(keeper):
    # A target without a key file comes with the command's agent socket and default keys
    # (ssh.pinned_auth); identities arrive as a JSON list.
    mine = target(agent="/run/user/0/agent.1", identities=("/root/.ssh/id_ed25519",))
    first, t1 = open_session(keeper, mine)
    first.close()
    t1.join(WAIT)
    for other in (target(agent="/run/user/0/agent.2", identities=("/root/.ssh/id_ed25519",)),
                  target(agent="/run/user/0/agent.1", identities=())):
        session, thread = open_session(keeper, other)
        assert session.cache_state != "kept"
        session.close()
        thread.join(WAIT)
    same, t2 = open_session(keeper, mine)
    assert same.cache_state == "kept" and same.hello["pid"] == first.hello["pid"]
    same.close()
    t2.join(WAIT)


def test_idle_sessions_expire_and_the_keeper_then_leaves(keeper, monkeypatch):
    monkeypatch.setattr(keeper_mod, "LINGER", 0.0)
    session, thread = open_session(keeper, target(persist=0.05))
    session.close()
    thread.join(WAIT)
    time.sleep(0.1)
    assert keeper.expire() is True
    assert keeper.sessions == [] and keeper.started[0].proc.wait(WAIT) == 0


def test_a_dead_kept_session_is_not_handed_out(keeper):
    session, thread = open_session(keeper)
    session.close()
    thread.join(WAIT)
    keeper.started[0].proc.kill()
    wait_until(lambda: keeper.sessions == [])
    again, thread = open_session(keeper)
    assert again.cache_state != "kept" and again.call("ping", timeout=WAIT)["ping"] == "pong"
    again.close()
    thread.join(WAIT)


def test_errors_carry_their_class_and_line(keeper):
    keeper.fail_with = ssh.HostKeyError("host key for 127.0.0.1 not found in /kh")
    answer, sock, thread = lease(keeper)
    sock.close()
    thread.join(WAIT)
    assert answer == {"ev": "error", "kind": "HostKeyError",
                      "msg": "host key for 127.0.0.1 not found in /kh"}
    assert persist.ERRORS[answer["kind"]] is ssh.HostKeyError
    answer, sock, thread = lease(keeper, digest="0" * 16)
    sock.close()
    thread.join(WAIT)
    assert answer["kind"] == "stale"


def test_close_ends_idle_sessions_and_busy_ones_when_released(keeper):
    idle, t1 = open_session(keeper)
    busy, t2 = open_session(keeper)
    idle.close()
    t1.join(WAIT)
    mine, theirs = socket.socketpair()
    threading.Thread(target=keeper.serve_client, args=(theirs,), daemon=True).start()
    assert persist.ask(mine, {"op": "close"}, WAIT) == {"ev": "closing", "sessions": 2}
    mine.close()
    assert keeper.expire() is False  # the busy one is still in use
    assert busy.call("ping", timeout=WAIT)["ping"] == "pong"
    busy.close()
    t2.join(WAIT)
    wait_until(keeper.expire)
    assert keeper.sessions == []
    assert all(c.proc.wait(WAIT) == 0 for c in keeper.started)


def test_listing_describes_each_session(keeper):
    session, thread = open_session(keeper, target(user="carol", become=True))
    mine, theirs = socket.socketpair()
    threading.Thread(target=keeper.serve_client, args=(theirs,), daemon=True).start()
    answer = persist.ask(mine, {"op": "list"}, WAIT)
    mine.close()
    (listed,) = answer["sessions"]
    assert listed["host"] == "127.0.0.1" and listed["user"] == "carol"
    assert listed["become_user"] == "root" and listed["state"] == "busy"
    assert listed["pid"] == session.hello["pid"]
    session.close()
    thread.join(WAIT)


def test_a_small_frame_goes_to_the_payload_in_one_write(keeper, monkeypatch):
    writes = []
    original = keeper_mod.Kept.send

    def recording(self, *parts):
        writes.append(len(parts))
        return original(self, *parts)

    monkeypatch.setattr(keeper_mod.Kept, "send", recording)
    session, thread = open_session(keeper)
    assert session.call("ping", timeout=WAIT)["ping"] == "pong"
    session.close()
    thread.join(WAIT)
    # One write: a header sent apart from its body waited for the host's delayed ACK.
    assert writes and set(writes) == {1}


class FakeChild:
    """A Popen of a keeper that says ``line``."""

    def __init__(self, line):
        read, write = os.pipe()
        os.write(write, line)
        os.close(write)
        self.stdout = open(read, "rb")  # noqa: SIM115 - closed by spawn
        self.waited = False

    def wait(self):
        self.waited = True


def test_prestart_starts_one_keeper_early_and_spawn_takes_it(tmp_path, monkeypatch):
    monkeypatch.setenv("FLEET_SESSIONS_DIR", str(tmp_path / "s"))
    monkeypatch.delenv("FLEET_PERSIST", raising=False)
    started = []
    monkeypatch.setattr(persist, "_started", [])
    monkeypatch.setattr(persist, "_start", lambda path, digest: started.append(
        FakeChild(b"ready\n")) or started[-1])
    persist.prestart()
    persist.prestart()  # one keeper however many commands' options ask
    assert len(started) == 1
    path = persist.socket_path(current_payload().digest)
    persist.spawn(path, current_payload().digest)
    assert started[0].waited and len(started) == 1 and persist._started == []


def test_prestart_starts_nothing_when_sessions_are_off_or_a_keeper_listens(tmp_path,
                                                                          monkeypatch):
    monkeypatch.setenv("FLEET_SESSIONS_DIR", str(tmp_path / "s"))
    monkeypatch.setattr(persist, "_started", [])
    monkeypatch.setattr(persist, "_start", lambda path, digest: pytest.fail("started"))
    monkeypatch.setenv("FLEET_PERSIST", "no")
    persist.prestart()
    monkeypatch.setenv("FLEET_PERSIST", "60s")
    persist.socket_path(current_payload().digest).touch()  # a keeper's socket is there
    persist.prestart()


def test_a_keeper_that_does_not_start_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("FLEET_SESSIONS_DIR", str(tmp_path / "s"))
    monkeypatch.setattr(persist, "_started", [FakeChild(b"")])
    with pytest.raises(persist.KeeperError, match="the session keeper did not start: "
                                                  "no answer"):
        persist.spawn(tmp_path / "x.sock", "0" * 16)


def test_sessions_ls_says_why_no_session_can_be_kept(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from fleet.cli import main

    shared = tmp_path / "s"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    monkeypatch.setenv("FLEET_SESSIONS_DIR", str(shared))
    result = CliRunner().invoke(main, ["sessions", "ls"])
    assert result.exit_code == 1
    assert f"{shared} must be a directory of yours that only you can use" in result.output
    shared.chmod(0o700)
    result = CliRunner().invoke(main, ["sessions", "ls", "-o", "json"])
    assert result.exit_code == 0 and json.loads(result.output) == {"sessions": []}


def test_a_kept_session_that_does_not_answer_is_replaced(keeper, monkeypatch):
    import signal

    monkeypatch.setattr(keeper_mod, "FORGET_WAIT", 0.2)
    session, thread = open_session(keeper)
    session.close()
    thread.join(WAIT)
    stuck = keeper.started[0].proc
    stuck.send_signal(signal.SIGSTOP)  # alive to the kernel, silent to us: a host cut off
    try:
        again, thread = open_session(keeper)
        assert again.cache_state != "kept" and len(keeper.started) == 2
        assert again.call("ping", timeout=WAIT)["ping"] == "pong"
        again.close()
        thread.join(WAIT)
    finally:
        stuck.send_signal(signal.SIGCONT)
    assert stuck.wait(WAIT) == 0  # the replaced one was closed

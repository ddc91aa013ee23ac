"""fleet.transport.session against the real bootstrap in a local subprocess.

A small channel class gives the subprocess's pipes the paramiko Channel methods that
Session and _handshake use, so the whole controller side runs without SSH.
"""

import io
import os
import signal
import socket
import subprocess
import sys
import threading

import pytest

from agent_payload import protocol
from fleet.transport import session as session_mod
from fleet.transport import ssh
from fleet.transport.payload import BOOTSTRAP, Payload, current_payload
from fleet.transport.session import ChannelLink, Request, RequestError, Session

WAIT = 10


class PipeChannel:
    """The parts of paramiko.Channel Session uses, over Popen pipes.

    Like paramiko, stdout and stderr are buffered as they arrive (recv_ready and
    recv_stderr_ready look at those buffers), and the exit status is ready only after
    all of stderr, as on an SSH channel where exit-status follows the data.
    """

    def __init__(self, proc):
        self.proc = proc
        self.timeout = None
        self._cond = threading.Condition()
        self._buf = {"out": bytearray(), "err": bytearray()}
        self._eof = {"out": False, "err": False}
        self._pumps = [threading.Thread(target=self._pump, args=(name, stream), daemon=True)
                       for name, stream in (("out", proc.stdout), ("err", proc.stderr))]
        for pump in self._pumps:
            pump.start()

    def _pump(self, name, stream):
        while True:
            try:
                data = os.read(stream.fileno(), 65536)
            except OSError:
                data = b""
            with self._cond:
                if data:
                    self._buf[name] += data
                else:
                    self._eof[name] = True
                self._cond.notify_all()
            if not data:
                return

    def _recv(self, name, n):
        with self._cond:
            ready = self._cond.wait_for(lambda: self._buf[name] or self._eof[name],
                                        self.timeout)
            if not ready:
                raise socket.timeout()
            data = bytes(self._buf[name][:n])
            del self._buf[name][:n]
            return data

    def recv(self, n):
        return self._recv("out", n)

    def recv_stderr(self, n):
        return self._recv("err", n)

    def recv_ready(self):
        with self._cond:
            return bool(self._buf["out"])

    def recv_stderr_ready(self):
        with self._cond:
            return bool(self._buf["err"])

    def exit_status_ready(self):
        with self._cond:
            return self.proc.poll() is not None and self._eof["err"]

    def recv_exit_status(self):
        self.proc.wait()
        self._pumps[1].join()
        return self.proc.returncode

    def sendall(self, data):
        try:
            self.proc.stdin.write(data)
            self.proc.stdin.flush()
        except (BrokenPipeError, ValueError):
            raise OSError("Socket is closed") from None

    def send(self, data):
        self.sendall(data)
        return len(data)

    def shutdown_write(self):
        self.proc.stdin.close()

    def settimeout(self, timeout):
        self.timeout = timeout

    def close(self):
        for pump in self._pumps:
            pump.join(WAIT)


class FakeTransport:
    def __init__(self):
        self.closed = False

    def close(self):
        self.closed = True


FAKE_SUDO = r"""#!/bin/sh
# sudo -H -u USER (-n | -S -p PROMPT) -- COMMAND...: the parts fleet uses.
mode=n
prompt=
while [ "$1" != "--" ]; do
  case "$1" in
    -S) mode=S ;;
    -p) shift; prompt="$1" ;;
  esac
  shift
done
shift
if [ "$mode" = n ]; then
  echo "sudo: a password is required" >&2
  exit 1
fi
tries=0
while :; do
  printf '%s' "$prompt" >&2
  IFS= read -r pw || exit 1
  [ "$pw" = "$FAKE_SUDO_PASSWORD" ] && break
  tries=$((tries + 1))
  if [ "$tries" -ge 3 ]; then
    echo "sudo: 3 incorrect password attempts" >&2
    exit 1
  fi
  echo "Sorry, try again." >&2
done
if [ ! -x "$1" ]; then
  echo "sudo: $1: command not found" >&2
  sleep 0.3  # whatever sudo and PAM still do before exiting
  exit 1
fi
exec "$@"
"""


@pytest.fixture(scope="module")
def payload():
    return current_payload()


@pytest.fixture
def local(tmp_path):
    """start(argv=None, **target fields) -> (target, channel) for a local payload process."""
    home = tmp_path / "home"
    home.mkdir()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sudo").write_text(FAKE_SUDO)
    (bin_dir / "sudo").chmod(0o755)
    started = []

    def start(argv=None, shell=None, **fields):
        fields.setdefault("connect_timeout", 5.0)
        target = ssh.Target(name="local", host="127.0.0.1", **fields)
        if shell is not None:
            argv = ["sh", "-c", shell]
        argv = argv or [sys.executable, "-I", "-S", "-c", BOOTSTRAP, current_payload().digest]
        env = {"HOME": str(home), "PATH": f"{bin_dir}:{os.environ.get('PATH', '/usr/bin')}",
               "FAKE_SUDO_PASSWORD": "s3cret"}
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, cwd=home, env=env,
                                start_new_session=True)
        channel = PipeChannel(proc)
        started.append(channel)
        return target, channel

    start.home = home
    yield start
    for channel in started:
        proc = channel.proc
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # the shell's children too
        proc.wait(WAIT)
        channel.close()
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            try:
                stream.close()
            except OSError:
                pass


def open_session(local, payload, **fields):
    target, channel = local(**fields)
    hello = session_mod._handshake(channel, target, payload)
    return Session(target, ChannelLink(FakeTransport(), channel), hello)


def test_upload_then_cached(local, payload):
    first = open_session(local, payload)
    assert first.cache_state == "uploaded"
    assert first.hello["version"] == payload.digest
    first.close()
    assert first.link.transport.closed
    assert first.link.channel.proc.wait(WAIT) == 0
    second = open_session(local, payload)
    assert second.cache_state == "cached"
    assert second.call("ping", timeout=WAIT)["ping"] == "pong"
    second.close()


def test_call_ping_and_facts(local, payload):
    session = open_session(local, payload)
    assert session.call("ping", timeout=WAIT) == {"changed": False, "failed": False,
                                                  "ping": "pong"}
    assert session.call("ping", {"data": "hello"}, timeout=WAIT)["ping"] == "hello"
    facts = session.call("facts", timeout=WAIT)["ansible_facts"]
    assert facts["fleet_payload"] == {"version": payload.digest, "cache": "uploaded"}
    assert facts["python_version"] == "{}.{}.{}".format(*sys.version_info[:3])
    session.close()


def test_failed_results_and_errors(local, payload):
    session = open_session(local, payload)
    result = session.call("nope", timeout=WAIT)
    assert result["failed"] is True and result["msg"] == "unknown module 'nope'"
    result = session.call("ping", {"bogus": 1}, timeout=WAIT)
    assert result["failed"] is True and "unsupported parameter 'bogus'" in result["msg"]
    with pytest.raises(RequestError, match="RuntimeError: boom"):
        session.call("ping", {"data": "crash"}, timeout=WAIT)
    assert session.call("ping", timeout=WAIT)["ping"] == "pong"  # still serving
    session.close()


def test_concurrent_requests(local, payload):
    session = open_session(local, payload)
    requests = [session.start("ping", {"data": f"r{i}"}) for i in range(20)]
    assert len({r.id for r in requests}) == 20
    for i, request in reversed(list(enumerate(requests))):
        assert request.wait(timeout=WAIT)["ping"] == f"r{i}"
        assert request.result["ping"] == f"r{i}"

    answers = {}

    def worker(n):
        answers[n] = session.call("ping", {"data": f"t{n}"}, timeout=WAIT)["ping"]

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    assert answers == {n: f"t{n}" for n in range(8)}
    session.close()


def test_events_end_with_the_result(local, payload):
    session = open_session(local, payload)
    events = list(session.start("ping").events(timeout=WAIT))
    assert events == [("result", {"changed": False, "failed": False, "ping": "pong"})]
    session.close()


def test_request_timeout(local, payload):
    session = open_session(local, payload)
    proc = session.link.channel.proc
    proc.send_signal(signal.SIGSTOP)
    try:
        request = session.start("ping")
        with pytest.raises(TimeoutError, match=f"request {request.id} timed out after 0.2s"):
            request.wait(timeout=0.2)
    finally:
        proc.send_signal(signal.SIGCONT)
    assert session.call("ping", timeout=WAIT)["ping"] == "pong"
    session.close()


def test_payload_crash_fails_pending_requests(local, payload):
    session = open_session(local, payload)
    assert session.call("ping", timeout=WAIT)["ping"] == "pong"
    proc = session.link.channel.proc
    proc.send_signal(signal.SIGSTOP)  # the requests below cannot be answered
    pending = [session.start("ping") for _ in range(3)]
    proc.kill()
    for request in pending:
        with pytest.raises(ssh.TransportError, match="payload on 127.0.0.1 exited"):
            request.wait(timeout=WAIT)
    with pytest.raises(ssh.TransportError, match="exited"):
        session.start("ping")
    request = pending[0]
    request.cancel()  # a cancel on a dead session is quietly dropped
    session.close()


def test_close_ends_the_payload(local, payload):
    session = open_session(local, payload)
    session.close()
    assert session.link.transport.closed
    assert session.link.channel.proc.wait(WAIT) == 0
    with pytest.raises(ssh.TransportError, match="session with 127.0.0.1 closed"):
        session.start("ping")


def test_corrupted_upload_is_a_remote_error(local, payload):
    target, channel = local()
    broken = Payload(payload.data[:-1] + bytes([payload.data[-1] ^ 0xFF]), payload.digest)
    with pytest.raises(ssh.RemoteError, match=r"payload failed to start on local \(exit 1\): "
                       "fleet: payload hash mismatch"):
        session_mod._handshake(channel, target, broken)


def test_missing_python_is_named(local, payload):
    target, channel = local(shell=payload.command("/nonexistent/python3"),
                            python="/nonexistent/python3")
    with pytest.raises(ssh.RemoteError) as info:
        session_mod._handshake(channel, target, payload)
    assert str(info.value) == ("python not found on local: /nonexistent/python3 "
                               "(set ansible_python_interpreter)")
    assert channel.recv_exit_status() == 127


def test_sudo_needing_a_password_is_a_become_failure(local, payload):
    target, channel = local(shell=payload.command(sys.executable, become=True), become=True)
    with pytest.raises(ssh.RemoteError, match="become failed on local: sudo: a password is "
                       "required"):
        session_mod._handshake(channel, target, payload)


def test_startup_failure_with_other_output(local, payload):
    target, channel = local(shell="echo 'Traceback: something odd' >&2; exit 3")
    with pytest.raises(ssh.RemoteError, match=r"payload failed to start on local \(exit 3\): "
                       "Traceback: something odd"):
        session_mod._handshake(channel, target, payload)
    target, channel = local(shell="exit 5")
    with pytest.raises(ssh.RemoteError, match=r"\(exit 5\): no output"):
        session_mod._handshake(channel, target, payload)


def test_unexpected_bootstrap_output(local, payload):
    target, channel = local(shell="printf 'FLEET-NEEDLESS'")
    with pytest.raises(ssh.RemoteError, match="unexpected bootstrap output from 127.0.0.1"):
        session_mod._handshake(channel, target, payload)


def test_become_password_is_answered(local, payload):
    command = payload.command(sys.executable, become=True, become_password=True)
    session = None
    target, channel = local(shell=command, become=True, become_password="s3cret")
    hello = session_mod._handshake(channel, target, payload)
    assert hello["ev"] == "hello" and hello["cache"] == "uploaded"
    session = Session(target, ChannelLink(FakeTransport(), channel), hello)
    assert session.call("ping", timeout=WAIT)["ping"] == "pong"
    session.close()


def test_wrong_become_password_is_refused(local, payload):
    command = payload.command(sys.executable, become=True, become_password=True)
    target, channel = local(shell=command, become=True, become_password="wrong")
    with pytest.raises(ssh.RemoteError, match="become failed on local: sudo refused the become "
                       "password"):
        session_mod._handshake(channel, target, payload)


def test_missing_python_behind_a_sudo_password_is_named(local, payload):
    command = payload.command("/nonexistent/python3", become=True, become_password=True)
    target, channel = local(shell=command, become=True, become_password="s3cret",
                            python="/nonexistent/python3")
    with pytest.raises(ssh.RemoteError, match="python not found on local"):
        session_mod._handshake(channel, target, payload)


class _SlicingChannel:
    """Accepts at most ``step`` bytes per send, like a channel with a small window; then
    answers 0, as paramiko does once the channel is closing."""

    def __init__(self, step, limit):
        self.step, self.limit, self.got = step, limit, bytearray()

    def send(self, data):
        taken = bytes(data[:self.step]) if len(self.got) < self.limit else b""
        self.got += taken
        return len(taken)


def _bare_session(channel):
    session = Session.__new__(Session)
    session.link = channel
    session._send_lock = threading.Lock()
    session.target = ssh.Target(name="h", host="h")
    return session


def test_send_hands_over_every_byte_in_slices():
    frame = os.urandom(200_000)
    channel = _SlicingChannel(5000, len(frame))
    _bare_session(channel)._send(frame)
    assert bytes(channel.got) == frame


def test_send_on_a_closing_channel_is_a_lost_connection():
    channel = _SlicingChannel(5000, 10_000)
    with pytest.raises(ssh.TransportError, match="connection to h lost"):
        _bare_session(channel)._send(os.urandom(50_000))


def test_a_data_frame_goes_out_as_header_then_body_unjoined():
    session = _bare_session(_SlicingChannel(7000, 10 ** 7))
    data = os.urandom(protocol.MAX_BODY + 12345)
    Request(session, 5).send_data(memoryview(data))
    got = bytes(session.link.got)
    first = protocol.MAX_BODY + protocol.HEADER.size
    assert protocol.read_frame(io.BytesIO(got[:first]).read) == (
        protocol.DATA, 5, data[:protocol.MAX_BODY])
    assert protocol.read_frame(io.BytesIO(got[first:]).read) == (
        protocol.DATA, 5, data[protocol.MAX_BODY:])

"""Unit tests for agent_payload.serve: the serve loop in-process, over two os.pipe()s."""

import os
import queue
import sys
import threading
import types

import pytest

from agent_payload import protocol, serve
from agent_payload.protocol import DATA, EOF, MSG

WAIT = 5.0  # seconds; only reached when something is broken
INFO = {"version": "test", "cache": "cached"}


class PipeWriter:
    """The server's output pipe; writes after close() are dropped, so a module thread
    finishing during teardown cannot fail on a closed file."""

    def __init__(self, fd):
        self._fd = fd
        self._lock = threading.Lock()

    def write(self, data):
        with self._lock:
            view = memoryview(data)
            while self._fd is not None and view:
                view = view[os.write(self._fd, view):]

    def flush(self):
        pass

    def close(self):
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


class Harness:
    """A Server reading requests from one pipe and writing events to another.

    A thread runs serve(); another collects the frames it writes, so every wait in a
    test has a timeout instead of a hang.
    """

    def __init__(self):
        req_r, self._req_w = os.pipe()
        ev_r, ev_w = os.pipe()
        self._server_in = os.fdopen(req_r, "rb", buffering=0)
        self._server_out = PipeWriter(ev_w)
        self._events_in = os.fdopen(ev_r, "rb", buffering=0)
        self.server = serve.Server(self._server_in.read, self._server_out, dict(INFO))
        self.error = None
        self.frames = queue.Queue()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.collector = threading.Thread(target=self._collect, daemon=True)
        self.thread.start()
        self.collector.start()

    def _serve(self):
        try:
            self.server.serve()
        except BaseException as exc:  # recorded, so a test can assert on it
            self.error = exc

    def _collect(self):
        while True:
            frame = protocol.read_frame(self._events_in.read)
            self.frames.put(frame)
            if frame is None:
                return

    def send(self, frame):
        os.write(self._req_w, frame)

    def call(self, req_id, module, params=None, **flags):
        self.send(protocol.encode_msg(req_id, dict(op="call", module=module,
                                                   params=params or {}, **flags)))

    def next(self, timeout=WAIT):
        """The next frame as (kind, id, decoded msg or bytes)."""
        frame = self.frames.get(timeout=timeout)
        assert frame is not None, "the server closed its output"
        kind, req_id, body = frame
        return kind, req_id, protocol.decode_msg(body) if kind == MSG else body

    def next_msg(self, timeout=WAIT):
        kind, req_id, value = self.next(timeout)
        assert kind == MSG, (kind, req_id, value)
        return req_id, value

    def close_requests(self):
        if self._req_w is not None:
            os.close(self._req_w)
            self._req_w = None

    def stop(self):
        self.close_requests()
        self.thread.join(WAIT)
        self._server_out.close()
        self.collector.join(WAIT)
        self._server_in.close()
        self._events_in.close()


@pytest.fixture
def harness():
    h = Harness()
    kind, req_id, hello = h.next()
    assert (kind, req_id, hello["ev"]) == (MSG, 0, "hello")
    yield h
    h.stop()
    assert not h.thread.is_alive()


GATE = {}


def _echo_run(params, ctx):
    """Echo the input stream back in upper case, then report the byte count."""
    total = 0
    ctx.progress(stage="reading")
    while True:
        chunk = ctx.read_data(timeout=WAIT)
        if not chunk:
            break
        total += len(chunk)
        ctx.send_data(chunk.upper())
    ctx.send_eof()
    return {"changed": True, "bytes": total, "check": ctx.check_mode, "diff": ctx.diff_mode}


def _wait_run(params, ctx):
    """Block until cancelled (or a barrier of peers is reached), like a log follow."""
    if params["barrier"]:
        GATE["barrier"].wait(WAIT)
        return {"tag": params["tag"], "thread": threading.get_ident()}
    ctx.progress(stage="waiting")
    ctx.cancel_event.wait(WAIT)
    ctx.check_cancelled()
    return {"msg": "not cancelled"}


@pytest.fixture
def fake_modules(monkeypatch):
    """Two extra payload modules: fake_echo (streams) and fake_wait (cancel, concurrency)."""
    echo = types.ModuleType("agent_payload.modules.fake_echo")
    echo.ARGUMENT_SPEC = {}
    echo.run = _echo_run
    wait = types.ModuleType("agent_payload.modules.fake_wait")
    wait.ARGUMENT_SPEC = {"barrier": {"type": "bool", "default": False},
                          "tag": {"type": "str"}}
    wait.run = _wait_run
    monkeypatch.setitem(sys.modules, echo.__name__, echo)
    monkeypatch.setitem(sys.modules, wait.__name__, wait)
    monkeypatch.setattr(serve, "MODULE_NAMES", serve.MODULE_NAMES + ("fake_echo", "fake_wait"))


@pytest.fixture(autouse=True)
def slow_heartbeat(monkeypatch):
    """Heartbeats would interleave with the frames these tests read one by one."""
    monkeypatch.setattr(serve, "HEARTBEAT_SECONDS", 60.0)


def test_heartbeat_only_while_a_request_runs(monkeypatch, fake_modules):
    monkeypatch.setattr(serve, "HEARTBEAT_SECONDS", 0.05)
    h = Harness()
    try:
        h.next()  # hello
        with pytest.raises(queue.Empty):
            h.next(timeout=0.3)  # idle: silent
        h.call(1, "fake_wait", {"tag": "t"})
        seen = sorted([h.next_msg(), h.next_msg()], key=lambda m: m[0])  # either order
        assert seen == [(0, {"ev": "beat"}), (1, {"ev": "progress", "stage": "waiting"})]
        h.send(protocol.encode_msg(1, {"op": "cancel"}))
    finally:
        h.stop()


def test_hello_is_the_first_frame_and_carries_the_info():
    h = Harness()
    try:
        assert h.next() == (MSG, 0, dict(INFO, ev="hello", heartbeat=serve.HEARTBEAT_SECONDS))
    finally:
        h.stop()


def test_ping_call_returns_its_result(harness):
    harness.call(1, "ping")
    assert harness.next_msg() == (1, {"ev": "result", "result": {
        "changed": False, "failed": False, "ping": "pong"}})
    harness.call(2, "ping", {"data": "hi"})
    req_id, msg = harness.next_msg()
    assert req_id == 2 and msg["result"]["ping"] == "hi"


def test_facts_call_through_the_server(harness):
    harness.call(3, "facts")
    req_id, msg = harness.next_msg()
    facts = msg["result"]["ansible_facts"]
    assert req_id == 3 and msg["result"]["failed"] is False
    assert facts["fleet_payload"] == {"version": "test", "cache": "cached"}


@pytest.mark.parametrize("module", ["nope", "protocol", "serve", "../ping", None])
def test_unknown_module_is_a_failed_result(harness, module):
    harness.send(protocol.encode_msg(4, {"op": "call", "module": module}))
    req_id, msg = harness.next_msg()
    assert req_id == 4 and msg["ev"] == "result"
    assert msg["result"] == {"failed": True, "changed": False,
                             "msg": f"unknown module {module!r}"}


@pytest.mark.parametrize("params, message", [
    ({"bogus": 1}, "unsupported parameter 'bogus' (supported: data)"),
    ({"data": ["a"]}, "data: expected a string, got list"),
    ([1, 2], "arguments: expected a mapping of options"),
])
def test_bad_params_are_a_failed_result_with_the_message(harness, params, message):
    harness.send(protocol.encode_msg(5, {"op": "call", "module": "ping", "params": params}))
    req_id, msg = harness.next_msg()
    assert req_id == 5 and msg["ev"] == "result"
    assert msg["result"]["failed"] is True and msg["result"]["changed"] is False
    assert message in msg["result"]["msg"]


def test_module_exception_is_an_error_event_and_the_session_goes_on(harness):
    harness.call(6, "ping", {"data": "crash"})
    req_id, msg = harness.next_msg()
    assert req_id == 6 and msg["ev"] == "error"
    assert msg["msg"] == "RuntimeError: boom"
    assert "Traceback" in msg["traceback"]
    harness.call(7, "ping")
    assert harness.next_msg()[1]["result"]["ping"] == "pong"


def test_unknown_op_is_an_error_event(harness):
    harness.send(protocol.encode_msg(8, {"op": "dance"}))
    assert harness.next_msg() == (8, {"ev": "error", "msg": "unknown op 'dance'"})


def test_cancel_or_data_for_an_unknown_request_is_ignored(harness):
    harness.send(protocol.encode_msg(99, {"op": "cancel"}))
    harness.send(protocol.encode(DATA, 98, b"stray"))
    harness.send(protocol.encode(EOF, 98))
    harness.send(protocol.encode_msg(97, {"op": "resize", "rows": 1, "cols": 2}))
    harness.call(9, "ping")
    assert harness.next_msg()[0] == 9


def test_several_requests_in_flight_are_answered_by_id(harness, fake_modules):
    ids = [11, 12, 13]
    GATE["barrier"] = threading.Barrier(len(ids))  # passes only if all run at once
    for req_id in ids:
        harness.call(req_id, "fake_wait", {"barrier": True, "tag": f"t{req_id}"})
    answers = dict(harness.next_msg() for _ in ids)
    assert sorted(answers) == ids
    for req_id, msg in answers.items():
        assert msg["ev"] == "result", msg
        assert msg["result"]["tag"] == f"t{req_id}"
    assert len({msg["result"]["thread"] for msg in answers.values()}) == len(ids)


def test_cancel_stops_a_running_request(harness, fake_modules):
    harness.call(21, "fake_wait")
    assert harness.next_msg() == (21, {"ev": "progress", "stage": "waiting"})
    harness.call(22, "ping")  # others keep being served meanwhile
    assert harness.next_msg()[0] == 22
    harness.send(protocol.encode_msg(21, {"op": "cancel"}))
    assert harness.next_msg() == (21, {"ev": "result", "result": {
        "failed": True, "changed": False, "msg": "cancelled"}})


def test_input_stream_reaches_the_module_and_output_comes_back(harness, fake_modules):
    harness.call(31, "fake_echo", check=True)
    assert harness.next_msg() == (31, {"ev": "progress", "stage": "reading"})
    for chunk in (b"hello ", b"\x00binary\xff", b"world"):
        harness.send(protocol.encode(DATA, 31, chunk))
    harness.send(protocol.encode(EOF, 31))
    got = [harness.next() for _ in range(5)]
    assert got[:4] == [(DATA, 31, b"HELLO "), (DATA, 31, b"\x00BINARY\xff"),
                       (DATA, 31, b"WORLD"), (EOF, 31, b"")]
    assert got[4] == (MSG, 31, {"ev": "result", "result": {
        "changed": True, "failed": False, "bytes": 19, "check": True, "diff": False}})


def test_two_streams_at_once_stay_apart(harness, fake_modules):
    harness.call(41, "fake_echo", diff=True)
    harness.call(42, "fake_echo")
    progress = {harness.next_msg()[0] for _ in range(2)}
    assert progress == {41, 42}
    harness.send(protocol.encode(DATA, 42, b"b"))
    harness.send(protocol.encode(DATA, 41, b"a"))
    harness.send(protocol.encode(EOF, 41))
    harness.send(protocol.encode(EOF, 42))
    frames = [harness.next() for _ in range(6)]
    by_id = {41: [], 42: []}
    for kind, req_id, value in frames:
        by_id[req_id].append((kind, value))
    assert by_id[41][:2] == [(DATA, b"A"), (EOF, b"")]
    assert by_id[42][:2] == [(DATA, b"B"), (EOF, b"")]
    assert by_id[41][2][1]["result"]["diff"] is True
    assert by_id[42][2][1]["result"]["bytes"] == 1


def test_closing_the_request_pipe_ends_serve_and_cancels_requests(fake_modules):
    h = Harness()
    try:
        h.next()  # hello
        h.call(51, "fake_wait")
        h.call(52, "fake_echo")
        assert {h.next_msg()[0] for _ in range(2)} == {51, 52}  # both running
        h.close_requests()
        h.thread.join(WAIT)
        assert not h.thread.is_alive() and h.error is None
        answers = {}
        for _ in range(3):
            kind, req_id, value = h.next()
            answers.setdefault(req_id, []).append((kind, value))
        assert answers[51] == [(MSG, {"ev": "result", "result": {
            "failed": True, "changed": False, "msg": "cancelled"}})]
        assert answers[52][0] == (EOF, b"")  # its input stream ended
        assert answers[52][1][1]["result"]["bytes"] == 0
    finally:
        h.stop()


def test_truncated_frame_is_reported_and_ends_serve():
    h = Harness()
    try:
        h.next()
        h.send(protocol.encode(DATA, 1, b"abc")[:5])
        h.close_requests()
        assert h.next_msg() == (0, {"ev": "error", "msg": "stream ended inside a frame"})
        h.thread.join(WAIT)
        assert not h.thread.is_alive() and h.error is None
    finally:
        h.stop()


def test_bad_message_body_does_not_crash_serve():
    h = Harness()
    try:
        h.next()
        h.send(protocol.encode(MSG, 1, b"[1, 2]"))
        h.close_requests()
        h.thread.join(WAIT)
        assert h.error is None
        assert h.next_msg()[1]["ev"] == "error"
    finally:
        h.stop()


class RecordingServer:
    info = {"version": "v", "cache": "uploaded"}

    def __init__(self):
        self.sent = []

    def send(self, kind, req_id, body=b""):
        self.sent.append((kind, req_id, body))

    def send_msg(self, req_id, obj):
        self.sent.append((MSG, req_id, obj))


def test_context_splits_large_output_into_frames():
    server = RecordingServer()
    ctx = serve.Context(server, 3)
    data = b"x" * protocol.MAX_BODY + b"tail"
    ctx.send_data(data)
    assert [len(body) for _, _, body in server.sent] == [protocol.MAX_BODY, 4]
    assert b"".join(body for _, _, body in server.sent) == data
    ctx.send_data(b"")
    assert len(server.sent) == 2  # nothing to send, no empty DATA frame


def test_context_helpers():
    server = RecordingServer()
    ctx = serve.Context(server, 4, check_mode=True)
    assert ctx.payload_info == {"version": "v", "cache": "uploaded"}
    ctx.progress(pct=50)
    assert server.sent == [(MSG, 4, {"pct": 50, "ev": "progress"})]
    with pytest.raises(serve.InputTimeout):
        ctx.read_data(timeout=0.01)
    ctx.feed(b"abc")
    assert ctx.read_data(timeout=1) == b"abc"
    assert not ctx.cancelled()
    ctx.check_cancelled()
    ctx.cancel_event.set()
    assert ctx.cancelled()
    with pytest.raises(serve.Cancelled):
        ctx.check_cancelled()


def test_call_module_directly():
    ctx = serve.Context(RecordingServer(), 1)
    assert serve.call_module("ping", {}, ctx) == {"changed": False, "failed": False,
                                                  "ping": "pong"}
    assert serve.call_module("nope", {}, ctx)["msg"] == "unknown module 'nope'"
    result = serve.call_module("ping", {"extra": 1}, ctx)
    assert result["failed"] is True and "unsupported parameter 'extra'" in result["msg"]


def test_common_modules_keep_heavy_imports_out_of_a_payload_start():
    """Every host pays for the payload's imports on every connection: the modules most
    tasks use must not pull in re, datetime, tempfile, subprocess or ctypes."""
    import subprocess
    import sys
    from pathlib import Path

    root = str(Path(__file__).resolve().parents[2])
    code = (f"import sys; sys.path.insert(0, {root!r})\n"
            "import agent_payload.serve, agent_payload.modules.command\n"
            "import agent_payload.modules.copy, agent_payload.modules.file\n"
            "print(' '.join(sorted(sys.modules)))")
    loaded = set(subprocess.run([sys.executable, "-I", "-S", "-c", code], check=True,
                                capture_output=True, text=True).stdout.split())
    assert loaded.isdisjoint({"re", "datetime", "shlex", "tempfile", "subprocess", "ctypes",
                              "enum", "shutil"})


def test_widen_pipe_grows_a_pipe_and_leaves_other_files_alone(tmp_path):
    import fcntl

    read_end, write_end = os.pipe()
    try:
        serve._widen_pipe(read_end)
        assert fcntl.fcntl(read_end, 1032) == serve.PIPE_SIZE  # F_GETPIPE_SZ
    finally:
        os.close(read_end)
        os.close(write_end)
    with open(tmp_path / "plain", "wb") as handle:
        serve._widen_pipe(handle.fileno())  # EBADF/EINVAL from fcntl: ignored


def test_forget_drops_what_the_process_learned_about_its_host(harness, monkeypatch):
    from agent_payload import tools
    from agent_payload.runtime import firewall

    monkeypatch.setattr(firewall, "_known", {"generation": None, "recheck": False})
    tools.which("sh")
    harness.send(protocol.encode_msg(0, {"op": "forget"}))
    assert harness.next_msg() == (0, {"ev": "forgot"})  # the keeper's sign of life
    harness.call(1, "ping")
    assert harness.next_msg() == (1, {"ev": "result", "result": {
        "changed": False, "failed": False, "ping": "pong"}})
    # Tools are looked up again; fleet's chains are checked again before the next rule.
    assert "sh" not in tools._found and firewall._known["recheck"] is True


def test_a_request_is_forgotten_before_its_answer_goes_out(harness):
    """Once the controller has the answer it may use the id again (a kept session's next
    command numbers from 1): the old request must not linger under it."""
    harness.call(1, "ping")
    assert harness.next_msg()[0] == 1
    assert harness.server._requests == {}

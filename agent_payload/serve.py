"""Serve mode: the payload's main loop on a host.

The controller starts the payload once per SSH connection; from then on every task is a
request frame on the same channel (see protocol.py). Each request runs in its own
thread so several can be in flight; a cancel message sets the request's cancel event,
which long-running modules poll. Stray output from modules or child processes cannot
corrupt the channel: the protocol keeps private copies of fds 0 and 1, fd 1 becomes a
copy of stderr and fd 0 reads /dev/null.
"""

import os
import sys
import time

from agent_payload import argspec, protocol, threads
from agent_payload.threads import InputTimeout  # noqa: F401 - what read_data raises

# While a request runs, the host says it is alive this often, so the controller can tell
# a long, quiet command from a host that dropped off the network.
HEARTBEAT_SECONDS = 1.0
# How long requests get to wind down after the controller went away.
CANCEL_GRACE_SECONDS = 5.0

# Modules whose forget() drops what this process learned about its host (see "forget").
RUN_STATE = ("agent_payload.tools", "agent_payload.runtime.firewall")
# Modules the controller may call; nothing else under agent_payload is importable by name.
MODULE_NAMES = ("facts", "ping", "command", "shell", "file", "copy", "image", "image_info",
                "container_run", "container", "container_info", "container_exec", "volume",
                "volume_info", "network", "network_info", "teardown")


class Cancelled(Exception):
    """Raised by Context.check_cancelled when the controller cancelled the request."""


class Context:
    """What a module's run() gets besides its params: progress, streams, cancellation."""

    def __init__(self, server, req_id, check_mode=False, diff_mode=False):
        self._server = server
        self.req_id = req_id
        self.check_mode = check_mode
        self.diff_mode = diff_mode
        self.cancel_event = threads.Event()
        self._input = threads.Inbox()
        self.extra = {}

    @property
    def payload_info(self):
        """Facts about the payload itself (version, cache state)."""
        return self._server.info

    def progress(self, **fields):
        """Send a progress event to the controller."""
        fields["ev"] = "progress"
        self._server.send_msg(self.req_id, fields)

    def send_data(self, data):
        """Send bytes on this request's output stream."""
        view = memoryview(data)
        for start in range(0, len(view), protocol.MAX_BODY):
            chunk = bytes(view[start:start + protocol.MAX_BODY])
            self._server.send(protocol.DATA, self.req_id, chunk)

    def send_eof(self):
        """Mark the end of this request's output stream."""
        self._server.send(protocol.EOF, self.req_id)

    def read_data(self, timeout=None):
        """Return the next chunk of this request's input stream, b'' at its end.

        Raises InputTimeout when ``timeout`` passes first.
        """
        return self._input.get(timeout=timeout)

    def cancelled(self):
        """True once the controller cancelled this request."""
        return self.cancel_event.is_set()

    def check_cancelled(self):
        """Raise Cancelled when the controller cancelled this request."""
        if self.cancel_event.is_set():
            raise Cancelled()

    def feed(self, data):
        self._input.put(data)


class Server:
    """Reads frames, dispatches requests to module threads, writes events."""

    def __init__(self, reader, writer, info):
        self._read = reader
        self._writer = writer
        self._write_lock = threads.allocate_lock()
        self._requests = {}
        self._requests_lock = threads.allocate_lock()
        self.info = info

    def send(self, kind, req_id, body=b""):
        frame = protocol.encode(kind, req_id, body)
        with self._write_lock:
            self._writer.write(frame)
            self._writer.flush()

    def send_msg(self, req_id, obj):
        frame = protocol.encode_msg(req_id, obj)
        with self._write_lock:
            self._writer.write(frame)
            self._writer.flush()

    def _heartbeat(self, stop):
        while not stop.wait(HEARTBEAT_SECONDS):
            with self._requests_lock:
                busy = bool(self._requests)
            if busy:
                try:
                    self.send_msg(0, {"ev": "beat"})
                except OSError:
                    return

    def serve(self):
        """Answer requests until the controller closes the channel."""
        self.send_msg(0, dict(self.info, ev="hello", heartbeat=HEARTBEAT_SECONDS))
        stop = threads.Event()
        threads.start(self._heartbeat, stop)
        try:
            self._serve_frames()
        finally:
            stop.set()

    def _serve_frames(self):
        while True:
            try:
                frame = protocol.read_frame(self._read)
            except protocol.ProtocolError as exc:
                self.send_msg(0, {"ev": "error", "msg": str(exc)})
                break
            if frame is None:
                break
            kind, req_id, body = frame
            if kind == protocol.MSG:
                try:
                    message = protocol.decode_msg(body)
                except protocol.ProtocolError as exc:
                    self.send_msg(req_id, {"ev": "error", "msg": str(exc)})
                    continue
                self._on_msg(req_id, message)
            else:
                ctx = self._get(req_id)
                if ctx is not None:
                    ctx.feed(body if kind == protocol.DATA else b"")
        # The controller is gone: tell running requests to stop, and give them a moment
        # to do so (a command kills its process group) before the process exits.
        with self._requests_lock:
            for ctx in self._requests.values():
                ctx.cancel_event.set()
                ctx.feed(b"")
        deadline = time.monotonic() + CANCEL_GRACE_SECONDS
        while time.monotonic() < deadline:
            with self._requests_lock:
                if not self._requests:
                    break
            time.sleep(0.01)

    def _get(self, req_id):
        with self._requests_lock:
            return self._requests.get(req_id)

    def _on_msg(self, req_id, msg):
        op = msg.get("op")
        if op == "call":
            ctx = Context(self, req_id, bool(msg.get("check")), bool(msg.get("diff")))
            with self._requests_lock:
                self._requests[req_id] = ctx
            threads.start(self._run, ctx, msg)
        elif op == "cancel":
            ctx = self._get(req_id)
            if ctx is not None:
                ctx.cancel_event.set()
                ctx.feed(b"")
        elif op == "forget":
            # The next command on a session kept between commands (the controller's
            # ControlPersist): the host may have changed since, so learn it anew.
            for name in RUN_STATE:
                module = sys.modules.get(name)
                if module is not None:
                    module.forget()
            self.send_msg(0, {"ev": "forgot"})  # the keeper's sign that this process lives
        elif op == "resize":
            ctx = self._get(req_id)
            if ctx is not None:
                ctx.extra["resize"] = (msg.get("rows"), msg.get("cols"))
        else:
            self.send_msg(req_id, {"ev": "error", "msg": f"unknown op {op!r}"})

    def _run(self, ctx, msg):
        answer = None
        try:
            answer = {"ev": "result",
                      "result": call_module(msg.get("module"), msg.get("params") or {}, ctx)}
        except Cancelled:
            answer = {"ev": "result",
                      "result": {"failed": True, "changed": False, "msg": "cancelled"}}
        except Exception as exc:  # a module bug must not take the session down
            import traceback
            answer = {"ev": "error", "msg": f"{type(exc).__name__}: {exc}",
                      "traceback": traceback.format_exc()}
        finally:
            # Done before the answer goes out: once the controller has it, the id may be
            # used again (the next command on a kept session numbers from 1).
            with self._requests_lock:
                self._requests.pop(ctx.req_id, None)
            if answer is not None:
                self.send_msg(ctx.req_id, answer)


def call_module(name, params, ctx):
    """Validate params against the module's ARGUMENT_SPEC and run it."""
    if name not in MODULE_NAMES:
        return {"failed": True, "changed": False, "msg": f"unknown module {name!r}"}
    module = _import("agent_payload.modules." + name)
    try:
        checked = argspec.validate(module.ARGUMENT_SPEC, params)
    except argspec.ArgumentError as exc:
        return {"failed": True, "changed": False, "msg": str(exc)}
    result = module.run(checked, ctx)
    result.setdefault("changed", False)
    result.setdefault("failed", False)
    return result


def _import(name):
    """importlib.import_module without importing importlib's extras."""
    __import__(name)
    return sys.modules[name]


F_SETPIPE_SZ = 1031  # fcntl.F_SETPIPE_SZ, which Python has only from 3.10
PIPE_SIZE = 1024 * 1024


def _widen_pipe(fd):
    """Let sshd hand over a whole content chunk at once: with the default 64 KiB pipe it
    buffers the rest itself, growing (copying, faulting in) its buffers on every new
    connection. Not a pipe, or not allowed: nothing changes."""
    try:
        import fcntl

        fcntl.fcntl(fd, F_SETPIPE_SZ, PIPE_SIZE)
    except (ImportError, OSError):
        pass


def main(cache_state="cached", version=""):
    """Entry point used by the bootstrap: serve on the process's stdin/stdout."""
    _widen_pipe(0)
    _widen_pipe(1)
    proto_in = os.fdopen(os.dup(0), "rb", buffering=0)
    proto_out = os.fdopen(os.dup(1), "wb", buffering=0)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    info = {
        "version": version,
        "cache": cache_state,
        "pid": os.getpid(),
        "python": "{}.{}.{}".format(*sys.version_info[:3]),
        "executable": sys.executable,
        "uid": os.geteuid(),
    }
    Server(proto_in.read, proto_out, info).serve()
    # The controller is gone and the requests are done: skip the interpreter's teardown
    # (a millisecond or two of CPU on every host, on every run).
    sys.stderr.flush()
    os._exit(0)

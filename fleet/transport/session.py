"""A persistent payload session on one host: one SSH channel, many requests.

``Session.open`` connects, starts the payload (uploading it only when the host lacks
this version) and waits for its hello, or leases a session the keeper holds (see
persist.py). ``start`` sends a request and returns a
``Request`` handle (events, data stream, cancel); ``call`` is the common case of
waiting for the result. A reader thread routes frames to their request by id.
"""

import itertools
import json
import queue
import threading
import time

from agent_payload import protocol
from fleet.transport import ssh
from fleet.transport.payload import NEED_MARKER, SUDO_PROMPT, current_payload

_DONE = object()
# What one Channel.send is offered: OpenSSH's largest packet on a session channel.
SEND_SLICE = 32 * 1024


class RequestError(Exception):
    """The payload reported an error for a request (a module crash, a protocol fault)."""


class Request:
    """One request in flight: its events, its data stream, its result."""

    def __init__(self, session, req_id):
        self.session = session
        self.id = req_id
        self._events = queue.Queue()
        self.result = None

    def _put(self, item):
        self._events.put(item)

    def events(self, timeout=None):
        """Yield ("progress", dict) / ("data", bytes) / ("eof", None) until the result.

        The final item is ("result", dict). Raises RequestError for a payload error and
        ssh.TransportError when the connection drops.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            wait = 1.0 if deadline is None else max(0.0, min(1.0, deadline - time.monotonic()))
            try:
                kind, value = self._events.get(timeout=wait)
            except queue.Empty:
                if deadline is not None and time.monotonic() >= deadline:
                    self.cancel()
                    raise TimeoutError(f"request {self.id} timed out after {timeout:g}s") from None
                self.session.check_alive()
                continue
            if kind == "error":
                raise value
            if kind == "result":
                self.result = value
            yield kind, value
            if kind == "result":
                return

    def wait(self, on_progress=None, on_data=None, timeout=None):
        """Consume events until the result and return it."""
        for kind, value in self.events(timeout):
            if kind == "progress" and on_progress:
                on_progress(value)
            elif kind == "data" and on_data:
                on_data(value)
        return self.result

    def send_data(self, data):
        """Send bytes on this request's input stream."""
        view = memoryview(data)
        for start in range(0, len(view), protocol.MAX_BODY):
            body = view[start:start + protocol.MAX_BODY]
            self.session._send(protocol.header(protocol.DATA, self.id, len(body)), body)

    def send_eof(self):
        """End this request's input stream."""
        self.session._send(protocol.encode(protocol.EOF, self.id))

    def resize(self, rows, cols):
        """Tell the payload the terminal behind this request is now rows x cols."""
        self.session._send(protocol.encode_msg(self.id, {"op": "resize", "rows": rows,
                                                         "cols": cols}))

    def cancel(self):
        """Ask the payload to stop this request (its result then says cancelled)."""
        try:
            self.session._send(protocol.encode_msg(self.id, {"op": "cancel"}))
        except ssh.TransportError:
            pass


class Session:
    """A connected payload on one host."""

    def __init__(self, target, link, hello):
        self.target = target
        self.link = link
        self.hello = hello
        self._send_lock = threading.Lock()
        self._ids = itertools.count(1)
        self._requests = {}
        self._lock = threading.Lock()
        self._closed = None
        self.last_seen = time.monotonic()
        # The payload beats every hello["heartbeat"] seconds while busy; silence for
        # longer than the connect timeout means the host is gone.
        self.dead_after = max(target.connect_timeout, 3 * float(hello.get("heartbeat") or 1.0))
        self._reader = threading.Thread(target=self._read_loop, daemon=True,
                                        name="fleet-session-" + target.name)
        self._reader.start()

    @property
    def cache_state(self):
        """'cached' or 'uploaded': whether this connection had to ship the payload;
        'kept': a session kept from an earlier command."""
        return "kept" if self.hello.get("kept") else self.hello.get("cache")

    @classmethod
    def open(cls, target, payload=None):
        """Connect to ``target`` and start the payload; raise ssh.TransportError on failure.

        A target with ``persist`` set gets its session from the keeper (a payload kept
        from an earlier command, else a new one the keeper holds on to afterwards); a
        direct connection when no keeper can be had."""
        payload = payload or current_payload()
        if target.persist and not target.become_password:
            from fleet.transport import persist

            kept = persist.lease(target, payload)
            if kept is not None:
                return cls(target, *kept)
        transport, channel, hello = start_payload(target, payload)
        return cls(target, ChannelLink(transport, channel), hello)

    def start(self, module, params=None, check=False, diff=False):
        """Send a request; return its Request handle at once."""
        req_id = next(self._ids)
        request = Request(self, req_id)
        with self._lock:
            if self._closed is not None:
                raise self._closed
            self._requests[req_id] = request
        # An idle session says nothing: silence is only counted from here.
        self.last_seen = max(self.last_seen, time.monotonic())
        message = {"op": "call", "module": module, "params": params or {}}
        if check:
            message["check"] = True
        if diff:
            message["diff"] = True
        self._send(protocol.encode_msg(req_id, message))
        return request

    def call(self, module, params=None, check=False, diff=False, on_progress=None,
             timeout=None):
        """Run a module and return its result dict."""
        return self.start(module, params, check, diff).wait(on_progress, timeout=timeout)

    def close(self):
        """End this command's use of the session. A kept session with nothing in flight
        goes back to its keeper; otherwise the payload sees its channel close, cancels
        what still runs and exits."""
        with self._lock:
            idle = self._closed is None and not self._requests
            self._closed = self._closed or ssh.TransportError(
                f"session with {self.target.host} closed")
        if idle:  # the release must not land inside a frame another thread is sending
            with self._send_lock:
                self.link.close(True)
        else:
            self.link.close(False)

    def check_alive(self):
        """Raise TransportError when the host has been silent past ``dead_after``."""
        silent = time.monotonic() - self.last_seen
        if silent > self.dead_after:
            error = ssh.TransportError(f"unreachable: {self.target.host} stopped answering "
                                       f"({silent:.0f}s without a word)")
            with self._lock:
                self._closed = self._closed or error
            self.link.close(False)
            raise error

    def _send(self, *parts):
        """Send ``parts`` (a frame, or a header and its body) back to back.

        Channel.sendall re-slices the whole remaining bytes after every packet, which for
        a 1 MiB frame copies about 16 MiB; a view copies each packet's bytes once. A DATA
        body is sent from the caller's buffer, never joined to its header first."""
        with self._send_lock:
            try:
                send_parts(self.link.send, parts)
            except (OSError, EOFError) as exc:
                raise ssh.TransportError(f"connection to {self.target.host} lost: {exc}") from None

    def _read_loop(self):
        error = None
        try:
            while True:
                frame = protocol.read_frame(self.link.recv)
                if frame is None:
                    break
                self._dispatch(*frame)
        except (protocol.ProtocolError, OSError, EOFError) as exc:
            error = exc
        reason = f"payload on {self.target.host} exited"
        if error is not None:
            reason = f"connection to {self.target.host} lost: {error}"
        else:
            status = self.link.exit_status()
            if status is not None:
                reason += f" with status {status}"
        closed = ssh.TransportError(reason)
        with self._lock:
            self._closed = self._closed or closed
            pending = list(self._requests.values())
            self._requests.clear()
        for request in pending:
            request._put(("error", closed))

    def _dispatch(self, kind, req_id, body):
        self.last_seen = time.monotonic()
        if kind == protocol.MSG:
            message = protocol.decode_msg(body)
            event = message.get("ev")
            if req_id == 0:
                return  # session-level notices (a late hello, a protocol complaint)
            with self._lock:
                request = self._requests.get(req_id)
                if request is not None and event in ("result", "error"):
                    del self._requests[req_id]
            if request is None:
                return
            if event == "result":
                request._put(("result", message.get("result") or {}))
            elif event == "error":
                request._put(("error", RequestError(message.get("msg", "payload error"))))
            else:
                request._put(("progress", message))
            return
        with self._lock:
            request = self._requests.get(req_id)
        if request is not None:
            request._put(("data", body) if kind == protocol.DATA else ("eof", None))


def send_parts(send, parts):
    """Send each of ``parts`` whole with ``send`` (a channel's or socket's), SEND_SLICE
    bytes at a time, each slice copied once; OSError once the other side is closing."""
    for part in parts:
        view = memoryview(part)
        while view:
            sent = send(view[:SEND_SLICE].tobytes())
            if not sent:  # paramiko's answer once the channel is closing
                raise OSError("channel closed")
            view = view[sent:]


class ChannelLink:
    """The payload's channel on this process's own SSH connection."""

    def __init__(self, transport, channel):
        self.transport = transport
        self.channel = channel
        self.recv = channel.recv
        self.send = channel.send

    def exit_status(self):
        """The payload's exit status once the host sent it, else None."""
        if self.channel.exit_status_ready():
            return self.channel.recv_exit_status()
        return None

    def close(self, idle=False):
        try:
            self.channel.shutdown_write()
        except Exception:
            pass
        self.transport.close()


def start_payload(target, payload):
    """Connect to ``target``, start ``payload`` there and wait for its hello.

    Returns (transport, channel, hello); raises ssh.TransportError (RemoteError when the
    host took the connection but the payload did not start)."""
    transport = ssh.connect(target)
    try:
        channel = transport.open_session(timeout=target.connect_timeout)
        channel.exec_command(payload.command(target.python, target.become,
                                             target.become_user,
                                             bool(target.become_password)))
        # A host that accepts the connection but never starts the payload must not
        # hang the run: the handshake has a deadline, the session afterwards none.
        channel.settimeout(max(target.connect_timeout, 1.0) * 3)
        hello = _handshake(channel, target, payload)
        channel.settimeout(None)
    except ssh.TransportError:
        transport.close()
        raise
    except Exception as exc:
        transport.close()
        raise ssh.RemoteError(f"cannot start the payload on {target.host}: {exc}") from None
    return transport, channel, hello


def _handshake(channel, target, payload):
    """Answer the bootstrap (sudo password, payload upload) and return the hello message."""
    if target.become and target.become_password:
        early_stderr = _answer_sudo(channel, target)
    else:
        early_stderr = b""
    read = channel.recv
    head = protocol.read_exact(read, protocol.HEADER.size)
    if head is not None and head == NEED_MARKER[:protocol.HEADER.size]:
        rest = protocol.read_exact(read, len(NEED_MARKER) - protocol.HEADER.size)
        if head + (rest or b"") != NEED_MARKER:
            raise ssh.RemoteError(f"unexpected bootstrap output from {target.host}")
        channel.sendall(payload.upload_frame())
        head = protocol.read_exact(read, protocol.HEADER.size)
    if head is None:
        raise _startup_failure(channel, target, early_stderr)
    length, kind, _ = protocol.HEADER.unpack(head)
    body = protocol.read_exact(read, length) if length else b""
    if kind != protocol.MSG or body is None:
        raise ssh.RemoteError(f"unexpected bootstrap output from {target.host}")
    hello = json.loads(body)
    if hello.get("ev") != "hello":
        raise ssh.RemoteError("payload on {} did not say hello: {}".format(
            target.host, hello.get("msg", hello)))
    return hello


def _answer_sudo(channel, target):
    """Answer sudo's password prompt, if it shows one; raise RemoteError when sudo refuses.

    Returns what sudo wrote after its prompt, for the failure message should the payload
    not start."""
    prompt = SUDO_PROMPT.encode()
    seen = b""
    answered = False
    deadline = time.monotonic() + target.connect_timeout
    while time.monotonic() < deadline:
        if channel.recv_ready() or channel.exit_status_ready():
            # The payload (or its failure) speaks: sudo is past its prompt.
            return seen.rsplit(prompt, 1)[-1]
        if channel.recv_stderr_ready():
            seen += channel.recv_stderr(4096)
            if seen.count(prompt) > int(answered):
                if answered:  # asked again: the password was wrong
                    raise ssh.RemoteError(f"become failed on {target.name}: sudo refused "
                                          "the become password")
                channel.sendall(target.become_password.encode() + b"\n")
                answered = True
            continue
        time.sleep(0.002)
    raise ssh.RemoteError(f"become failed on {target.name}: sudo did not answer within "
                          f"{target.connect_timeout:g}s")


def _startup_failure(channel, target, early_stderr=b""):
    """Explain why the payload's channel ended before its hello, in one line."""
    status = channel.recv_exit_status()
    err = early_stderr
    while channel.recv_stderr_ready():
        err += channel.recv_stderr(65536)
    text = err.decode(errors="replace").strip()
    last = text.splitlines()[-1] if text else ""
    if status == 127 or (("not found" in last or "No such file" in last)
                         and target.python in last):
        return ssh.RemoteError(f"python not found on {target.name}: {target.python} "
                               "(set ansible_python_interpreter)")
    if "sudo" in text and ("password" in text or "not in the sudoers" in text):
        return ssh.RemoteError(f"become failed on {target.name}: {last}")
    return ssh.RemoteError("payload failed to start on {} (exit {}): {}".format(
        target.name, status, last or "no output"))

"""The session keeper: a background process that keeps payload sessions between commands.

One per user and payload version (its socket is named by the version's digest, so a
keeper only ever runs the payload it was built with). A command connects to its unix
socket and sends one MSG frame (id 0) saying what it wants:

- ``{"op": "open", "payload": DIGEST, "target": {...}}``: a session. The keeper answers
  the payload's hello (``"kept": true`` when the session was kept from an earlier
  command) or ``{"ev": "error", "kind": CLASS, "msg": ...}``, then relays frames both
  ways, whole frames only, until the command sends ``{"op": "release"}`` (the session
  is kept, ``persist`` seconds) or closes the socket without it (the session is closed).
- ``{"op": "list"}``: the sessions, answered as ``{"ev": "sessions", "sessions": [...]}``.
- ``{"op": "close"}``: close every idle session now and each busy one when its command
  is done, then exit.

A kept session hears ``{"op": "forget"}`` before its next command: what the payload
process learned about its host (fleet's firewall chains exist, where tools are) may
have changed since. The keeper exits LINGER seconds after its last session closed.
Only processes of the keeper's own user may connect (SO_PEERCRED).
"""

import gc
import os
import socket
import struct
import threading
import time

from agent_payload import protocol
from fleet.transport import ssh
from fleet.transport.payload import current_payload
from fleet.transport.session import send_parts, start_payload

LINGER = 5.0
TICK = 0.5
SMALL_FRAME = 64 * 1024
FORGET_WAIT = 3.0  # the longest a kept session gets to show it is alive
FIRST_FRAME_WAIT = 10.0
FORGET = {"op": "forget"}
# What a kept session is shared by: everything that decides where and as whom the
# payload runs (not the inventory name, the timeouts or how long it is kept).
KEY_FIELDS = ("host", "port", "user", "key_file", "agent", "identities", "python", "become",
              "become_user", "known_hosts")


def session_key(fields):
    """The kept-session key of a target's fields (lists, from JSON, as tuples)."""
    return tuple(tuple(value) if isinstance(value, list) else value
                 for value in (fields.get(name) for name in KEY_FIELDS))


class Kept:
    """One payload session the keeper holds, and the command using it, if any."""

    def __init__(self, key, target, transport, channel, hello, on_gone):
        self.key = key
        self.target = target
        self.transport = transport
        self.channel = channel
        self.hello = hello
        self.opened = time.monotonic()
        self.idle_since = None
        self.client = None
        self.busy = True  # a command has it (the keeper's lock guards this flag)
        self.alive = True
        self.forgot = threading.Event()  # the payload answered a FORGET
        self.on_gone = on_gone  # called once the payload's channel has ended
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        threading.Thread(target=self._from_payload, daemon=True,
                         name="fleet-keeper-" + target.host).start()

    def attach(self, client):
        with self._lock:
            self.client = client
            self.idle_since = None

    def detach(self):
        with self._lock:
            self.client = None
            self.idle_since = time.monotonic()

    def send(self, *parts):
        """Send a frame's parts to the payload; False when the channel is gone."""
        with self._send_lock:
            try:
                send_parts(self.channel.send, parts)
            except (OSError, EOFError):
                return False
        return True

    def close(self):
        """End the session: the payload sees its channel close and exits."""
        try:
            self.channel.shutdown_write()
        except Exception:
            pass
        self.transport.close()

    def _from_payload(self):
        """Relay the payload's frames, whole, to the command using the session (none
        while it is idle: a late heartbeat has nobody to go to)."""
        read = self.channel.recv
        try:
            while True:
                frame = protocol.read_frame(read)
                if frame is None:
                    break
                kind, req_id, body = frame
                if req_id == 0 and kind == protocol.MSG and \
                        protocol.decode_msg(body).get("ev") == "forgot":
                    self.forgot.set()
                    continue
                with self._lock:
                    client = self.client
                if client is not None:
                    try:
                        client.sendall(protocol.encode(kind, req_id, body))
                    except OSError:
                        pass  # the command is gone; its own thread notices
        except (OSError, EOFError, protocol.ProtocolError):
            pass
        with self._lock:
            self.alive = False
            client = self.client
        if client is not None:  # the command's session reader sees the end at once
            try:
                client.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.transport.close()
        self.on_gone(self)

    def describe(self):
        now = time.monotonic()
        return {"host": self.target.host, "port": self.target.port,
                "user": self.target.user_or_default,
                "become_user": self.target.become_user if self.target.become else None,
                "state": "busy" if self.busy else "idle",
                "age": round(now - self.opened, 1),
                "idle": round(now - self.idle_since, 1) if self.idle_since else 0.0,
                "persist": None if self.target.persist == float("inf") else self.target.persist,
                "pid": self.hello.get("pid")}


class Keeper:
    """The kept sessions, the commands connected, and when to leave."""

    def __init__(self, payload):
        self.payload = payload
        self.sessions = []
        self.clients = 0
        self.closing = False
        self.last_active = time.monotonic()
        self._lock = threading.Lock()

    # --- the sessions ------------------------------------------------------------------

    def _take(self, key):
        """An idle, live session for ``key``, taken out of the pool, or None."""
        with self._lock:
            for kept in self.sessions:
                if kept.key == key and not kept.busy and kept.alive:
                    kept.busy = True
                    return kept
        return None

    def _gone(self, kept):
        with self._lock:
            if kept in self.sessions:
                self.sessions.remove(kept)
            self.last_active = time.monotonic()

    def _give_back(self, kept):
        """A command released ``kept``: keep it, unless the keeper is closing."""
        kept.detach()
        with self._lock:
            kept.busy = False
            closing = self.closing
        if closing:
            self.expire()

    def expire(self):
        """Close the sessions idle past their persist time; True when the keeper can go."""
        now = time.monotonic()
        with self._lock:
            expired = [k for k in self.sessions if not k.busy and (
                self.closing or now - k.idle_since >= k.target.persist)]
            for kept in expired:
                self.sessions.remove(kept)
            if expired:
                self.last_active = now
            leave = not self.sessions and not self.clients and (
                self.closing or now - self.last_active >= LINGER)
        for kept in expired:
            kept.close()
        return leave

    # --- one command -------------------------------------------------------------------

    def serve_client(self, conn):
        with self._lock:
            self.clients += 1
        try:
            self._serve_client(conn)
        except (OSError, protocol.ProtocolError):
            pass
        finally:
            conn.close()
            with self._lock:
                self.clients -= 1
                self.last_active = time.monotonic()

    def _serve_client(self, conn):
        conn.settimeout(FIRST_FRAME_WAIT)  # a peer that says nothing must not keep us
        frame = protocol.read_frame(conn.recv)
        conn.settimeout(None)
        if frame is None or frame[0] != protocol.MSG:
            return
        message = protocol.decode_msg(frame[2])
        op = message.get("op")
        if op == "list":
            with self._lock:
                listed = [k.describe() for k in self.sessions]
            conn.sendall(protocol.encode_msg(0, {"ev": "sessions", "sessions": listed,
                                                 "pid": os.getpid()}))
        elif op == "close":
            with self._lock:
                self.closing = True
                count = len(self.sessions)
            conn.sendall(protocol.encode_msg(0, {"ev": "closing", "sessions": count}))
        elif op == "open":
            self._open(conn, message)

    @staticmethod
    def _refuse(conn, kind, msg):
        """Answer an open with an error: ``kind`` is an ssh error class's name, or
        "stale" (the command then connects by itself)."""
        conn.sendall(protocol.encode_msg(0, {"ev": "error", "kind": kind, "msg": msg}))

    def _open(self, conn, message):
        if message.get("payload") != self.payload.digest or self.closing:
            self._refuse(conn, "stale", "keeper of another payload")
            return
        fields = dict(message.get("target") or {})
        try:
            fields["persist"] = float(fields.get("persist") or 0.0)
            target = ssh.Target(**fields)
        except (TypeError, ValueError):  # a command of another fleet version
            self._refuse(conn, "stale", "a target this keeper cannot read")
            return
        key = session_key(fields)
        kept = self._take(key)
        if kept is not None:
            # The payload answers a FORGET: a host gone silent (rebooted, cut off) shows
            # here, and the command gets a new session instead of a dead one.
            kept.forgot.clear()
            if not (kept.send(protocol.encode_msg(0, FORGET))
                    and kept.forgot.wait(min(target.connect_timeout, FORGET_WAIT))):
                self._gone(kept)
                kept.close()
                kept = None
        if kept is not None:
            hello = dict(kept.hello, kept=True)
            kept.target = target  # this command's persist time and names from now on
        else:
            try:
                transport, channel, hello = start_payload(target, self.payload)
            except ssh.TransportError as exc:
                self._refuse(conn, type(exc).__name__, str(exc))
                return
            kept = Kept(key, target, transport, channel, hello, self._gone)
            with self._lock:
                self.sessions.append(kept)
            hello = dict(hello, kept=False)
        try:
            conn.sendall(protocol.encode_msg(0, hello))
            kept.attach(conn)
            released = self._relay(conn, kept)
        except (OSError, protocol.ProtocolError):
            released = False
        if released and kept.alive:
            self._give_back(kept)
        else:
            self._gone(kept)
            kept.close()

    @staticmethod
    def _relay(conn, kept):
        """Pass the command's frames to the payload until it releases the session (True)
        or goes away without doing so (False)."""
        read = conn.recv
        while True:
            frame = protocol.read_frame(read)
            if frame is None:
                return False
            kind, req_id, body = frame
            if req_id == 0 and kind == protocol.MSG:
                if protocol.decode_msg(body).get("op") == "release":
                    return True
                continue
            # One write for a small frame: one SSH packet, where two would cost a packet
            # (and a segment) more.
            head = protocol.header(kind, req_id, len(body))
            if not (kept.send(head + body) if len(body) < SMALL_FRAME
                    else kept.send(head, body)):
                return False


def _peer_uid(conn):
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)[1]


def serve(listener, path, digest):
    """Serve the commands that connect to ``listener`` (bound at ``path`` by
    keeper_start) until LINGER after the last session."""
    gc.set_threshold(50_000, 20, 10)
    payload = current_payload()
    keeper = Keeper(payload)
    # Built from the files on disk now: a fleet updated since the command that started
    # this keeper runs another payload, and gets none of its sessions (_open: "stale").
    keeper.closing = payload.digest != digest
    listener.settimeout(TICK)
    uid = os.getuid()
    while True:
        try:
            conn, _ = listener.accept()
        except socket.timeout:
            if keeper.expire():
                break
            continue
        conn.settimeout(None)
        if _peer_uid(conn) != uid:
            conn.close()
            continue
        threading.Thread(target=keeper.serve_client, args=(conn,), daemon=True,
                         name="fleet-keeper-client").start()
        keeper.expire()

"""Sessions that outlive a command, like OpenSSH's ControlPersist: the client side.

A target with ``persist`` set is not connected to by the command itself. The command
asks the keeper (keeper.py: one background process per user and payload version,
listening on a unix socket in a private directory) for a session to that target; the
keeper hands over one it kept from an earlier command, or connects and starts the
payload. The command then talks to the payload through the keeper, in the same frames
it would send on an SSH channel. When the command is done with a session that has
nothing in flight it releases it, and the keeper keeps it for the next command, for
``persist`` seconds. A command that ends any other way (an error, Ctrl-C, a kill)
closes its socket without a release: the keeper then closes that session, and the
payload cancels what it was running, as it does when a direct connection drops.

Targets with a become password never persist: a kept session would be a root shell any
process of this user could use without the password.
"""

import dataclasses
import os
import select
import socket
import stat
import subprocess
import sys
import threading
from pathlib import Path

from agent_payload import protocol
from fleet.transport import ssh

DEFAULT_DIR = "~/.cache/fleet/sessions"
# The longest a command waits for a new keeper to listen.
SPAWN_TIMEOUT = 10.0
RELEASE = {"op": "release"}
# The errors a keeper reports, by class name, raised again here as the same class.
ERRORS = {cls.__name__: cls for cls in (ssh.TransportError, ssh.HostKeyError, ssh.AuthError,
                                        ssh.RemoteError)}

_spawning = threading.Lock()
_failed = []  # why no keeper could be started, once per process: no thread tries again
_started = []  # the keeper process prestart started, until spawn waits for it


class KeeperError(Exception):
    """No keeper could be reached or started (the command then connects by itself)."""


def sessions_dir():
    """The private directory of the keepers' sockets ($FLEET_SESSIONS_DIR), made 0700.
    Raises KeeperError when it exists but another user could use it."""
    path = Path(os.path.expanduser(os.environ.get("FLEET_SESSIONS_DIR") or DEFAULT_DIR))
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = path.stat()
    if info.st_uid != os.getuid() or info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeeperError(f"{path} must be a directory of yours that only you can use "
                          "(chmod 700)")
    return path


def socket_path(digest):
    """The socket of the keeper for payload version ``digest``."""
    return sessions_dir() / f"{digest}.sock"


def target_fields(target):
    """``target`` as the JSON the keeper rebuilds it from (never the become password).
    What this command's environment decides is spelled out, as the keeper's environment
    is another command's: the user, and without a key file the ssh-agent socket and the
    default key files (ssh.pinned_auth)."""
    target = ssh.pinned_auth(target)
    fields = {field.name: getattr(target, field.name) for field in dataclasses.fields(target)
              if field.name != "become_password"}
    fields["user"] = target.user_or_default
    return fields


class KeptLink:
    """The payload's frames through the keeper's socket, for Session."""

    def __init__(self, sock):
        self.sock = sock
        self.recv = sock.recv
        self.send = sock.send

    def exit_status(self):
        return None  # the keeper has the channel; the payload's status stays there

    def close(self, idle=False):
        """Release the session to the keeper when ``idle``, else have it closed."""
        try:
            if idle:
                self.sock.sendall(protocol.encode_msg(0, RELEASE))
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


def connect(path):
    """A connected socket to the keeper at ``path``, or None when none listens there."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(path))
    except (FileNotFoundError, ConnectionRefusedError):
        sock.close()
        return None
    except OSError as exc:
        sock.close()
        raise KeeperError(f"cannot reach the session keeper at {path}: {exc}") from None
    return sock


def ask(sock, message, timeout):
    """Send ``message`` (a dict) as the first frame and return the keeper's answer, or
    None when it closed the socket first (it was exiting). KeeperError when it does not
    answer within ``timeout``."""
    sock.settimeout(timeout)
    try:
        sock.sendall(protocol.encode_msg(0, message))
        frame = protocol.read_frame(sock.recv)
    except socket.timeout:
        raise KeeperError(f"the session keeper did not answer within {timeout:g}s") from None
    except (OSError, protocol.ProtocolError):
        return None
    finally:
        sock.settimeout(None)
    if frame is None or frame[0] != protocol.MSG:
        return None
    return protocol.decode_msg(frame[2])


def _start(path, digest):
    """Popen the keeper process for ``path`` (its stdout says "ready" once it listens)."""
    root = str(Path(__file__).resolve().parents[2])
    code = ("import sys; sys.path.insert(0, sys.argv[1]); "
            "from fleet.transport.keeper_start import main; main(sys.argv[2], sys.argv[3])")
    try:
        return subprocess.Popen(
            [sys.executable, "-I", "-c", code, root, str(path), digest],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            start_new_session=True, close_fds=True, cwd="/")
    except OSError as exc:
        raise KeeperError(f"cannot start the session keeper: {exc}") from None


def spawn(path, digest):
    """Start a keeper for ``path`` (or take the one prestart started) and return once it
    listens (or another one does)."""
    child = _started.pop() if _started else _start(path, digest)
    child.wait()  # it forks the keeper and leaves at once
    with child.stdout:
        ready, _, _ = select.select([child.stdout], [], [], SPAWN_TIMEOUT)
        line = child.stdout.readline() if ready else b""
    if not line.startswith(b"ready"):
        detail = line.decode(errors="replace").strip() or "no answer"
        raise KeeperError(f"the session keeper did not start: {detail}")


def prestart():
    """Start a keeper now, without waiting for it, when none listens and sessions are
    kept by default ($FLEET_PERSIST): its start (an interpreter, paramiko) then overlaps
    the command's own, which has a playbook to read before it needs a session. A keeper
    nobody uses leaves after its LINGER seconds."""
    from fleet.transport.payload import current_payload
    from fleet.transport.targets import DEFAULT_PERSIST, persist_seconds

    try:
        if not persist_seconds(os.environ.get("FLEET_PERSIST") or DEFAULT_PERSIST):
            return
        digest = current_payload().digest
        path = socket_path(digest)
        with _spawning:
            if not _started and not path.exists():
                _started.append(_start(path, digest))
    except (KeeperError, OSError, ValueError):
        pass  # Session.open connects by itself, as without a keeper


def lease(target, payload):
    """A kept session to ``target`` through the keeper: (KeptLink, hello).

    Returns None when no keeper can be had (the caller connects by itself); raises
    ssh.TransportError and its subclasses as a direct connection would, with the same
    one-line reasons, when the keeper could not reach the host."""
    from fleet.transport.payload import current_payload

    if _failed or payload.digest != current_payload().digest:
        return None  # a keeper runs the payload this fleet was installed with, no other
    try:
        path = socket_path(payload.digest)
    except (KeeperError, OSError) as exc:
        _failed.append(str(exc))
        return None
    request = {"op": "open", "payload": payload.digest, "target": target_fields(target)}
    # The handshake's own deadlines are the keeper's; this one only stops a stuck keeper.
    timeout = 5 * max(target.connect_timeout, 1.0) + 5.0
    for _attempt in range(2):  # once more if the keeper was exiting as we came
        try:
            sock = connect(path)
            if sock is None:
                with _spawning:  # one spawn for all the threads of a play's first task
                    if _failed:
                        return None
                    sock = connect(path)
                    if sock is None:
                        spawn(path, payload.digest)
                        sock = connect(path)
            _reap_started()
            answer = None if sock is None else ask(sock, request, timeout)
        except KeeperError as exc:
            _failed.append(str(exc))
            return None
        if answer is None:
            if sock is not None:
                sock.close()
            continue
        if answer.get("ev") == "hello":
            return KeptLink(sock), answer
        sock.close()
        if answer.get("kind") == "stale":
            return None
        error = ERRORS.get(answer.get("kind"), ssh.TransportError)
        raise error(answer.get("msg") or f"the session keeper could not reach {target.host}")
    _failed.append("the session keeper closed the connection twice")
    return None


def _reap_started():
    """Wait for the start of a keeper prestart began that nobody needed (another keeper
    answered first): its first process leaves at once."""
    with _spawning:
        while _started:
            child = _started.pop()
            child.wait()
            child.stdout.close()


def keepers():
    """The sockets of this user's keepers (one per payload version in use). Raises
    KeeperError when the sessions directory cannot be used (commands then connect by
    themselves, without saying so: this is where it is said)."""
    try:
        return sorted(sessions_dir().glob("*.sock"))
    except OSError as exc:
        raise KeeperError(f"cannot use the sessions directory: {exc}") from None


def command(op, timeout=10.0):
    """Send ``op`` ("list" or "close") to every keeper; [(socket path, answer)]."""
    answers = []
    for path in keepers():
        sock = connect(path)
        if sock is None:
            continue
        try:
            answer = ask(sock, {"op": op}, timeout)
        finally:
            sock.close()
        if answer is not None:
            answers.append((path, answer))
    return answers

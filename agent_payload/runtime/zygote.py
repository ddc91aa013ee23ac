"""The zygote: a small daemon per host (and payload version) that forks supervisors.

A supervisor per container is a whole Python process; started fresh, each would cost
about 3.5 MiB. Forked from this process after it has imported the runtime (and frozen
its objects out of the garbage collector's reach), they share the interpreter's pages
and cost about half a MiB each (proportional set size), a little over podman's conmon.

The payload starts it on demand (``ensure``): posix_spawn with a session of its own,
stdio on /dev/null, so it outlives the SSH connection. It listens on a unix socket in
/run/fleet, named by the payload version; one request a connection, one JSON line each
way: ``{"op": "start", "dir": DIR}`` -> ``{"pid": SUPERVISOR_PID}``. It reaps the
supervisors it forked, and leaves when it has had nothing to do for IDLE_EXIT seconds.
"""

import gc
import os
import socket
import sys
import time

from agent_payload import cgroups, jsonwire, syscalls
from agent_payload.runtime import supervise

RUN_DIR = "/run/fleet"
IDLE_EXIT = 600.0
_SPAWN = ("import sys; sys.path.insert(0, sys.argv[1]); "
          "from agent_payload.runtime.zygote import main; main(sys.argv[2])")


def socket_path(version):
    """Where the zygote of payload ``version`` listens."""
    return os.path.join(RUN_DIR, f"zygote-{version or 'dev'}.sock")


def _request(path, message, timeout=5.0):
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.settimeout(timeout)
    try:
        client.connect(path)
        client.sendall((jsonwire.dumps(message) + "\n").encode())
        data = b""
        while not data.endswith(b"\n"):
            chunk = client.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        client.close()
    return jsonwire.loads(data.decode())


def ensure(version, payload_dir, python=None, wait=5.0):
    """The socket path of a running zygote for ``version``, starting one if needed."""
    path = socket_path(version)
    try:
        _request(path, {"op": "ping"}, timeout=1.0)
        return path
    except OSError:
        pass
    os.makedirs(RUN_DIR, mode=0o700, exist_ok=True)
    devnull = os.devnull
    actions = [(os.POSIX_SPAWN_OPEN, fd, devnull, os.O_RDWR, 0) for fd in (0, 1, 2)]
    os.posix_spawn(python or sys.executable,
                   [python or sys.executable, "-I", "-S", "-c", _SPAWN, payload_dir, path],
                   {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")},
                   file_actions=actions, setsid=True)
    deadline = time.monotonic() + wait
    while True:
        try:
            _request(path, {"op": "ping"}, timeout=1.0)
            return path
        except OSError:
            if time.monotonic() > deadline:
                raise OSError(f"the container zygote did not start ({path})") from None
            time.sleep(0.02)


def start_supervisor(path, directory):
    """Ask the zygote at ``path`` for a supervisor of the container in ``directory``."""
    answer = _request(path, {"op": "start", "dir": directory})
    if "pid" not in answer:
        raise OSError(answer.get("error") or "the zygote did not start a supervisor")
    return answer["pid"]


def _reap(children):
    while children:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            children.clear()
            return
        if not pid:
            return
        children.discard(pid)


def _supervisor(directory):
    try:
        supervise.supervise(directory)
    finally:
        os._exit(0)


def main(path):
    """Listen on ``path`` and fork supervisors until idle for IDLE_EXIT seconds."""
    # What every supervisor would otherwise load for itself (and so not share): libc
    # through ctypes, the cgroup driver's probe.
    syscalls.set_child_subreaper()
    cgroups.open_driver()
    gc.collect()
    gc.freeze()  # keep imported objects out of the children's GC: fewer pages copied
    tmp = f"{path}.{os.getpid()}"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(tmp)
    os.chmod(tmp, 0o600)
    server.listen(16)
    os.rename(tmp, path)  # appears whole, ready to accept
    server.settimeout(1.0)
    children = set()
    last = time.monotonic()
    while True:
        _reap(children)
        if not children and time.monotonic() - last > IDLE_EXIT:
            try:
                os.unlink(path)
            except OSError:
                pass
            return
        try:
            conn, _ = server.accept()
        except socket.timeout:
            continue
        last = time.monotonic()
        with conn:
            conn.settimeout(5.0)
            try:
                data = b""
                while not data.endswith(b"\n"):
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                request = jsonwire.loads(data.decode())
            except (OSError, ValueError):
                continue
            if request.get("op") == "start":
                pid = os.fork()
                if pid == 0:
                    server.close()
                    conn.close()
                    _supervisor(request["dir"])
                children.add(pid)
                reply = {"pid": pid}
            else:
                reply = {"pong": True}
            try:
                conn.sendall((jsonwire.dumps(reply) + "\n").encode())
            except OSError:
                pass

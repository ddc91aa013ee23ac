"""The monitor: one daemon per host (and payload version) that starts and watches every
detached container on it.

Why one process for all: a supervisor per container, even forked to share pages, cost
about 1.4 MiB each (podman's conmon: about 350 KiB); one event loop costs a few MiB in
all. Why it can die without taking containers down: a container's stdout and stderr are
FIFOs in its directory, and its PID 1 holds each one open for reading as well as writing,
so the FIFO never loses its last reader: output waits (the FIFO fills) instead of
breaking while no monitor reads it, and the next monitor reads on from the same path.

The payload starts it on demand (``ensure``: posix_spawn with a session of its own and
stdio on /dev/null, so it outlives the SSH connection). It listens on a unix socket in
/run/fleet named by the payload version and the store; one JSON request a connection:
``{"op": "start", "dir": DIR}`` starts the container in DIR and answers ``{"ok": true}``
or ``{"error": ...}``; ``{"op": "ping"}``. As the parent of every container's PID 1 it
learns their exits (SIGCHLD through the interpreter's wakeup fd), writes state.json
(records.py), appends the output to container.log in Docker's json-file format, runs
healthchecks (health.py) and restarts containers per their policy with Docker's
back-off. It leaves after IDLE_EXIT seconds with no container to watch.
"""

import _signal
import _socket  # the payload's side needs no more; socket.py imports enum and selectors
import os
import select
import sys
import time

from agent_payload import cgroups, jsonfile, jsonwire, syscalls, tools
from agent_payload.digests import sha256_hex
from agent_payload.oci.store import remove_tree
from agent_payload.runtime import records
from agent_payload.runtime import run as runner
from agent_payload.runtime.health import Checker
from agent_payload.runtime.records import STOP, now, update_state

RUN_DIR = "/run/fleet"
IDLE_EXIT = 600.0
FIFOS = ("stdout", "stderr")
_SPAWN = ("import sys; sys.path.insert(0, sys.argv[1]); "
          "from agent_payload.runtime.monitor import main; main(sys.argv[2])")


def _launcher():
    """launch.py, which only the monitor's own process needs: the payload imports this
    module as the monitor's client on every create, and launch's imports cost it ~1 ms."""
    from agent_payload.runtime import launch

    return launch


def socket_path(version, store_root):
    """Where the monitor of payload ``version`` for the store at ``store_root`` listens
    (one per store: a host has one; tests that use stores of their own get their own)."""
    store = sha256_hex(os.path.abspath(store_root).encode())[:8]
    return os.path.join(RUN_DIR, f"monitor-{version or 'dev'}-{store}.sock")


def _receive(sock):
    """One JSON line from ``sock``."""
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return jsonwire.loads(data.decode())


def _request(path, message, timeout=10.0):
    client = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    client.settimeout(timeout)
    try:
        client.connect(path)
        client.sendall((jsonwire.dumps(message) + "\n").encode())
        return _receive(client)
    finally:
        client.close()


def ensure(version, payload_dir, store_root, python=None, wait=5.0):
    """The socket path of a running monitor for ``version`` and the store at
    ``store_root``, starting one if needed."""
    path = socket_path(version, store_root)
    try:
        _request(path, {"op": "ping"}, timeout=1.0)
        return path
    except OSError:
        pass
    os.makedirs(RUN_DIR, mode=0o700, exist_ok=True)
    actions = [(os.POSIX_SPAWN_OPEN, fd, os.devnull, os.O_RDWR, 0) for fd in (0, 1, 2)]
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
                raise OSError(f"the container monitor did not start ({path})") from None
            time.sleep(0.02)


def start_container(path, directory, op="start"):
    """Ask the monitor at ``path`` to start the container in ``directory`` (or, with
    op="adopt", to take up watching it: its monitor died and its PID 1 still runs)."""
    answer = _request(path, {"op": op, "dir": directory})
    if not answer.get("ok"):
        raise OSError(answer.get("error") or f"the monitor did not {op} the container")


class Watched:
    """One container the monitor runs: its plan, output, health and restarts."""

    def __init__(self, directory):
        self.directory = directory
        self.plan = jsonfile.read_json(os.path.join(directory, "config.json"))
        self.cgroup = None
        if self.plan.get("cgroup"):
            self.cgroup = cgroups.open_driver().cgroup(self.plan["cgroup"]["parent"],
                                                       self.plan["cgroup"]["name"])
        self.plan["cgroup_procs"] = self.cgroup.procs_files if self.cgroup else []
        self.log = records.Log(os.path.join(directory, records.LOG))
        self.checker = None
        if self.plan.get("healthcheck"):
            exec_plan = {key: self.plan.get(key) for key in (
                "env", "uid", "gid", "groups", "working_dir", "capabilities", "privileged",
                "no_new_privileges", "cgroup_procs")}
            exec_plan.update(mode="exec", argv=self.plan["healthcheck"]["argv"])
            self.checker = Checker(self.plan["healthcheck"], exec_plan)
        self.pid = None
        self.readers = {}  # fd -> stream name
        self.check_fd = None
        self.restarts = 0
        self.backoff = records.BACKOFF_START
        self.restart_at = None
        self.started = None
        self.adopted = False  # its PID 1 is not our child: we see it end, not its code

    def _fifos(self):
        """(read ends for us, read-write ends for PID 1) of the stdout and stderr FIFOs."""
        ours, theirs = [], []
        try:
            for name in FIFOS:
                path = os.path.join(self.directory, name + ".fifo")
                if not os.path.exists(path):
                    os.mkfifo(path, 0o600)
                ours.append(os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC))
                theirs.append(os.open(path, os.O_RDWR | os.O_CLOEXEC))
        except OSError:
            for fd in ours + theirs:  # the monitor lives on: no descriptor may leak
                os.close(fd)
            raise
        return ours, theirs

    def launch(self):
        """Start (or restart) the container; False when it could not start."""
        self.restart_at = None
        ours, theirs = self._fifos()
        devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        launch = _launcher()
        try:
            self.pid = launch.start(self.plan, stdio=(devnull, theirs[0], theirs[1]))
        except launch.LaunchError as exc:
            for fd in ours:
                os.close(fd)
            update_state(self.directory, status="exited", running=False, pid=0,
                         exit_code=127, error=str(exc), finished_at=now())
            return False
        finally:
            for fd in theirs + [devnull]:
                os.close(fd)
        self.readers = dict(zip(ours, FIFOS))
        self.started = time.monotonic()
        fields = {}
        if self.checker is not None:
            self.checker.reset()
            fields["health"] = dict(self.checker.health)
        update_state(self.directory, status="running", running=True, pid=self.pid, error="",
                     started_at=now(), exit_code=0, oom_killed=False,
                     supervisor=os.getpid(), restarting=False, **fields)
        return True

    def adopt(self, pid):
        """Watch a running container whose monitor died: read on from its FIFOs."""
        self.pid, self.adopted, self.started = pid, True, time.monotonic()
        ours = []
        for name in FIFOS:
            ours.append(os.open(os.path.join(self.directory, name + ".fifo"),
                                os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC))
        self.readers = dict(zip(ours, FIFOS))
        if self.checker is not None:
            self.checker.reset()
        update_state(self.directory, supervisor=os.getpid(), error="")

    def gone(self):
        """For an adopted container: True once its PID 1 has ended."""
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        try:  # a zombie still answers kill(): look at its state
            with open(f"/proc/{self.pid}/stat") as handle:
                return handle.read().rsplit(")", 1)[1].split()[0] == "Z"
        except OSError:
            return True

    def read(self, fd):
        """Move what the container wrote on ``fd`` into its log."""
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            return
        if chunk:
            self.log.add(self.readers[fd], chunk)

    def close_readers(self):
        """Drain and close the FIFOs' read ends (the container has ended)."""
        for fd in list(self.readers):
            while True:
                try:
                    chunk = os.read(fd, 65536)
                except BlockingIOError:
                    break
                if not chunk:
                    break
                self.log.add(self.readers[fd], chunk)
            os.close(fd)
        self.readers = {}
        self.log.flush()

    def exited(self, status):
        """PID 1 ended (``status`` None: an adopted one, its code unknown, -1): record
        it; return the monotonic time to restart at, or None."""
        self.pid = None
        self.adopted = False
        self.close_readers()
        if self.checker is not None:
            self.checker.running = None
        code = -1 if status is None else tools.exit_code(status)
        oom = self.cgroup is not None and self.cgroup.oom_kills() > 0
        update_state(self.directory, status="exited", running=False, pid=0, exit_code=code,
                     oom_killed=oom, finished_at=now())
        stopped = os.path.exists(os.path.join(self.directory, STOP))
        if records.should_restart(self.plan.get("restart_policy"), code, self.restarts,
                                    stopped):
            if time.monotonic() - self.started > records.BACKOFF_RESET:
                self.backoff = records.BACKOFF_START
            self.restart_at = time.monotonic() + self.backoff
            self.backoff = min(self.backoff * 2, records.BACKOFF_MAX)
            update_state(self.directory, status="restarting", restarting=True)
            return self.restart_at
        update_state(self.directory, supervisor=0, restarting=False)
        if self.plan.get("auto_remove") and not stopped:
            self.remove()
        return None

    def restart(self):
        """The back-off is over: start again, unless a stop came meanwhile."""
        if os.path.exists(os.path.join(self.directory, STOP)):
            self.restart_at = None
            update_state(self.directory, status="exited", supervisor=0, restarting=False)
            return False
        self.restarts += 1
        update_state(self.directory, restart_count=self.restarts)
        return self.launch()

    def remove(self):
        """auto_remove: the container goes when it ends by itself."""
        if self.cgroup is not None:
            try:
                self.cgroup.remove()
            except cgroups.CgroupError:
                pass
        runner.remove_anonymous_volumes(self.plan)
        remove_tree(self.directory, ignore_errors=True)


class Monitor:
    """The event loop: requests, container output, exits, healthchecks, restarts."""

    def __init__(self, server):
        self.server = server
        self.watched = {}  # directory -> Watched
        self.poller = select.poll()
        self.owners = {}  # fd -> (Watched, "output" | "check")
        self.wake_r, wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        _signal.signal(_signal.SIGCHLD, lambda _signum, _frame: None)
        _signal.set_wakeup_fd(wake_w)
        self.poller.register(server.fileno(), select.POLLIN)
        self.poller.register(self.wake_r, select.POLLIN)
        self.idle_since = time.monotonic()

    def _watch_fds(self, watched):
        for fd in watched.readers:
            self.owners[fd] = (watched, "output")
            self.poller.register(fd, select.POLLIN)

    def _forget_fds(self, watched):
        for fd, (owner, kind) in list(self.owners.items()):
            if owner is watched:
                self.poller.unregister(fd)
                del self.owners[fd]
                if kind == "check":  # the container is gone: so is what it looked at
                    os.close(fd)
                    watched.check_fd = None

    def adopt(self, directory):
        """Take up a running container whose monitor died."""
        if directory in self.watched:
            return
        state = jsonfile.read_json(os.path.join(directory, records.STATE), {}) or {}
        if not state.get("pid"):
            raise OSError("the container is not running")
        watched = Watched(directory)
        watched.adopt(state["pid"])
        self.watched[directory] = watched
        self._watch_fds(watched)

    def start(self, directory):
        """Start the container in ``directory`` (not already watched)."""
        watched = self.watched.get(directory)
        if watched is not None and watched.pid is not None:
            return
        watched = Watched(directory)
        self.watched[directory] = watched
        if watched.launch():
            self._watch_fds(watched)
        else:
            del self.watched[directory]

    def _reap(self):
        by_pid = {w.pid: w for w in self.watched.values() if w.pid}
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if not pid:
                return
            watched = by_pid.get(pid)
            if watched is None:
                continue  # a healthcheck's child, or an orphan handed to us
            self._forget_fds(watched)
            if watched.exited(status) is None:
                del self.watched[watched.directory]

    def _timers(self):
        """Restarts and healthchecks that are due; the milliseconds until the next."""
        wait = 1000
        for watched in list(self.watched.values()):
            if watched.adopted and watched.gone():
                self._forget_fds(watched)
                if watched.exited(None) is None:
                    del self.watched[watched.directory]
                continue
            if watched.restart_at is not None:
                left = watched.restart_at - time.monotonic()
                if left <= 0:
                    if watched.restart():
                        self._watch_fds(watched)
                    elif watched.pid is None and watched.restart_at is None:
                        del self.watched[watched.directory]
                    continue
                wait = min(wait, int(left * 1000))
            checker = watched.checker
            if checker is not None and watched.pid is not None:
                if watched.check_fd is None:
                    fd = checker.maybe_start(watched.pid)
                    if fd is not None:
                        watched.check_fd = fd
                        self.owners[fd] = (watched, "check")
                        self.poller.register(fd, select.POLLIN)
                wait = min(wait, checker.wait_ms())
        return max(wait, 0)

    def _answer(self):
        conn, _ = self.server.accept()
        with conn:
            conn.settimeout(5.0)
            try:
                request = _receive(conn)
            except (OSError, ValueError):
                return
            reply = {"ok": True}
            if request.get("op") in ("start", "adopt"):
                try:
                    if request["op"] == "start":
                        self.start(request["dir"])
                    else:
                        self.adopt(request["dir"])
                except Exception as exc:  # one container's trouble must not stop the rest
                    reply = {"error": f"{type(exc).__name__}: {exc}"}
            try:
                conn.sendall((jsonwire.dumps(reply) + "\n").encode())
            except OSError:
                pass

    def run(self, path):
        """Serve until idle for IDLE_EXIT seconds."""
        while True:
            if self.watched:
                self.idle_since = time.monotonic()
            elif time.monotonic() - self.idle_since > IDLE_EXIT:
                try:
                    os.unlink(path)
                except OSError:
                    pass
                return
            try:
                self._step()
            except Exception:  # noqa: BLE001 - one container's trouble (its directory
                # removed under us, say) must not end the watch over all the others
                self._drop_broken()
                time.sleep(0.1)  # and a trouble that stays must not spin

    def _step(self):
        for fd, _ in self.poller.poll(self._timers()):
            if fd == self.server.fileno():
                self._answer()
            elif fd == self.wake_r:
                try:
                    os.read(self.wake_r, 4096)
                except BlockingIOError:
                    pass
                self._reap()
            elif fd in self.owners:
                watched, kind = self.owners[fd]
                if kind == "output":
                    watched.read(fd)
                else:
                    self.poller.unregister(fd)
                    del self.owners[fd]
                    watched.check_fd = None
                    update_state(watched.directory, health=watched.checker.finish())
        self._reap()

    def _drop_broken(self):
        """Stop watching containers whose directory is gone."""
        for directory, watched in list(self.watched.items()):
            if not os.path.isdir(directory):
                self._forget_fds(watched)
                for fd in list(watched.readers):
                    os.close(fd)
                watched.readers = {}
                del self.watched[directory]


def main(path):
    """Entry point of the monitor process: listen on ``path`` and watch containers."""
    import socket

    _launcher()  # loaded before the first fork: after pivot_root nothing can be imported
    syscalls.set_child_subreaper()  # what a healthcheck's child leaves is ours to reap
    tmp = f"{path}.{os.getpid()}"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(tmp)
    os.chmod(tmp, 0o600)
    server.listen(16)
    os.rename(tmp, path)  # appears whole, ready to accept
    Monitor(server).run(path)

"""The supervisor of a detached container: one process per container, forked from the
host's zygote (zygote.py) so that it shares the interpreter's memory with its siblings.

``supervise(directory)`` starts the container (launch.start), becomes the parent of its
PID 1 (it is a child subreaper), writes the container's output to ``container.log``
as Docker's json-file driver does (one JSON object a line: log, stream, time), and keeps
``state.json`` true: running with its pid, then exited with the exit code, the time and
whether the OOM killer ended it. It restarts the container as ``restart_policy`` says
(no, on-failure[:N], always, unless-stopped), with Docker's back-off (100 ms, doubling,
reset after 10 s of running), unless the payload asked for a stop (the ``stop`` file).
"""

import _signal
import os
import select
import time

from agent_payload import cgroups, jsonwire, syscalls
from agent_payload.runtime import launch
from agent_payload.runtime.health import Checker, stamp

STATE = "state.json"
LOG = "container.log"
STOP = "stop"
BACKOFF_START, BACKOFF_MAX, BACKOFF_RESET = 0.1, 60.0, 10.0


def now():
    """The current time as Docker writes times."""
    return stamp(time.time())


def read_json(path, default=None):
    """A JSON file's value, or ``default`` when it is missing or unreadable."""
    try:
        with open(path) as handle:
            return jsonwire.loads(handle.read())
    except (OSError, ValueError):
        return default


def write_json(path, value):
    """Write JSON atomically (temp file and rename)."""
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as handle:
        handle.write(jsonwire.dumps(value))
    os.rename(tmp, path)


def update_state(directory, **fields):
    """Merge ``fields`` into the container's state.json."""
    path = os.path.join(directory, STATE)
    state = read_json(path, {}) or {}
    state.update(fields)
    write_json(path, state)
    return state


def should_restart(policy, exit_code, restarts, stopped):
    """Docker's restart policies: no, on-failure[:N], always, unless-stopped."""
    if stopped:
        return False
    name, _, limit = (policy or "no").partition(":")
    if name == "always" or name == "unless-stopped":
        return True
    if name == "on-failure":
        return exit_code != 0 and (not limit or restarts < int(limit))
    return False


class _Log:
    """Appends json-file lines for each complete line (or a full buffer) of a stream."""

    def __init__(self, path):
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        self.partial = {"stdout": b"", "stderr": b""}

    def add(self, stream, data):
        buffered = self.partial[stream] + data
        lines = buffered.split(b"\n")
        self.partial[stream] = lines.pop()
        if len(self.partial[stream]) > 16384:
            lines.append(self.partial[stream])
            self.partial[stream] = b""
        self._write(stream, [line + b"\n" for line in lines])

    def flush(self):
        for stream, rest in self.partial.items():
            if rest:
                self._write(stream, [rest])
                self.partial[stream] = b""

    def _write(self, stream, chunks):
        if not chunks:
            return
        stamp = now()
        text = "".join(jsonwire.dumps({"log": chunk.decode("utf-8", "replace"),
                                       "stream": stream, "time": stamp}) + "\n"
                       for chunk in chunks)
        os.write(self.fd, text.encode())


def _wake_on_child_exit():
    """A descriptor that becomes readable when a child ends (SIGCHLD through the
    interpreter's wakeup fd), so an exit is noticed at once, not at the next poll."""
    wake_r, wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
    _signal.signal(_signal.SIGCHLD, lambda _signum, _frame: None)
    _signal.set_wakeup_fd(wake_w)
    return wake_r


def _run_once(plan, directory, log, cgroup, wake_r, checker=None):
    """Start the container, pump its output to the log until its PID 1 ends; return the
    exit code (127 and the reason when it could not start)."""
    devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    out_r, out_w = os.pipe2(os.O_CLOEXEC)
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    try:
        pid = launch.start(plan, stdio=(devnull, out_w, err_w))
    except launch.LaunchError as exc:
        for fd in (devnull, out_r, out_w, err_r, err_w):
            os.close(fd)
        update_state(directory, status="exited", running=False, pid=0, exit_code=127,
                     error=str(exc), finished_at=now())
        return 127, str(exc)
    for fd in (devnull, out_w, err_w):
        os.close(fd)
    fields = {}
    if checker is not None:
        checker.reset()
        fields["health"] = dict(checker.health)
    update_state(directory, status="running", running=True, pid=pid, error="",
                 started_at=now(), exit_code=0, oom_killed=False, **fields)
    streams = {out_r: "stdout", err_r: "stderr"}
    poller = select.poll()
    for fd in streams:
        poller.register(fd, select.POLLIN)
    poller.register(wake_r, select.POLLIN)
    status = None
    check_fd = None
    while status is None or streams:
        wait = 1000 if status is None else 50
        if checker is not None and status is None:
            wait = min(wait, checker.wait_ms())
        for fd, _ in poller.poll(wait):
            if fd == wake_r:
                try:
                    os.read(wake_r, 4096)
                except BlockingIOError:
                    pass
                continue
            if fd == check_fd:
                poller.unregister(fd)
                check_fd = None
                update_state(directory, health=checker.finish())
                continue
            chunk = os.read(fd, 65536)
            if chunk:
                log.add(streams[fd], chunk)
            else:
                poller.unregister(fd)
                os.close(fd)
                del streams[fd]
        while True:  # PID 1, and orphans handed to us as the subreaper
            try:
                reaped, wait_status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if not reaped:
                break
            if reaped == pid:
                status = wait_status
        if checker is not None and status is None and check_fd is None:
            check_fd = checker.maybe_start(pid)
            if check_fd is not None:
                poller.register(check_fd, select.POLLIN)
        if status is not None and streams and not [
                fd for fd, _ in poller.poll(0) if fd not in (wake_r, check_fd)]:
            # PID 1 is gone; a writer it left behind must not keep us here
            for fd in list(streams):
                os.close(fd)
                del streams[fd]
    poller.unregister(wake_r)
    if check_fd is not None:  # the container is gone: so is what the check looked at
        os.close(check_fd)
        checker.running = None
    log.flush()
    code = launch.exit_code(status)
    oom = cgroup is not None and cgroup.oom_kills() > 0
    update_state(directory, status="exited", running=False, pid=0, exit_code=code,
                 oom_killed=oom, finished_at=now())
    return code, ""


def supervise(directory):
    """Run and watch the container in ``directory`` until it ends for good."""
    plan = read_json(os.path.join(directory, "config.json"))
    syscalls.set_child_subreaper()
    cgroup = None
    if plan.get("cgroup"):
        driver = cgroups.open_driver()
        cgroup = driver.cgroup(plan["cgroup"]["parent"], plan["cgroup"]["name"])
    plan["cgroup_procs"] = cgroup.procs_files if cgroup is not None else []
    log = _Log(os.path.join(directory, LOG))
    wake_r = _wake_on_child_exit()
    checker = None
    if plan.get("healthcheck"):
        exec_plan = {key: plan.get(key) for key in (
            "env", "uid", "gid", "groups", "working_dir", "capabilities", "privileged",
            "no_new_privileges", "cgroup_procs")}
        exec_plan.update(mode="exec", argv=plan["healthcheck"]["argv"])
        checker = Checker(plan["healthcheck"], exec_plan)
    restarts = 0
    backoff = BACKOFF_START
    update_state(directory, supervisor=os.getpid(), restart_count=0)
    while True:
        started = time.monotonic()
        code, _error = _run_once(plan, directory, log, cgroup, wake_r, checker)
        stopped = os.path.exists(os.path.join(directory, STOP))
        if not should_restart(plan.get("restart_policy"), code, restarts, stopped):
            break
        if time.monotonic() - started > BACKOFF_RESET:
            backoff = BACKOFF_START
        update_state(directory, status="restarting", restarting=True)
        time.sleep(backoff)
        backoff = min(backoff * 2, BACKOFF_MAX)
        if os.path.exists(os.path.join(directory, STOP)):
            break
        restarts += 1
        update_state(directory, restart_count=restarts, restarting=False)
    update_state(directory, supervisor=0, restarting=False)
    if plan.get("auto_remove") and not os.path.exists(os.path.join(directory, STOP)):
        _remove(directory, plan, cgroup)


def _remove(directory, plan, cgroup):
    """auto_remove: the container goes when it ends (a stop asked for leaves the
    removal to the payload, which is then busy with it)."""
    import shutil

    if cgroup is not None:
        try:
            cgroup.remove()
        except cgroups.CgroupError:
            pass
    for mount in plan.get("mounts") or []:
        if mount.get("anonymous"):
            shutil.rmtree(os.path.dirname(mount["source"]), ignore_errors=True)
    shutil.rmtree(directory, ignore_errors=True)

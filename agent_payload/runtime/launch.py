"""The launcher: a process of its own that makes the container's namespaces and waits for
its first process.

The payload starts it with posix_spawn (no fork of the payload's threaded process), the
plan as JSON on fd 3 and a pipe on fd 4 for its events, one JSON object per line:
``{"started": pid}`` (the host pid of the container's PID 1) or ``{"error": msg}``, then
``{"exited": code}`` (negative: killed by that signal). fds 0-2 are the container's
stdin, stdout and stderr.

``start`` forks PID 1 of a new PID namespace (see its docstring); PID 1 joins the
container's cgroup, unshares the mount, UTS, IPC and cgroup (and, for ``network_mode:
none``, network) namespaces, builds the root (rootfs.setup), sets the hostname, rlimits,
user and groups, the seccomp filter and the capability sets, and execs the command; a
failure before exec comes back through a close-on-exec pipe as one line. The launcher
itself stays in the host's namespaces and outside the container's cgroup.
"""

import _signal as signal  # the signal module itself imports enum: milliseconds per start
import fcntl
import os
import resource
import sys
import termios
import warnings  # noqa: F401 - os.execvpe imports it, and after pivot_root nothing can be

from agent_payload import jsonwire, syscalls, tools
from agent_payload.runtime import caps, netlink, rootfs, seccomp

S = syscalls
# What PID 1 unshares for itself; its PID namespace is made by start() before the fork.
NAMESPACES = S.CLONE_NEWNS | S.CLONE_NEWUTS | S.CLONE_NEWIPC | S.CLONE_NEWCGROUP
PLAN_FD, EVENTS_FD = 3, 4
EXEC_FAILED = 127
PR_SET_KEEPCAPS = 8


def _read_all(fd):
    chunks = []
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _event(**fields):
    os.write(EVENTS_FD, (jsonwire.dumps(fields) + "\n").encode())


def _rlimits(limits):
    for name, (soft, hard) in (limits or {}).items():
        which = getattr(resource, "RLIMIT_" + name.upper())
        current_hard = resource.getrlimit(which)[1]
        if current_hard != resource.RLIM_INFINITY:
            hard = min(hard, current_hard) if hard >= 0 else current_hard
            soft = min(soft, hard) if soft >= 0 else hard
        resource.setrlimit(which, (soft, hard))


def _become(plan, program):
    """Hostname and rlimits, then the container's privileges."""
    S.sethostname(plan["hostname"])
    _rlimits(plan.get("rlimits"))
    _drop_privileges(plan, program)


def _drop_privileges(plan, program):
    """Capabilities, seccomp and user, in an order where each step still holds the
    privilege it needs."""
    names = plan["capabilities"]
    caps.drop_bounding(names)  # needs CAP_SETPCAP, which root still has here
    S.prctl(PR_SET_KEEPCAPS, 1, label="PR_SET_KEEPCAPS")  # permitted set survives setuid
    if program is not None:
        # Installed while CAP_SYS_ADMIN is held, so without needing no_new_privs; what
        # follows (setuid, capset, execve) is not in the filter.
        S.seccomp_filter(program)
    os.setgroups(plan.get("groups") or [])
    os.setgid(plan["gid"])
    os.setuid(plan["uid"])
    if plan.get("no_new_privileges"):
        S.prctl(S.PR_SET_NO_NEW_PRIVS, 1, label="PR_SET_NO_NEW_PRIVS")
    caps.set_sets(names, effective=plan["uid"] == 0)


FORWARDED = ("SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGWINCH",
             "SIGCONT")


def _init(command_pid):
    """PID 1 with ``init: true``: pass signals on to the command, reap every orphan, and
    exit as the command did (128 + signal when a signal ended it), as docker's --init."""
    for name in FORWARDED:
        signal.signal(getattr(signal, name), lambda signum, _frame: _forward(command_pid,
                                                                            signum))
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            os._exit(0)
        if pid == command_pid:
            os._exit(os.WEXITSTATUS(status) if os.WIFEXITED(status)
                     else 128 + os.WTERMSIG(status))


def _drop_inherited():
    """Close every descriptor but stdin, stdout and stderr, and the interpreter's wakeup
    fd: an init that never execs would keep what it inherited from the monitor (other
    containers' output FIFOs and logs, its socket), open to the container's root through
    /proc/1/fd."""
    signal.set_wakeup_fd(-1)
    for name in os.listdir("/proc/self/fd"):
        if int(name) > 2:
            try:
                os.close(int(name))
            except OSError:
                pass  # the listing's own descriptor, already closed


def _forward(pid, signum):
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def _exec(plan):
    """chdir to the working dir and exec the command with the plan's environment."""
    os.chdir(plan.get("working_dir") or "/")
    argv = plan["argv"]
    environ = dict(item.split("=", 1) for item in plan["env"])
    # Python ignores these, and an ignored signal stays ignored across exec: the command
    # would get EPIPE where it should die of SIGPIPE (`yes | head -1`), as under Docker.
    for name in ("SIGPIPE", "SIGXFSZ"):
        signal.signal(getattr(signal, name), signal.SIG_DFL)
    try:
        os.execvpe(argv[0], argv, environ)
    except FileNotFoundError:
        raise OSError(f'exec: "{argv[0]}": executable file not found in $PATH') from None


def _fail(error_w, exc):
    """Report why the process could not become the command (one line), and end it."""
    message = str(exc) or type(exc).__name__
    try:
        os.write(error_w, message.encode("utf-8", "replace")[:4000])
    finally:
        os._exit(EXEC_FAILED)


def _enter(plan):
    """What a container's process and an exec's do first: build the seccomp program
    (before the root changes: nothing can be imported from the host after), take the pty
    as the controlling terminal, join the cgroup. Returns the program (None: privileged)."""
    program = None if plan.get("privileged") else seccomp.build_filter(plan["capabilities"])
    if plan.get("tty"):
        os.setsid()  # a session of its own, with the pty on fd 0 as its terminal
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)
    for procs in plan.get("cgroup_procs") or []:
        with open(procs, "w") as handle:
            handle.write("0")  # "0": the writing process itself
    return program


def _child(plan, error_w):
    """The container's PID 1: its cgroup and namespaces, its root, then exec."""
    try:
        program = _enter(plan)
        # Unshared here, not in the launcher: pivot_root changes the root of every
        # process in the mount namespace, and the cgroup namespace is rooted at the cgroup
        # the process is in when it is made.
        flags = NAMESPACES | (S.CLONE_NEWNET if plan.get("network_mode") == "none" else 0)
        S.unshare(flags)
        if plan.get("netns"):  # its network's namespace, made by the payload
            S.setns_path(plan["netns"], S.CLONE_NEWNET)
            for settings in (plan.get("network_settings") or {}).values():
                # its own network (not one shared with container:NAME): the inside is ours
                netlink.configure(settings["IPAddress"], settings["IPPrefixLen"],
                                  settings["Gateway"])
        rootfs.setup(plan)
        _become(plan, program)
        if plan.get("init"):
            command_pid = os.fork()
            if command_pid:
                _drop_inherited()  # error_w too: the command's copy reports a failed exec
                _init(command_pid)
        _exec(plan)
    except BaseException as exc:
        _fail(error_w, exc)


class LaunchError(Exception):
    """The container's process could not be started (the message says why)."""


def _own_children(own):
    """Make the caller's next children in its own PID namespace (``own``) again. Were that
    to fail, each later fork would make a process in the container's namespace, or fail
    once it is gone: such a process can start no more containers, and ends here (the
    payload starts a new monitor, which takes up the running containers)."""
    try:
        S.setns(own, S.CLONE_NEWPID, "pid")
    except OSError:
        os._exit(EXEC_FAILED)


def start(plan, stdio=None):
    """Start the container's PID 1 and return its pid (on this host).

    ``stdio``: three descriptors to become its stdin, stdout and stderr (else it keeps
    the caller's 0, 1 and 2).

    PID 1 is the caller's own child: the caller unshares the PID namespace for its next
    child, forks, and joins its own PID namespace again for every child after (setns may
    enter the caller's active namespace, which makes unshare possible once more). A
    process in between, forked only to unshare and exit, cost a fork and an exit of the
    caller's whole address space per container. Raises LaunchError with PID 1's own
    message when it fails before exec.
    """
    error_r, error_w = os.pipe2(os.O_CLOEXEC)
    own, pid = None, -1
    try:
        own = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
        S.unshare(S.CLONE_NEWPID)
        try:
            pid = os.fork()
        finally:
            if pid != 0:  # the caller, whether or not the fork worked
                _own_children(own)
    except OSError as exc:
        for fd in (error_r, error_w, own):
            if fd is not None:
                os.close(fd)
        raise LaunchError(f"cannot start the container: {exc}") from None
    if pid == 0:
        try:
            os.close(error_r)
            os.close(own)
            if stdio is not None:
                for target, fd in enumerate(stdio):
                    os.dup2(fd, target)
        except BaseException as exc:
            _fail(error_w, exc)  # never back into the caller's code: it would run twice
        _child(plan, error_w)
    os.close(own)
    os.close(error_w)
    failure = _read_all(error_r).decode("utf-8", "replace")
    os.close(error_r)
    if failure:
        os.waitpid(pid, 0)
        raise LaunchError(failure)
    return pid


# The namespaces an exec joins, the mount namespace last: joining it changes the root.
EXEC_NAMESPACES = (("ipc", S.CLONE_NEWIPC), ("uts", S.CLONE_NEWUTS), ("net", S.CLONE_NEWNET),
                   ("cgroup", S.CLONE_NEWCGROUP), ("mnt", S.CLONE_NEWNS))


def _exec_child(plan, fds, error_w):
    """A process of ``docker exec``: the container's cgroup and namespaces, its user,
    capabilities and seccomp filter, then exec."""
    try:
        program = _enter(plan)
        for name, nstype in EXEC_NAMESPACES:
            S.setns(fds[name], nstype, name)
        _drop_privileges(plan, program)
        _exec(plan)
    except BaseException as exc:
        _fail(error_w, exc)


def start_exec(plan, stdio=None):
    """Start a process in the running container whose PID 1 is ``plan["pid"]``; return
    its pid (``stdio``: its stdin, stdout and stderr, as for start). It joins the
    container's PID namespace for the process it forks: call it from a process that
    makes no other children afterwards. Raises LaunchError when it cannot."""
    target = plan["pid"]
    fds = {}
    try:
        for name, _ in EXEC_NAMESPACES + (("pid", S.CLONE_NEWPID),):
            fds[name] = os.open(f"/proc/{target}/ns/{name}", os.O_RDONLY | os.O_CLOEXEC)
        S.setns(fds["pid"], S.CLONE_NEWPID, "pid")  # for the child made next
        error_r, error_w = os.pipe2(os.O_CLOEXEC)
        pid = os.fork()
    except OSError as exc:
        for fd in fds.values():
            os.close(fd)
        raise LaunchError(f"cannot enter the container: {exc}") from None
    if pid == 0:
        try:
            os.close(error_r)
            if stdio is not None:
                for target_fd, fd in enumerate(stdio):
                    os.dup2(fd, target_fd)
        except BaseException as exc:
            _fail(error_w, exc)
        _exec_child(plan, fds, error_w)
    os.close(error_w)
    for fd in fds.values():
        os.close(fd)
    failure = _read_all(error_r).decode("utf-8", "replace")
    os.close(error_r)
    if failure:
        os.waitpid(pid, 0)
        raise LaunchError(failure)
    return pid


def main():
    """Entry point of the foreground launcher process (a container, or an exec in one)."""
    plan = jsonwire.loads(_read_all(PLAN_FD).decode())
    os.close(PLAN_FD)
    try:
        pid = start_exec(plan) if plan.get("mode") == "exec" else start(plan)
    except LaunchError as exc:
        _event(error=str(exc))
        sys.exit(1)
    _event(started=pid)
    _, status = os.waitpid(pid, 0)
    _event(exited=tools.exit_code(status))

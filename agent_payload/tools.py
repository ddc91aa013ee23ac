"""The host's tools (ip, iptables, nft, modprobe): found on PATH, run, output captured.

Networks and published ports run a handful of these per container. subprocess (with
the locale, selectors, signal and threading modules it imports) and shutil cost a
payload more CPU to import than the runs themselves, so this starts them with
posix_spawn and reads their output with poll, and looks each tool up once per process.
"""

import os
import select

_DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_found = {}


class Completed:
    """A finished run: ``returncode`` and its ``stdout`` and ``stderr`` as text."""

    def __init__(self, returncode, stdout, stderr):
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr


def forget():
    """Look every tool up again (a kept payload process, a new command)."""
    _found.clear()


def which(name):
    """The path of executable ``name`` on PATH (or the usual sbin and bin), else None."""
    if name not in _found:
        path = None
        for directory in (os.environ.get("PATH") or _DEFAULT_PATH).split(os.pathsep):
            candidate = os.path.join(directory or ".", name)
            if os.access(candidate, os.X_OK) and os.path.isfile(candidate):
                path = candidate
                break
        _found[name] = path
    return _found[name]


def run(argv, stdin=None):
    """Run ``argv`` with ``stdin`` (text) as its input; return a Completed.

    A missing program is returncode 127 with the reason in stderr, as a shell says it."""
    program = which(argv[0]) if "/" not in argv[0] else argv[0]
    if program is None:
        return Completed(127, "", f"{argv[0]}: command not found")
    pipes = [os.pipe() for _ in range(3)]  # stdin, stdout, stderr
    (in_r, in_w), (out_r, out_w), (err_r, err_w) = pipes
    actions = [(os.POSIX_SPAWN_DUP2, in_r, 0), (os.POSIX_SPAWN_DUP2, out_w, 1),
               (os.POSIX_SPAWN_DUP2, err_w, 2)]
    actions += [(os.POSIX_SPAWN_CLOSE, fd) for pair in pipes for fd in pair]
    try:
        pid = os.posix_spawn(program, list(argv), dict(os.environ), file_actions=actions)
    except OSError as exc:
        for pair in pipes:
            for fd in pair:
                os.close(fd)
        return Completed(126, "", f"{argv[0]}: {exc.strerror}")
    for fd in (in_r, out_w, err_w):
        os.close(fd)
    output = _exchange(in_w, (stdin or "").encode(), out_r, err_r)
    _, status = os.waitpid(pid, 0)
    return Completed(exit_code(status), output[out_r].decode(errors="replace"),
                     output[err_r].decode(errors="replace"))


def _exchange(in_w, data, out_r, err_r):
    """Write ``data`` to the child's stdin while reading its stdout and stderr to their
    ends (both at once: a child blocked on a full pipe would wait for us forever)."""
    output = {out_r: bytearray(), err_r: bytearray()}
    poller = select.poll()
    view = memoryview(data)
    if view:
        poller.register(in_w, select.POLLOUT)
    else:
        os.close(in_w)
    for fd in output:
        poller.register(fd, select.POLLIN)
    remaining = len(output) + (1 if view else 0)
    while remaining:
        for fd, _ in poller.poll():
            if fd == in_w:
                try:  # at most PIPE_BUF: what POLLOUT promises to take without blocking
                    view = view[os.write(in_w, view[:select.PIPE_BUF]):]
                except BrokenPipeError:
                    view = view[:0]
                if not view:
                    poller.unregister(in_w)
                    os.close(in_w)
                    remaining -= 1
                continue
            chunk = os.read(fd, 65536)
            if chunk:
                output[fd] += chunk
            else:
                poller.unregister(fd)
                os.close(fd)
                remaining -= 1
    return output


def exit_code(status):
    """A wait status as an exit code, negative when a signal ended the process (as
    subprocess and Docker report it; os.waitstatus_to_exitcode is 3.9+)."""
    if os.WIFSIGNALED(status):
        return -os.WTERMSIG(status)
    return os.WEXITSTATUS(status)

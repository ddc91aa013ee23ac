"""command: run a program on the host without a shell, as Ansible's command module does.

No pipes, redirections, globbing or variables of a shell (use ``shell`` for those). The
command runs in its own process group; cancelling the request kills the whole group.
When it runs the task is always changed (adjust with ``changed_when``); a non-zero exit
status fails it with ``msg: non-zero return code``.

Options:
  _raw_params: the free-form command line (``command: ls -l /tmp``), split into words
      like a shell would (shlex), without any other shell processing.
  cmd: the command line as an option, split the same way.
  argv: the command as a list of arguments, not split at all. Exactly one of
      _raw_params, cmd and argv is required.
  chdir: change into this directory before running the command.
  creates: a path or glob (relative ones are taken from chdir); when it matches, the
      command is not run and the task is not changed.
  removes: a path or glob; when nothing matches, the command is not run.
  stdin: text fed to the command's standard input (otherwise it reads /dev/null).
  stdin_add_newline: append a newline to stdin (default yes).
  strip_empty_ends: strip trailing newlines from stdout and stderr (default yes).
  expand_argument_vars: expand ~ and $VARIABLES in the arguments, as Ansible does
      (default yes).

Check mode does not run the command: with creates or removes the task reports whether
it would run (changed); without them it is skipped.

Returns cmd, rc, stdout, stderr, stdout_lines, stderr_lines, start, end, delta and msg.
Each stream keeps at most its first OUTPUT_LIMIT bytes (a warning says so).
"""

import os
import select
import time

from agent_payload import jsonwire, protocol, threads
from agent_payload.modules._fileattrs import expand

ARGUMENT_SPEC = {
    "_raw_params": {"type": "str"},
    "cmd": {"type": "str"},
    "argv": {"type": "list", "elements": "str"},
    "chdir": {"type": "path"},
    "creates": {"type": "path"},
    "removes": {"type": "path"},
    "stdin": {"type": "str"},
    "stdin_add_newline": {"type": "bool", "default": True},
    "strip_empty_ends": {"type": "bool", "default": True},
    "expand_argument_vars": {"type": "bool", "default": True},
}

POLL = 0.05  # seconds between looks at the cancel flag
GRACE = 1.0  # seconds between SIGTERM and SIGKILL on cancel
OUTPUT_LIMIT = 1024 * 1024  # bytes kept per stream
# What the result may take of one protocol frame (stdout appears twice: text and lines).
RESULT_BUDGET = protocol.MAX_BODY * 3 // 4


class _Output:
    """One stream's output: the first ``limit`` bytes kept, the rest only counted."""

    def __init__(self, limit=OUTPUT_LIMIT):
        self.limit = limit
        self.data = bytearray()
        self.total = 0

    def add(self, chunk):
        self.total += len(chunk)
        room = self.limit - len(self.data)
        if room > 0:
            self.data += chunk[:room]


class _Child:
    """A started command in its own session, with its stdout and stderr pipes.

    Without chdir it is started with posix_spawn, which needs neither the subprocess
    module (threading, locale, selectors... at every payload start) nor a fork of this
    multi-threaded process; with chdir, subprocess does the work.
    """

    def __init__(self, argv, chdir, with_stdin):
        self.returncode = None
        self._popen = None
        if chdir or not hasattr(os, "posix_spawnp"):
            import subprocess
            self._popen = subprocess.Popen(
                argv, cwd=chdir or None, start_new_session=True,
                stdin=subprocess.PIPE if with_stdin else subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            self.pid = self._popen.pid
            # Plain descriptors of our own, as on the posix_spawn path.
            self.stdin, self.stdout, self.stderr = (
                _take_fd(self._popen.stdin), _take_fd(self._popen.stdout),
                _take_fd(self._popen.stderr))
            return
        child_in, self.stdin = os.pipe() if with_stdin else (None, None)
        self.stdout, out_w = os.pipe()
        self.stderr, err_w = os.pipe()
        ours = [fd for fd in (self.stdin, self.stdout, self.stderr) if fd is not None]
        actions = [(os.POSIX_SPAWN_DUP2, out_w, 1), (os.POSIX_SPAWN_DUP2, err_w, 2)]
        if child_in is not None:
            actions.append((os.POSIX_SPAWN_DUP2, child_in, 0))
        else:
            actions.append((os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0))
        actions += [(os.POSIX_SPAWN_CLOSE, fd) for fd in ours]
        try:
            self.pid = os.posix_spawnp(argv[0], argv, _environment(), file_actions=actions,
                                       setsid=True)
        except BaseException:
            for fd in ours:
                os.close(fd)
            raise
        finally:
            for fd in (child_in, out_w, err_w):
                if fd is not None:
                    os.close(fd)

    def poll(self):
        """The exit code once the command has ended (negative: killed by that signal)."""
        if self.returncode is None:
            if self._popen is not None:
                self.returncode = self._popen.poll()
            else:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
                if pid:
                    self.returncode = (os.WEXITSTATUS(status) if os.WIFEXITED(status)
                                       else -os.WTERMSIG(status))
        return self.returncode

    def wait(self, timeout=None, ctx=None):
        """Wait for the end (up to ``timeout`` s); False when cancelled or still running."""
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.0001  # a command whose pipes just closed is usually gone a moment later
        while self.poll() is None:
            if ctx is not None and ctx.cancelled():
                return False
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(delay)
            delay = min(delay * 2, POLL)
        return True

    def close(self):
        for fd in (self.stdout, self.stderr):
            try:
                os.close(fd)
            except OSError:
                pass


_ENVIRONMENT = []


def _environment():
    """The payload's environment as a plain dict, made once: posix_spawn converts an
    os.environ mapping entry by entry on every call."""
    if not _ENVIRONMENT:
        _ENVIRONMENT.append(dict(os.environ))
    return _ENVIRONMENT[0]


def _take_fd(pipe):
    """A duplicate of a Popen pipe's descriptor, the pipe object itself closed."""
    if pipe is None:
        return None
    fd = os.dup(pipe.fileno())
    pipe.close()
    return fd


def _drain(child, ctx, outputs):
    """Read stdout and stderr until both end, then reap the process; False if cancelled.

    One poll loop in the request's own thread: no reader threads to start per
    command, which matters when a playbook runs many short commands on many hosts.
    Children that keep a pipe open keep the command running, as in Ansible.
    """
    poller = select.poll()
    streams = {child.stdout: outputs[0], child.stderr: outputs[1]}
    for fd in streams:
        poller.register(fd, select.POLLIN)
    while streams:
        if ctx.cancelled():
            return False
        for fd, _ in poller.poll(int(POLL * 1000)):
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                chunk = b""
            if chunk:
                streams[fd].add(chunk)
            else:
                poller.unregister(fd)
                del streams[fd]
    return child.wait(ctx=ctx)


def _feed(fd, data):
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    except OSError:
        pass
    finally:
        try:
            os.close(fd)
        except OSError:
            pass


def _signal_group(child, signum):
    try:
        os.killpg(child.pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def _kill_group(child):
    """SIGTERM the command's process group, SIGKILL it if it lingers."""
    import signal  # only a cancel needs it (it imports enum)

    _signal_group(child, signal.SIGTERM)
    if not child.wait(GRACE):
        _signal_group(child, signal.SIGKILL)
        child.wait()


def _cancelled(ctx, child):
    _kill_group(child)
    child.close()
    ctx.check_cancelled()  # raises serve.Cancelled: the server answers "cancelled"
    return {"failed": True, "changed": False, "msg": "cancelled", "rc": child.returncode}


def _text(data, strip):
    text = bytes(data).decode("utf-8", errors="replace")
    return text.rstrip("\r\n") if strip else text


def _fit(result, warnings):
    """Shrink stdout/stderr until the result fits in one protocol frame."""
    while len(jsonwire.dumps(result)) > RESULT_BUDGET:
        longest = max(("stdout", "stderr"), key=lambda k: len(result[k]))
        half = len(result[longest]) // 2
        result[longest] = result[longest][:half]
        result[longest + "_lines"] = result[longest].splitlines()
        warnings.append(f"{longest} cut to {half} characters to fit the result")


def skip_reason(params, chdir, check_mode):
    """The Ansible message and stdout when creates/removes say not to run, else None."""
    would = "Would" if check_mode else "Did"
    creates, removes = expand(params.get("creates")), expand(params.get("removes"))
    if creates or removes:
        import glob  # only creates/removes need it
    if creates:
        pattern = os.path.join(chdir, creates) if chdir else creates
        if glob.glob(pattern):
            return (f"{would} not run command since '{creates}' exists",
                    f"skipped, since {creates} exists")
    if removes:
        pattern = os.path.join(chdir, removes) if chdir else removes
        if not glob.glob(pattern):
            return (f"{would} not run command since '{removes}' does not exist",
                    f"skipped, since {removes} does not exist")
    return None


def execute(params, ctx, args, shell=None):
    """Run ``args`` (a list, or with ``shell`` a string for ``shell -c``); the shared body
    of the command and shell modules."""
    result = {"changed": False, "cmd": args, "rc": None, "stdout": "", "stderr": "",
              "start": None, "end": None, "delta": None, "msg": ""}
    chdir = expand(params.get("chdir"))
    if chdir and not os.path.isdir(chdir):
        why = "No such file or directory" if not os.path.exists(chdir) else "Not a directory"
        result.update(failed=True, msg=f"Unable to change directory before execution: "
                                       f"{chdir}: {why}")
        return result
    skip = skip_reason(params, chdir, ctx.check_mode)
    if skip:
        result.update(msg=skip[0], stdout=skip[1], rc=0,
                      stdout_lines=[skip[1]], stderr_lines=[])
        return result
    if ctx.check_mode:
        result.update(rc=0, msg="Command would have run if not in check mode",
                      stdout_lines=[], stderr_lines=[])
        if params.get("creates") is None and params.get("removes") is None:
            result["skipped"] = True
        else:
            result["changed"] = True
        return result

    stdin = params.get("stdin")
    data = None
    if stdin is not None:
        data = stdin.encode("utf-8", errors="surrogateescape")
        if data and params.get("stdin_add_newline", True):
            data += b"\n"
    argv = [shell, "-c", args] if shell else args
    start = time.time()
    try:
        child = _Child(argv, chdir, data is not None)
    except OSError as exc:
        result.update(failed=True, rc=exc.errno or 2, msg=str(exc),
                      stdout_lines=[], stderr_lines=[])
        return result
    outputs = [_Output(), _Output()]
    if data is not None:
        threads.start(_feed, child.stdin, data)
    if not _drain(child, ctx, outputs):
        return _cancelled(ctx, child)
    child.close()
    end = time.time()

    strip = params.get("strip_empty_ends", True)
    warnings = []
    for key, output in zip(("stdout", "stderr"), outputs):
        result[key] = _text(output.data, strip)
        result[key + "_lines"] = result[key].splitlines()
        if output.total > len(output.data):
            warnings.append(f"{key} cut to its first {len(output.data)} of "
                            f"{output.total} bytes")
    result.update(changed=True, rc=child.returncode, start=_timestamp(start),
                  end=_timestamp(end), delta=_duration(end - start))
    _fit(result, warnings)
    if warnings:
        result["warnings"] = warnings
    if child.returncode != 0:
        result.update(failed=True, msg="non-zero return code")
    return result


def _timestamp(seconds):
    """Local time as Ansible prints it (str of a datetime), without importing datetime."""
    micros = int(round(seconds % 1 * 1e6))
    whole = int(seconds)
    if micros == 1000000:
        whole, micros = whole + 1, 0
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(whole)) + f".{micros:06d}"


def _duration(seconds):
    """A duration as str of a timedelta: H:MM:SS.ffffff."""
    micros = max(0, int(round(seconds * 1e6)))
    whole, micros = divmod(micros, 1000000)
    minutes, secs = divmod(whole, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}.{micros:06d}"


# Characters after which shlex.split and a plain split on its whitespace can differ.
_SHELL_QUOTING = frozenset("'\"\\")


def split_command_line(line):
    """shlex.split(line), without importing shlex (and re, enum) for the common line that
    has no quotes or backslashes: then shlex only splits on its four whitespace chars."""
    if _SHELL_QUOTING.isdisjoint(line):
        words = line.replace("\t", " ").replace("\r", " ").replace("\n", " ").split(" ")
        return [word for word in words if word]
    import shlex

    return shlex.split(line)


def command_args(params):
    """The argument list from _raw_params, cmd or argv; (None, error) when not exactly one."""
    given = [name for name in ("_raw_params", "cmd", "argv") if params.get(name)]
    if not given:
        return None, "no command given"
    if len(given) > 1:
        return None, "parameters are mutually exclusive: " + "|".join(given)
    value = params[given[0]]
    if given[0] == "argv":
        args = list(value)
    else:
        try:
            args = split_command_line(value)
        except ValueError as exc:
            return None, f"cannot split the command line: {exc}"
    if params.get("expand_argument_vars", True):
        args = [os.path.expanduser(os.path.expandvars(arg)) for arg in args]
    if not args:
        return None, "no command given"
    return args, None


def run(params, ctx):
    """Run the command unless creates/removes or check mode say not to."""
    args, error = command_args(params)
    if error:
        return {"failed": True, "changed": False, "msg": error, "rc": None, "cmd": None}
    return execute(params, ctx, args)

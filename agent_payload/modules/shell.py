"""shell: run a command line through a shell on the host, as Ansible's shell module does.

Like ``command`` (same process group, cancellation, results and check mode), but the
line goes to ``/bin/sh -c`` (or ``executable``), so pipes, redirections, globs and
variables work. Quote what comes from variables (``{{ x | quote }}``).

Options:
  _raw_params: the free-form command line (``shell: ls /tmp | wc -l``).
  cmd: the command line as an option. Exactly one of _raw_params and cmd is required.
  executable: the shell to run the line with (default /bin/sh); it gets ``-c LINE``.
  chdir: change into this directory before running the command.
  creates: a path or glob (relative ones are taken from chdir); when it matches, the
      command is not run and the task is not changed.
  removes: a path or glob; when nothing matches, the command is not run.
  stdin: text fed to the command's standard input (otherwise it reads /dev/null).
  stdin_add_newline: append a newline to stdin (default yes).
  strip_empty_ends: strip trailing newlines from stdout and stderr (default yes).

Returns cmd (the line), rc, stdout, stderr, stdout_lines, stderr_lines, start, end,
delta and msg; a non-zero exit status fails the task with ``msg: non-zero return code``.
"""

from agent_payload.modules import command
from agent_payload.modules._fileattrs import expand

ARGUMENT_SPEC = {
    "_raw_params": {"type": "str"},
    "cmd": {"type": "str"},
    "executable": {"type": "path"},
    "chdir": {"type": "path"},
    "creates": {"type": "path"},
    "removes": {"type": "path"},
    "stdin": {"type": "str"},
    "stdin_add_newline": {"type": "bool", "default": True},
    "strip_empty_ends": {"type": "bool", "default": True},
}

DEFAULT_SHELL = "/bin/sh"


def run(params, ctx):
    """Run the line with the shell unless creates/removes or check mode say not to."""
    given = [name for name in ("_raw_params", "cmd") if params.get(name)]
    if len(given) != 1:
        msg = ("no command given" if not given
               else "parameters are mutually exclusive: _raw_params|cmd")
        return {"failed": True, "changed": False, "msg": msg, "rc": None, "cmd": None}
    shell = expand(params.get("executable")) or DEFAULT_SHELL
    return command.execute(params, ctx, params[given[0]], shell=shell)

"""Run ansible / ansible-inventory command lines quickly, for the parity tests.

Started as ``python3 ansible_runner.py``; reads one JSON request per line on
stdin: ``{"argv": ["ansible-inventory", "-i", "X", "--list"], "cwd": "/tmp/x"}``
and answers one JSON line: ``{"rc": 0, "stdout": "...", "stderr": "..."}``.

Importing ansible costs most of the ~0.5 s an ``ansible`` call takes, so this
process imports the command-line entry points once and forks a child for each
request. The child runs the real CLI ``main()`` with fresh (copy-on-write)
state and its stdout/stderr sent to files, exactly as a separate process
would; only the interpreter start-up is shared. Set FLEET_PARITY_SUBPROCESS=1
in the tests to bypass this and spawn the real executables instead.
"""

import json
import os
import sys
import tempfile


def _run_child(argv, cwd, out_path, err_path):
    out_fd = os.open(out_path, os.O_WRONLY | os.O_TRUNC)
    err_fd = os.open(err_path, os.O_WRONLY | os.O_TRUNC)
    null_fd = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null_fd, 0)
    os.dup2(out_fd, 1)
    os.dup2(err_fd, 2)
    code = 0
    try:
        os.chdir(cwd)
        if argv[0] == "ansible-inventory":
            from ansible.cli.inventory import main
        elif argv[0] == "ansible":
            from ansible.cli.adhoc import main
        else:
            raise SystemExit(f"unsupported command {argv[0]!r}")
        sys.argv = list(argv)
        main(list(argv))
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if exc.code is not None and not isinstance(exc.code, int):
            print(exc.code, file=sys.stderr)
    except BaseException as exc:  # report anything, never fall back into the loop
        print(f"runner: {type(exc).__name__}: {exc}", file=sys.stderr)
        code = 250
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def main():
    # Import what the children need once, before forking.
    import ansible.cli.adhoc  # noqa: F401
    import ansible.cli.inventory  # noqa: F401

    protocol_out = os.fdopen(os.dup(1), "w")
    tmpdir = tempfile.mkdtemp(prefix="fleet-ansible-runner-")
    out_path = os.path.join(tmpdir, "stdout")
    err_path = os.path.join(tmpdir, "stderr")
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        for path in (out_path, err_path):
            open(path, "w").close()
        pid = os.fork()
        if pid == 0:
            _run_child(request["argv"], request["cwd"], out_path, err_path)
        _, status = os.waitpid(pid, 0)
        with open(out_path, encoding="utf-8", errors="replace") as fh:
            stdout = fh.read()
        with open(err_path, encoding="utf-8", errors="replace") as fh:
            stderr = fh.read()
        reply = {"rc": os.waitstatus_to_exitcode(status), "stdout": stdout, "stderr": stderr}
        protocol_out.write(json.dumps(reply) + "\n")
        protocol_out.flush()
    for path in (out_path, err_path):
        os.unlink(path)
    os.rmdir(tmpdir)


if __name__ == "__main__":
    main()

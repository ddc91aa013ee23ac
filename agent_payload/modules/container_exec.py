"""container_exec: run a command in a running container, as docker exec does.

The command joins the container's namespaces (mount, PID, UTS, IPC, network, cgroup) and
cgroup, and runs with its capabilities and seccomp filter, as the container's user
unless ``user`` says otherwise.

Options:
  name: the container (a name or an id).
  command: the command (a list, or a string split like a shell).
  env: a mapping of variables added to the container's.
  user: name, uid, name:group or uid:gid, looked up in the image.
  working_dir: where it runs (default: the container's).
  tty: run it on a terminal (a pty on the host) and stream: the request's input goes to
      the terminal, what the terminal shows comes back as the request's output, a
      resize message sets its size; for `fleet exec -t`.
  rows, cols: the terminal's first size (with tty).
  store: the content store's root (default /var/lib/fleet).

Returns rc, and stdout and stderr unless tty; a non-zero rc fails the task, as command
does.
"""

import os
import select
import struct

from agent_payload import jsonwire, threads
from agent_payload.oci.store import Store, StoreError
from agent_payload.runtime import containers
from agent_payload.runtime.run import RunError, exec_in, start_exec_on_terminal

ARGUMENT_SPEC = {
    "name": {"type": "str", "required": True},
    "command": {"type": "raw", "required": True},
    "env": {"type": "dict", "default": {}},
    "user": {"type": "str"},
    "working_dir": {"type": "str"},
    "tty": {"type": "bool", "default": False},
    "rows": {"type": "int", "default": 24},
    "cols": {"type": "int", "default": 80},
    "store": {"type": "path", "default": "/var/lib/fleet"},
}


def _set_size(fd, rows, cols):
    import fcntl
    import termios

    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def _feed_terminal(ctx, master):
    """The request's input stream to the terminal, until it ends or the command does."""
    while True:
        try:
            data = ctx.read_data()
        except threads.InputTimeout:
            continue
        if not data:
            try:
                os.write(master, b"\x04")  # end of input, as a terminal says it: ^D
            except OSError:
                pass
            return
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(master, view):]
        except OSError:
            return


def _on_terminal(store, found, pid, params, ctx):
    master, slave = os.openpty()
    try:
        _set_size(master, params["rows"], params["cols"])
        launcher, events_r = start_exec_on_terminal(store, found[1], pid, params, slave)
    except BaseException:
        os.close(master)
        raise
    finally:
        os.close(slave)
    threads.start(_feed_terminal, ctx, master)
    poller = select.poll()
    poller.register(master, select.POLLIN)
    poller.register(events_r, select.POLLIN)
    ended, reported = False, b""
    while not ended:
        for fd, _ in poller.poll(50):
            if fd == events_r:
                chunk = os.read(events_r, 65536)
                reported += chunk
                ended = not chunk  # the launcher is done when it closes its events
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: no process holds the terminal any more
                chunk = b""
            if chunk:
                ctx.send_data(chunk)
            else:
                poller.unregister(master)
        size = ctx.extra.pop("resize", None)
        if size and all(size):
            _set_size(master, *size)
        if ctx.cancelled():
            break
    while True:  # what the command wrote last
        try:
            chunk = os.read(master, 65536) if select.select([master], [], [], 0)[0] else b""
        except OSError:
            chunk = b""
        if not chunk:
            break
        ctx.send_data(chunk)
    ctx.send_eof()
    os.close(events_r)
    events = [jsonwire.loads(line) for line in reported.decode().splitlines() if line]
    os.waitpid(launcher, 0)
    os.close(master)
    errors = [e["error"] for e in events if "error" in e]
    if errors:
        raise RunError(errors[0])
    exited = [e["exited"] for e in events if "exited" in e]
    return {"rc": exited[0] if exited else -1}


def run(params, ctx):
    """Run the command in the container."""
    name = params["name"]
    if ctx.check_mode:
        return {"changed": True, "msg": f"would run a command in {name}"}
    try:
        store = Store(params["store"])
        found = containers.find(store, name)
        if found is None:
            return {"failed": True, "changed": False, "msg": f"no such container: {name}"}
        state = containers.state(found[0])
        if state.get("status") != "running" or not state.get("pid"):
            return {"failed": True, "changed": False,
                    "msg": f"container {name} is not running"}
        if params["tty"]:
            outcome = _on_terminal(store, found, state["pid"], params, ctx)
        else:
            outcome = exec_in(store, found[1], state["pid"], params)
    except (RunError, StoreError, OSError) as exc:
        return {"failed": True, "changed": False, "msg": f"{name}: {exc}"}
    outcome["changed"] = True
    if outcome["rc"] != 0:
        outcome.update(failed=True, msg=f"the command exited with {outcome['rc']}")
    return outcome

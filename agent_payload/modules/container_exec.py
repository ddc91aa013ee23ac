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


from agent_payload.oci.store import Store, StoreError
from agent_payload.runtime import containers, terminal
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
            outcome = terminal.run_on_terminal(
                ctx, params, lambda slave: start_exec_on_terminal(store, found[1],
                                                                  state["pid"], params,
                                                                  slave))
        else:
            outcome = exec_in(store, found[1], state["pid"], params)
    except (RunError, StoreError, OSError) as exc:
        return {"failed": True, "changed": False, "msg": f"{name}: {exc}"}
    outcome["changed"] = True
    if outcome["rc"] != 0:
        outcome.update(failed=True, msg=f"the command exited with {outcome['rc']}")
    return outcome

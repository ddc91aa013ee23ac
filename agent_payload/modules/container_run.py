"""container_run: run a container in the foreground and return its exit code and output.

The engine of `fleet run --rm`: create, start, wait, remove. Detached containers, their
supervision and the state-based ``container`` module come next, on the same runtime.

Options:
  image: the image (reference or id) in the host's store (pull it first).
  command: the command (a list, or a string split like a shell), replacing the image's
      Cmd; entrypoint: replaces the image's Entrypoint (and drops its Cmd).
  env: a mapping of variables added to the image's Env.
  user: name, uid, name:group or uid:gid, looked up in the image.
  working_dir, hostname.
  memory, memory_swap: sizes as Docker reads them (512m, 1g; memory_swap is memory
      plus swap, -1 unlimited); cpus (a float); cpu_shares; pids_limit.
  cap_add, cap_drop: capability names (ALL too); privileged: every capability, no
      seccomp filter, nothing masked.
  no_new_privileges, read_only: as docker run's options.
  init: run a minimal init as PID 1 that reaps zombies and forwards signals.
  ulimits: docker's NAME=SOFT[:HARD] entries (capped at the host's hard limits).
  volumes: docker run -v entries: /host:/ctr[:ro] (the host dir is made if missing),
      name:/ctr[:ro] (a named volume under STORE/volumes, made on first use and filled
      with the image's content there), or /ctr (an anonymous volume, removed with the
      container); the image's Volumes get anonymous volumes.
  volumes_from: other containers (name[:ro|:rw]) whose volumes and binds to mount too.
  ports: docker run -p entries ([[HOST_IP:]HOST_PORT:]PORT[/udp]; no host port: a free
      one), published with the kernel's NAT (iptables or nftables) or, on a host with
      neither or a network that asks for it, a userland proxy; they need a network.
  publish_all: publish every exposed port (expose and the image's) on a free host port.
  expose: ports offered to linked containers (with the image's ExposedPorts).
  links: other containers (NAME[:ALIAS]): their address in /etc/hosts and, unless
      link_env is false, Docker's legacy link variables (ALIAS_PORT, ...). In a playbook
      a target on another host of the play is found by the controller and reached at
      that host's address on the ports it publishes.
  tmpfs: {path: mount options} of tmpfs mounts.
  network_mode: bridge (default: the default network, fleet0), none, host, the
      name of a network (made by the network module, or on first use), or
      container:NAME (share that container's network namespace).
  cgroup_parent: the cgroup the container's goes under (default fleet).
  store: the content store's root (default /var/lib/fleet).
  tty: give the container a terminal (a pty on the host, also its /dev/console) and
      stream it, as container_exec does; rows, cols: its first size. For `fleet run -t`.

Returns id, rc, stdout, stderr (not with tty) and oom_killed; a non-zero rc fails the
task, as command does; changed is true when the container ran.
"""

from agent_payload.runtime import terminal
from agent_payload.runtime.run import RunError
from agent_payload.runtime.run import run as run_container

# The options of a container, shared with the container module.
CONTAINER_OPTIONS = {
    "command": {"type": "raw"},
    "entrypoint": {"type": "raw"},
    "env": {"type": "dict", "default": {}},
    "user": {"type": "str"},
    "working_dir": {"type": "str"},
    "hostname": {"type": "str"},
    "memory": {"type": "str"},
    "memory_swap": {"type": "str"},
    "cpus": {"type": "float"},
    "cpu_shares": {"type": "int"},
    "pids_limit": {"type": "int"},
    "cap_add": {"type": "list", "elements": "str", "default": []},
    "cap_drop": {"type": "list", "elements": "str", "default": []},
    "privileged": {"type": "bool", "default": False},
    "no_new_privileges": {"type": "bool", "default": False},
    "read_only": {"type": "bool", "default": False},
    "init": {"type": "bool", "default": False},
    "ulimits": {"type": "list", "elements": "str", "default": []},
    "volumes": {"type": "list", "elements": "str", "default": []},
    "volumes_from": {"type": "list", "elements": "str", "default": []},
    "ports": {"type": "list", "elements": "str", "default": []},
    "expose": {"type": "list", "elements": "str", "default": []},
    "links": {"type": "list", "elements": "str", "default": []},
    "link_env": {"type": "bool", "default": True},
    "publish_all": {"type": "bool", "default": False},
    # links to containers on other hosts, found by the controller (fleet/links.py)
    "_remote_links": {"type": "list", "elements": "dict"},
    "tmpfs": {"type": "dict", "default": {}},
    "network_mode": {"type": "str", "default": "bridge"},
    "cgroup_parent": {"type": "str"},
    "store": {"type": "path", "default": "/var/lib/fleet"},
}
ARGUMENT_SPEC = dict(CONTAINER_OPTIONS, image={"type": "str", "required": True},
                     tty={"type": "bool", "default": False},
                     rows={"type": "int", "default": 24}, cols={"type": "int", "default": 80})


def run(params, ctx):
    """Run the container (check mode: say it would)."""
    if ctx.check_mode:
        return {"changed": True, "msg": f"would run a container of {params['image']}"}
    options = {key: value for key, value in params.items()
               if key not in ("image", "store", "tty", "rows", "cols") and value is not None}
    on_terminal = None
    if params["tty"]:
        def on_terminal(start):
            return terminal.run_on_terminal(ctx, params, start)
    try:
        outcome = run_container(params["store"], params["image"], options, on_terminal)
    except RunError as exc:
        return {"failed": True, "changed": False, "msg": str(exc)}
    outcome["changed"] = True
    if outcome["rc"] != 0:
        outcome["failed"] = True
        outcome["msg"] = ("the container was killed for lack of memory" if outcome["oom_killed"]
                          else f"the container exited with {outcome['rc']}")
    return outcome

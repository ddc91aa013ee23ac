"""fleet run: a container in the foreground on one host, as docker run --rm does."""

import sys

import click

from fleet.cli.common import inventory_option, load_inventory, output_option, print_json

# docker run's exit codes for failures that are not the container's own
EXIT_NOT_RUN, EXIT_NOT_FOUND = 125, 127


def exit_as(verb, host, rc=None, message=None):
    """Leave as docker run / exec do: the command's exit code (128 + N when signal N
    ended it), 127 when the command is not in the image, 125 for anything else."""
    if rc is not None:
        sys.exit(rc if rc >= 0 else 128 - rc)
    click.echo(f"fleet {verb}: {host}: {message}", err=True)
    sys.exit(EXIT_NOT_FOUND if "executable file not found" in str(message) else EXIT_NOT_RUN)


def parse_env(pairs):
    """-e NAME=VALUE options as a mapping (a one-line error for a malformed one)."""
    env = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise click.BadParameter(f"{pair!r} is not NAME=value", param_hint="-e")
        env[name] = value
    return env


def _tmpfs(items):
    mounts = {}
    for item in items:
        path, _, options = item.partition(":")
        mounts[path] = options
    return mounts


@click.command(context_settings={"ignore_unknown_options": False,
                                 "allow_interspersed_args": False})
@inventory_option
@click.argument("host")
@click.argument("image")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.option("--rm", "remove", is_flag=True,
              help="Remove the container when it exits (a foreground one always is).")
@click.option("-d", "--detach", is_flag=True,
              help="Run it in the background (supervised on the host); print its id.")
@click.option("-t", "--tty", is_flag=True,
              help="An interactive terminal (your keyboard in, its screen out).")
@click.option("--name", default=None, help="The detached container's name.")
@click.option("--restart", default="no", show_default=True,
              help="no, on-failure[:N], always or unless-stopped (with -d).")
@click.option("-e", "--env", "env", multiple=True, metavar="NAME=VALUE",
              help="Set a variable (repeatable).")
@click.option("--entrypoint", default=None, help="Replace the image's entrypoint.")
@click.option("-w", "--workdir", default=None, help="Working directory in the container.")
@click.option("-u", "--user", default=None, help="name, uid, name:group or uid:gid.")
@click.option("--hostname", default=None, help="The container's hostname.")
@click.option("--memory", "-m", default=None, help="Memory limit (e.g. 256m).")
@click.option("--memory-swap", default=None, help="Memory plus swap (-1: no swap limit).")
@click.option("--cpus", type=float, default=None, help="CPUs (a fraction is fine).")
@click.option("--cpu-shares", type=int, default=None, help="Relative CPU weight.")
@click.option("--pids-limit", type=int, default=None, help="Most processes at once.")
@click.option("--cap-add", multiple=True, help="Add a capability (repeatable).")
@click.option("--cap-drop", multiple=True, help="Drop a capability (repeatable, ALL too).")
@click.option("--privileged", is_flag=True, help="Every capability, no seccomp, no masks.")
@click.option("--read-only", is_flag=True, help="Mount the root filesystem read-only.")
@click.option("--ulimit", "ulimits", multiple=True, metavar="NAME=SOFT[:HARD]",
              help="A resource limit, e.g. nofile=1024:2048 (repeatable).")
@click.option("--init", "init", is_flag=True,
              help="A minimal init as PID 1 (reaps zombies, forwards signals).")
@click.option("--security-opt", multiple=True, metavar="no-new-privileges",
              help="Only no-new-privileges for now.")
@click.option("-v", "--volume", "volumes", multiple=True, metavar="SRC:DEST[:ro]",
              help="A host dir or named volume (or an anonymous one: DEST alone).")
@click.option("--tmpfs", multiple=True, metavar="PATH[:OPTIONS]", help="A tmpfs mount.")
@click.option("-p", "--publish", "ports", multiple=True, metavar="[HOST:]PORT[:PORT][/udp]",
              help="Publish a port on the host.")
@click.option("-P", "--publish-all", is_flag=True,
              help="Publish every exposed port on a free host port.")
@click.option("--expose", multiple=True, metavar="PORT[/udp]",
              help="Offer a port to linked containers (repeatable).")
@click.option("--link", "links", multiple=True, metavar="NAME[:ALIAS]",
              help="Link to another container on the host (repeatable).")
@click.option("--network", default="bridge", show_default=True,
              help="bridge (the default network), none, host, a network's name, or "
                   "container:NAME (share that container's).")
@output_option
def run(inventory_path, host, image, command, remove, detach, tty, name, restart, env,
        entrypoint, workdir, user, hostname, memory, memory_swap, cpus, cpu_shares,
        pids_limit, cap_add, cap_drop, privileged, read_only, ulimits, init, security_opt,
        volumes, tmpfs, ports, publish_all, expose, links, network, output):
    """Run COMMAND in a new container of IMAGE on inventory host HOST, in the foreground;
    print its output and exit with its exit code (125 when it could not run, 127 when
    the command is not in the image). Options go before HOST, as docker run's go before
    the image: what follows IMAGE is the command.

    \b
    Example:
      fleet run --rm -i inventories/lab.ini --memory 64m -e GREETING=hi \\
          lab01 10.231.0.1:5000/busybox:latest sh -c 'echo $GREETING from $(hostname)'
    """
    from fleet.remote import call_module
    from fleet.transport.session import RequestError
    from fleet.transport.ssh import TransportError

    if (name or restart != "no") and not detach:
        raise click.UsageError("--name and --restart go with -d (a foreground container is "
                               "removed when it ends)")
    bad = [opt for opt in security_opt if opt not in ("no-new-privileges",
                                                      "no-new-privileges:true")]
    if bad:
        raise click.BadParameter(f"{bad[0]!r}: only no-new-privileges for now",
                                 param_hint="--security-opt")
    inventory = load_inventory(inventory_path)
    if host not in inventory.hosts:
        raise click.ClickException(f"host {host!r} is not in {inventory_path}")
    params = {"image": image, "env": parse_env(env), "cap_add": list(cap_add),
              "cap_drop": list(cap_drop), "privileged": privileged, "read_only": read_only,
              "no_new_privileges": bool(security_opt), "tmpfs": _tmpfs(tmpfs),
              "volumes": list(volumes), "init": init, "ulimits": list(ulimits),
              "ports": list(ports), "publish_all": publish_all, "expose": list(expose),
              "links": list(links), "network_mode": network}
    optional = {"command": list(command) or None, "entrypoint": entrypoint,
                "working_dir": workdir, "user": user, "hostname": hostname,
                "memory": memory, "memory_swap": memory_swap, "cpus": cpus,
                "cpu_shares": cpu_shares, "pids_limit": pids_limit}
    params.update({key: value for key, value in optional.items() if value is not None})
    if detach:
        if tty:
            raise click.UsageError("-t goes with a foreground container (not -d)")
        _detached(inventory, host, params, name, restart, remove, output)
        return
    if tty:
        from fleet.terminal import interactive
        try:
            exit_as("run", host, interactive(inventory, host, "container_run", params))
        except (TransportError, RequestError, RuntimeError) as exc:
            exit_as("run", host, message=exc)
    try:
        result = call_module(inventory, host, "container_run", params, timeout=10.0)
    except (TransportError, RequestError) as exc:
        exit_as("run", host, message=exc)
    if output == "json":
        print_json({"host": host, **result})
    else:
        sys.stdout.write(result.get("stdout", ""))
        sys.stderr.write(result.get("stderr", ""))
    exit_as("run", host, result.get("rc"), result.get("msg", "the container did not run"))


def _detached(inventory, host, params, name, restart, remove, output):
    """docker run -d: the container module starts it; print its id."""
    import uuid

    from fleet.remote import call_module
    from fleet.transport.session import RequestError
    from fleet.transport.ssh import TransportError
    params = dict(params, name=name or "fleet-" + uuid.uuid4().hex[:8], state="started",
                  restart_policy=restart, auto_remove=remove)
    try:
        result = call_module(inventory, host, "container", params, timeout=10.0)
    except (TransportError, RequestError) as exc:
        exit_as("run", host, message=exc)
    if result.get("failed"):
        exit_as("run", host, message=result.get("msg"))
    if output == "json":
        print_json({"host": host, **result})
    else:
        click.echo(result["container"]["Id"])

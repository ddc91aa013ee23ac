"""fleet ps / inspect / logs / start / stop / rm: the containers on the hosts."""

import sys

import click

from fleet.cli.common import (
    forks_option,
    inventory_option,
    limit_option,
    load_inventory,
    output_option,
    print_json,
    select_hosts,
)
from fleet.cli.render import escape, print_table


def _host(inventory, inventory_path, host):
    if host not in inventory.hosts:
        raise click.ClickException(f"host {host!r} is not in {inventory_path}")
    return host


def _call(inventory, host, module, params):
    from fleet.containers import on_host
    from fleet.transport.session import RequestError
    from fleet.transport.ssh import TransportError
    try:
        result = on_host(inventory, host, module, params)
    except (TransportError, RequestError) as exc:
        raise click.ClickException(f"{host}: {exc}") from None
    if result.get("failed"):
        raise click.ClickException(f"{host}: {result.get('msg')}")
    return result


@click.command()
@inventory_option
@click.argument("pattern", default="all")
@click.option("-a", "--all", "include_stopped", is_flag=True, help="Stopped ones too.")
@limit_option
@forks_option
@output_option
def ps(inventory_path, pattern, include_stopped, limit, forks, output):
    """List the containers on PATTERN's hosts (running ones; -a for all).

    \b
    Example:
      fleet ps -i inventories/lab.ini -a
    """
    from fleet.containers import list_containers, ports_text, status_text
    inventory = load_inventory(inventory_path)
    outcomes = list_containers(inventory, select_hosts(inventory, pattern, limit),
                               include_stopped, forks)
    if output == "json":
        print_json({"hosts": [{"host": host, "ok": error is None,
                               "containers": found or [],
                               **({"msg": str(error)} if error else {})}
                              for host, (found, error) in outcomes.items()]})
        return
    rows, notes = [], []
    for host, (found, error) in outcomes.items():
        if error is not None:
            notes.append(f"[red]{escape(host)}: {escape(str(error))}[/red]")
            continue
        for c in found:
            command = " ".join([c["Path"]] + c["Args"])
            rows.append((host, c["Name"].lstrip("/"), c["Id"][:12], c["Config"]["Image"] or "",
                         command if len(command) <= 30 else command[:27] + "...",
                         (c.get("Created") or "")[:19].replace("T", " "),
                         status_text(c["State"]), ports_text(c["NetworkSettings"])))
    print_table(("host", "name", "id", "image", "command", "created", "status", "ports"),
                rows, notes=notes)
    if notes:
        sys.exit(4)


@click.command()
@inventory_option
@click.argument("host")
@click.argument("name")
def inspect(inventory_path, host, name):
    """Print Docker's container inspect JSON of container NAME on HOST.

    \b
    Example:
      fleet inspect -i inventories/lab.ini lab01 greeter
    """
    inventory = load_inventory(inventory_path)
    result = _call(inventory, _host(inventory, inventory_path, host), "container_info",
                   {"name": name})
    print_json(result["containers"])


@click.command()
@inventory_option
@click.argument("host")
@click.argument("name")
@click.option("-n", "--tail", type=int, default=None, help="Only the last N lines.")
@click.option("-t", "--timestamps", is_flag=True, help="Show each line's time.")
@click.option("-f", "--follow", is_flag=True, help="Keep printing while the container runs.")
def logs(inventory_path, host, name, tail, timestamps, follow):
    """Print the output of container NAME on HOST (stdout and stderr, in order).

    \b
    Example:
      fleet logs -i inventories/lab.ini --tail 20 -t -f lab01 greeter
    """
    import time

    from fleet.transport.session import RequestError, Session
    from fleet.transport.ssh import TransportError
    from fleet.transport.targets import target_for
    inventory = load_inventory(inventory_path)
    host = _host(inventory, inventory_path, host)
    params = {"name": name, "logs": True}
    if tail is not None:
        params["tail"] = tail
    try:
        session = Session.open(target_for(inventory, host, 10.0))
    except TransportError as exc:
        raise click.ClickException(f"{host}: {exc}") from None
    try:
        while True:
            result = session.call("container_info", params)
            if result.get("failed"):
                raise click.ClickException(f"{host}: {result.get('msg')}")
            for entry in result.get("logs", []):
                stream = sys.stderr if entry.get("stream") == "stderr" else sys.stdout
                stream.write((entry.get("time", "") + " " if timestamps else "")
                             + entry.get("log", ""))
                stream.flush()
            running = result["containers"][0]["State"]["Running"]
            if not follow or (not running and params.get("offset") == result["log_offset"]):
                return
            params = {"name": name, "logs": True, "offset": result["log_offset"]}
            time.sleep(0.3)
    except (TransportError, RequestError) as exc:
        raise click.ClickException(f"{host}: {exc}") from None
    except KeyboardInterrupt:
        pass
    finally:
        session.close()


def _lifecycle(state, verb, extra=None):
    @click.command(name=verb, help=f"""{verb.capitalize()} containers NAMES on HOST.

    \b
    Example:
      fleet {verb} -i inventories/lab.ini lab01 greeter""")
    @inventory_option
    @click.argument("host")
    @click.argument("names", nargs=-1, required=True)
    def command(inventory_path, host, names, **options):
        inventory = load_inventory(inventory_path)
        _host(inventory, inventory_path, host)
        for name in names:
            if state == "absent" and not options.get("force"):
                shown = _call(inventory, host, "container_info", {"name": name})
                if shown["containers"][0]["State"]["Running"]:
                    raise click.ClickException(
                        f"{host}: cannot remove running container {name}: stop it first "
                        "or use -f")
            params = {"name": name, "state": state}
            if options.get("time") is not None:
                params["stop_timeout"] = options["time"]
            if options.get("force"):
                params["force_kill"] = True
            result = _call(inventory, host, "container", params)
            click.echo(f"{host} {name}: {'done' if result.get('changed') else 'nothing to do'}")

    for option in extra or ():
        command = option(command)
    return command


start = _lifecycle("started", "start")
restart = _lifecycle("restarted", "restart", [click.option(
    "-t", "--time", type=int, default=None, help="Seconds before SIGKILL (default 10).")])
stop = _lifecycle("stopped", "stop", [click.option(
    "-t", "--time", type=int, default=None, help="Seconds before SIGKILL (default 10).")])
rm = _lifecycle("absent", "rm", [click.option(
    "-f", "--force", is_flag=True, help="Kill it at once if it is running.")])


@click.command(name="exec", context_settings={"allow_interspersed_args": False})
@inventory_option
@click.option("-e", "--env", "env", multiple=True, metavar="NAME=VALUE",
              help="Set a variable (repeatable).")
@click.option("-u", "--user", default=None, help="name, uid, name:group or uid:gid.")
@click.option("-w", "--workdir", default=None, help="Working directory in the container.")
@click.option("-t", "--tty", is_flag=True,
              help="An interactive terminal: your keyboard in, the terminal's screen out.")
@click.argument("host")
@click.argument("name")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def exec_command(inventory_path, env, user, workdir, tty, host, name, command):
    """Run COMMAND in the running container NAME on HOST (its namespaces, cgroup,
    capabilities and user); print its output and exit with its exit code. Options go
    before HOST.

    \b
    Example:
      fleet exec -i inventories/lab.ini lab01 greeter cat /etc/hostname
    """
    from fleet.cli.run import exit_as, parse_env
    from fleet.containers import on_host
    from fleet.transport.session import RequestError
    from fleet.transport.ssh import TransportError
    inventory = load_inventory(inventory_path)
    params = {"name": name, "command": list(command), "env": parse_env(env)}
    if user is not None:
        params["user"] = user
    if workdir is not None:
        params["working_dir"] = workdir
    host = _host(inventory, inventory_path, host)
    if tty:
        from fleet.terminal import interactive
        try:
            exit_as("exec", host, interactive(inventory, host, "container_exec", params))
        except (TransportError, RequestError, RuntimeError) as exc:
            exit_as("exec", host, message=exc)
    try:
        result = on_host(inventory, host, "container_exec", params)
    except (TransportError, RequestError) as exc:
        exit_as("exec", host, message=exc)
    sys.stdout.write(result.get("stdout", ""))
    sys.stderr.write(result.get("stderr", ""))
    exit_as("exec", host, result.get("rc"), result.get("msg", "the command did not run"))

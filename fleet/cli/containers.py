"""fleet ps / inspect / logs / top / start / stop / rm: the containers on the hosts."""

import sys

import click

from fleet.cli.common import (
    forks_option,
    hosts_options,
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


def _host_errors(errors):
    """One line for the hosts that could not answer: "lab02: ...; lab03: ..."."""
    return "; ".join(f"{host}: {error}" for host, error in errors.items())


def _warn_unanswered(errors, what):
    for host, error in errors.items():
        click.echo(f"warning: {host}: {error} ({what})", err=True)


def _service_cells(container):
    from fleet.containers import service_of
    return tuple(escape(part) for part in service_of(container))


@click.command()
@inventory_option
@click.argument("pattern", default="all")
@click.option("-a", "--all", "include_stopped", is_flag=True, help="Stopped ones too.")
@limit_option
@forks_option
@output_option
def ps(inventory_path, pattern, include_stopped, limit, forks, output):
    """List the containers on PATTERN's hosts (running ones; -a for all), grouped by
    project and service, then the services: their replicas running/wanted and hosts.

    A container's project and service are its fleet.project and fleet.service labels;
    one without them is shown as project "-" and its own service. REPLICAS counts the
    running containers (not those between restarts) against the fleet.replicas label
    (else how many containers the service has). Exits 4 when a host did not answer.
    JSON: {"hosts": [{host, ok, containers, msg?}], "services": [{project, service,
    running, wanted, hosts}]}.

    \b
    Example:
      fleet ps -i inventories/lab.ini -a
      fleet ps -i inventories/lab.ini web -o json
    """
    from fleet.containers import (
        group_services,
        list_containers,
        ports_text,
        sorted_containers,
        status_text,
    )
    inventory = load_inventory(inventory_path)
    outcomes = list_containers(inventory, select_hosts(inventory, pattern, limit),
                               include_stopped, forks)
    services = group_services(outcomes)
    notes = [f"[red]{escape(host)}: {escape(str(error))}[/red]"
             for host, (_, error) in outcomes.items() if error is not None]
    if output == "json":
        print_json({"hosts": [{"host": host, "ok": error is None,
                               "containers": found or [],
                               **({"msg": str(error)} if error else {})}
                              for host, (found, error) in outcomes.items()],
                    "services": services})
    else:
        rows = []
        for host, c in sorted_containers(outcomes):
            command = " ".join([c["Path"]] + c["Args"])
            rows.append((escape(host), escape(c["Name"].lstrip("/")), *_service_cells(c),
                         c["Id"][:12], escape(c["Config"]["Image"] or ""),
                         escape(command if len(command) <= 30 else command[:27] + "..."),
                         (c.get("Created") or "")[:19].replace("T", " "),
                         status_text(c["State"]), ports_text(c["NetworkSettings"])))
        print_table(("host", "name", "project", "service", "id", "image", "command",
                     "created", "status", "ports"), rows, notes=() if services else notes)
        if services:
            click.echo()
            print_table(("project", "service", "replicas", "hosts"),
                        [(escape(s["project"]), escape(s["service"]),
                          f"{s['running']}/{s['wanted']}", escape(", ".join(s["hosts"])))
                         for s in services], right=("replicas",), notes=notes)
    if notes:
        sys.exit(4)


def _one_or_two(args, alone):
    """(host or None, name) from the positional arguments: ``alone`` (NAME or SERVICE),
    or HOST NAME."""
    if len(args) not in (1, 2):
        raise click.UsageError(f"expected {alone} or HOST NAME, got {len(args)} arguments")
    return (None, args[0]) if len(args) == 1 else tuple(args)


@click.command()
@inventory_option
@click.argument("args", nargs=-1, required=True, metavar="[HOST] NAME")
@limit_option
@forks_option
def inspect(inventory_path, args, limit, forks):
    """Print Docker's container inspect JSON of container NAME (a name or an id): a list
    with an object per container found, each with a "Host" key added (first) naming the
    host it is on.

    With NAME alone every host (of --limit, if given) is asked at once, and the
    container is shown wherever it runs (names are unique per host only, so there may
    be several); none found: exit 1. A host that did not answer is named on stderr and
    the exit code is 4. With HOST NAME only HOST is asked.

    \b
    Example:
      fleet inspect -i inventories/lab.ini greeter
      fleet inspect -i inventories/lab.ini lab01 greeter
    """
    from fleet.containers import find_container
    host, name = _one_or_two(args, "NAME")
    inventory = load_inventory(inventory_path)
    if host is not None:
        result = _call(inventory, _host(inventory, inventory_path, host), "container_info",
                       {"name": name})
        print_json([{"Host": host, **c} for c in result["containers"]])
        return
    found, errors = find_container(inventory, select_hosts(inventory, "all", limit), name,
                                   forks)
    if not found:
        raise click.ClickException(f"no such container: {name}" + (
            f" (not asked: {_host_errors(errors)})" if errors else ""))
    print_json([{"Host": host, **c} for host, c in found])
    if errors:
        _warn_unanswered(errors, f"{name} may be there too")
        sys.exit(4)


@click.command()
@inventory_option
@click.argument("args", nargs=-1, required=True, metavar="[HOST] NAME|SERVICE")
@click.option("-n", "--tail", type=int, default=None,
              help="Only the last N lines (of each replica).")
@click.option("-t", "--timestamps", is_flag=True, help="Show each line's time.")
@click.option("-f", "--follow", is_flag=True, help="Keep printing while the container runs.")
@click.option("--project", default=None,
              help="With SERVICE: only the replicas of this project.")
@limit_option
def logs(inventory_path, args, tail, timestamps, follow, project, limit):
    """Print the output of container NAME on HOST (stdout and stderr, in order), or with
    SERVICE alone, of all the replicas of a service, on every host, merged.

    A service's replicas are the containers whose fleet.service label is SERVICE (and,
    with --project, whose fleet.project is PROJECT); a container without labels is its
    own service, so SERVICE may also be a container's name. Their lines are printed in
    time order on stdout, each after "HOST NAME | " (like docker compose logs); -f
    follows them until all have ended (replicas made later are not picked up). A host
    that did not answer is named on stderr and the exit code is 4.

    \b
    Example:
      fleet logs -i inventories/lab.ini --tail 20 -t -f lab01 greeter
      fleet logs -i inventories/lab.ini --tail 5 -f web
    """
    host, name = _one_or_two(args, "SERVICE")
    inventory = load_inventory(inventory_path)
    if host is None:
        _service_logs(inventory, name, project, limit, tail, timestamps, follow)
        return
    if project is not None:
        raise click.UsageError("--project goes with SERVICE alone, not HOST NAME")
    _container_logs(inventory, _host(inventory, inventory_path, host), name, tail,
                    timestamps, follow)


def _container_logs(inventory, host, name, tail, timestamps, follow):
    import time

    from fleet.transport.session import RequestError, Session
    from fleet.transport.ssh import TransportError
    from fleet.transport.targets import target_for
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


def _service_logs(inventory, service, project, limit, tail, timestamps, follow):
    import time

    from fleet.containers import ReplicaLogs, list_containers, replicas_of
    outcomes = list_containers(inventory, select_hosts(inventory, "all", limit), True)
    errors = {host: error for host, (_, error) in outcomes.items() if error is not None}
    replicas = replicas_of(outcomes, service, project)
    if not replicas:
        what = f"{service} in project {project}" if project else service
        raise click.ClickException(f"no such service or container: {what}" + (
            f" (not asked: {_host_errors(errors)})" if errors else ""))
    _warn_unanswered(errors, "its replicas there are not shown")
    prefixes = {(host, c["Name"].lstrip("/")): f"{host} {c['Name'].lstrip('/')}"
                for host, c in replicas}
    width = max(len(prefix) for prefix in prefixes.values())
    reader = ReplicaLogs(inventory, replicas, tail)
    try:
        while True:
            entries, failed = reader.read()
            for host, name, entry in entries:
                text = entry.get("log", "")
                sys.stdout.write(prefixes[host, name].ljust(width) + " | "
                                 + (entry.get("time", "") + " " if timestamps else "")
                                 + text + ("" if text.endswith("\n") else "\n"))
            sys.stdout.flush()
            if failed:
                raise click.ClickException(_host_errors(failed))
            if not follow or not reader.following:
                break
            time.sleep(0.3)
    except KeyboardInterrupt:
        pass
    finally:
        reader.close()
    if errors:
        sys.exit(4)


@click.command()
@hosts_options
def top(inventory_path, pattern, limit, forks, output):
    """Show the CPU and memory of the running containers on PATTERN's hosts, from their
    cgroups, like docker stats --no-stream: each host measures its containers over
    half a second, all hosts at once.

    CPU % is of one CPU (200% is two CPUs busy); MEM USAGE leaves out the inactive page
    cache, as Docker does; LIMIT is the container's memory limit, or the host's memory
    when it has none. Exits 4 when a host did not answer. JSON: {"hosts": [{host, ok,
    containers: [{id, name, project, service, cpu_percent, memory, memory_limit,
    pids}], msg?}]}.

    \b
    Example:
      fleet top -i inventories/lab.ini
      fleet top -i inventories/lab.ini web -o json
    """
    from fleet.containers import list_stats, service_of, size_text, sorted_containers
    inventory = load_inventory(inventory_path)
    outcomes = list_stats(inventory, select_hosts(inventory, pattern, limit), forks)
    measured = []  # (host, figures), grouped by project and service as fleet ps does
    for host, c in sorted_containers(outcomes):
        if c["Stats"] is not None:
            project, service = service_of(c)
            measured.append((host, {"id": c["Id"], "name": c["Name"].lstrip("/"),
                                    "project": project, "service": service,
                                    **{key: c["Stats"][key] for key in (
                                        "cpu_percent", "memory", "memory_limit", "pids")}}))
    notes = [f"[red]{escape(host)}: {escape(str(error))}[/red]"
             for host, (_, error) in outcomes.items() if error is not None]
    if output == "json":
        print_json({"hosts": [{"host": host, "ok": error is None,
                               "containers": [m for h, m in measured if h == host],
                               **({"msg": str(error)} if error else {})}
                              for host, (_, error) in outcomes.items()]})
    else:
        rows = [(escape(host), escape(m["name"]), escape(m["project"]), escape(m["service"]),
                 f"{m['cpu_percent']:.2f}%",
                 f"{size_text(m['memory'])} / {size_text(m['memory_limit'])}",
                 f"{100 * m['memory'] / m['memory_limit']:.2f}%" if m["memory_limit"]
                 else "-", str(m["pids"])) for host, m in measured]
        print_table(("host", "name", "project", "service", "cpu %", "mem usage / limit",
                     "mem %", "pids"), rows, right=("cpu %", "mem %", "pids"), notes=notes)
    if notes:
        sys.exit(4)


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

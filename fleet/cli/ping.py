"""fleet ping: reach hosts, start (or upload) the payload, show what each host is."""

import click

from fleet.cli.common import (forks_option, inventory_option, limit_option, load_inventory,
                              output_option, print_json, select_hosts)

EXIT_UNREACHABLE = 4


@click.command()
@inventory_option
@click.argument("pattern", default="all")
@limit_option
@forks_option
@output_option
@click.option("--timeout", default=10.0, show_default=True, help="SSH connect timeout (s).")
def ping(inventory_path, pattern, limit, forks, output, timeout):
    """Connect to every host in PATTERN (default all) and ask the payload for its facts.

    Prints, per host: reachable, python version, kernel, cgroup mode, overlayfs, user
    namespaces, whether the payload was cached or uploaded, and the round trip of one
    request on the open session. Exits 4 when any host is unreachable.

    \b
    Example:
      fleet ping -i /var/lib/fleet-lab/inventory.ini web -o json
    """
    from fleet.ping import ping as ping_hosts
    from fleet.transport.targets import target_for

    inventory = load_inventory(inventory_path)
    hosts = select_hosts(inventory, pattern, limit)
    try:
        targets = [target_for(inventory, name, timeout) for name in hosts]
    except Exception as exc:  # a bad connection variable, named by the inventory
        raise click.ClickException(str(exc)) from None
    results = _run_with_progress(ping_hosts, targets, forks, output == "text")
    if output == "json":
        print_json({"hosts": [r.as_dict() for r in results]})
    else:
        _render(results)
    if not all(r.reachable for r in results):
        raise SystemExit(EXIT_UNREACHABLE)


def _run_with_progress(ping_hosts, targets, forks, show):
    import sys
    if not (show and sys.stderr.isatty()):
        return ping_hosts(targets, forks)
    from rich.console import Console
    console = Console(stderr=True)
    done = []
    with console.status("pinging {} host(s)".format(len(targets))) as status:
        def on_result(result):
            done.append(result)
            status.update("pinging {} host(s): {} answered".format(len(targets), len(done)))
        return ping_hosts(targets, forks, on_result)


def _yes_no(value):
    return "-" if value is None else ("yes" if value else "no")


def _render(results):
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    for column in ("host", "reachable", "python", "kernel", "cgroup", "overlayfs", "userns",
                   "payload", "rtt ms"):
        table.add_column(column, no_wrap=True, justify="right" if column == "rtt ms" else "left")
    for r in results:
        if r.reachable:
            table.add_row(r.host, "[green]yes[/green]", r.python, r.kernel, r.cgroup,
                          _yes_no(r.overlayfs), _yes_no(r.user_namespaces), r.payload,
                          "{:.1f}".format(r.rtt_ms))
        else:
            table.add_row(r.host, "[red]no[/red]")
    console = Console(soft_wrap=True, width=None if _tty() else 200)
    console.print(table)
    for r in results:
        if not r.reachable:
            console.print("[red]{}: {}[/red]".format(r.host, r.error), highlight=False)


def _tty():
    import sys
    return sys.stdout.isatty()

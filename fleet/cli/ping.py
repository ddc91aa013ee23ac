"""fleet ping: reach hosts, start (or upload) the payload, show what each host is."""

import click

from fleet.cli.common import (
    hosts_options,
    load_inventory,
    print_json,
    select_hosts,
)
from fleet.cli.render import escape, print_table

EXIT_UNREACHABLE = 4


@click.command()
@hosts_options
@click.option("--timeout", default=10.0, show_default=True, help="SSH connect timeout (s).")
def ping(inventory_path, pattern, limit, forks, output, timeout):
    """Connect to every host in PATTERN (default all) and ask the payload for its facts.

    Prints, per host: reachable, python version, kernel, cgroup mode, overlayfs, user
    namespaces, whether the payload was cached, uploaded or kept (a session kept from an
    earlier command: see fleet sessions), and the round trip of one request on the open
    session. Exits 4 when any host is unreachable.

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
    with console.status(f"pinging {len(targets)} host(s)") as status:
        def on_result(result):
            done.append(result)
            status.update(f"pinging {len(targets)} host(s): {len(done)} answered")
        return ping_hosts(targets, forks, on_result)


def _yes_no(value):
    return "-" if value is None else ("yes" if value else "no")


def _render(results):
    rows = []
    for r in results:
        if r.reachable:
            rows.append((r.host, "[green]yes[/green]", r.python, r.kernel, r.cgroup,
                         _yes_no(r.overlayfs), _yes_no(r.user_namespaces), r.payload,
                         f"{r.rtt_ms:.1f}"))
        else:
            rows.append((r.host, "[red]no[/red]"))
    notes = [f"[red]{escape(f'{r.host}: {r.error}')}[/red]" for r in results if not r.reachable]
    print_table(("host", "reachable", "python", "kernel", "cgroup", "overlayfs", "userns",
                 "payload", "rtt ms"), rows, right=("rtt ms",), notes=notes)

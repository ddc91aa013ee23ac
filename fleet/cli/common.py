"""What every host-facing command shares: -i, patterns, --limit, --forks, --output."""

import json
import os
import sys

import click

from fleet.cli.render import escape, print_table


def _start_keeper(_ctx, _param, value):
    """A command given an inventory talks to its hosts: have the session keeper start
    now (persist.prestart), while the command reads its playbook."""
    from fleet.transport import persist

    persist.prestart()
    return value


inventory_option = click.option(
    "-i", "--inventory", "inventory_path", envvar="FLEET_INVENTORY", required=True,
    metavar="INVENTORY", callback=_start_keeper,
    help="Inventory file or directory (default: $FLEET_INVENTORY).")
limit_option = click.option("-l", "--limit", default=None, metavar="PATTERN",
                            help="Further limit the hosts to this pattern.")
forks_option = click.option("-f", "--forks", default=32, show_default=True, type=click.IntRange(1),
                            help="How many hosts to work on at once.")
# For commands where -f means --force, as Docker users expect (fleet rmi -f).
forks_long_option = click.option("--forks", default=32, show_default=True,
                                 type=click.IntRange(1),
                                 help="How many hosts to work on at once (no -f here).")
output_option = click.option("-o", "--output", type=click.Choice(["text", "json"]),
                             default="text", show_default=True,
                             help="json prints one JSON document for scripts.")


def hosts_options(command):
    """-i INVENTORY, PATTERN (default all), --limit, --forks and --output: what a command
    that asks every host of a pattern the same thing takes."""
    for option in reversed((inventory_option, click.argument("pattern", default="all"),
                            limit_option, forks_option, output_option)):
        command = option(command)
    return command


def load_inventory(path):
    """Load the inventory or exit with its one-line error."""
    from fleet.inventory import InventoryError
    from fleet.inventory import load_inventory as load
    if not os.path.exists(path):
        raise click.ClickException(f"inventory {path} does not exist")
    try:
        return load(path)
    except InventoryError as exc:
        raise click.ClickException(str(exc)) from None


def select_hosts(inventory, pattern, limit=None):
    """Hosts matching pattern and limit, warning on stderr about parts that match nothing."""
    for part in inventory.unmatched(pattern) + (inventory.unmatched(limit) if limit else []):
        click.echo(f"warning: pattern {part!r} matched no host", err=True)
    hosts = inventory.select(pattern, limit=limit)
    if not hosts:
        raise click.ClickException("no hosts matched {!r}{}".format(
            pattern, f" with --limit {limit!r}" if limit else ""))
    return hosts


def print_json(obj):
    json.dump(obj, sys.stdout, indent=2, sort_keys=False)
    sys.stdout.write("\n")


def on_hosts(inventory, hosts, module, params, forks):
    """``module`` with the same ``params`` on every host: {host: (result, error)}."""
    from fleet.remote import call_on_hosts
    return call_on_hosts(inventory, hosts, module, lambda _: params, forks)


def report(outcomes, output, what):
    """A line per host (ok, changed or failed, and why) or one JSON document; exit 2 when
    a host failed."""
    failed = False
    rows = []
    for host, (result, error) in outcomes.items():
        message = str(error) if error else (result.get("msg") if result.get("failed") else "")
        failed = failed or bool(message)
        rows.append({"host": host, "ok": not message,
                     "changed": bool(result and result.get("changed")), "msg": message})
    if output == "json":
        print_json({"hosts": rows})
    else:
        print_table(("host", what, "reason"),
                    [(r["host"], "failed" if not r["ok"] else
                      "changed" if r["changed"] else "ok", escape(r["msg"])) for r in rows])
    if failed:
        sys.exit(2)


def list_on_hosts(inventory_path, pattern, limit, forks, output, module, key, headers, row):
    """Call an *_info module on PATTERN's hosts; print its ``key`` items, a table row each
    (``row(item)`` after the host) or one JSON document."""
    inventory = load_inventory(inventory_path)
    outcomes = on_hosts(inventory, select_hosts(inventory, pattern, limit), module, {}, forks)
    if output == "json":
        print_json({"hosts": [{"host": host, "ok": error is None,
                               key: (result or {}).get(key, [])}
                              for host, (result, error) in outcomes.items()]})
        return
    rows, notes = [], []
    for host, (result, error) in outcomes.items():
        if error is not None:
            notes.append(f"[red]{escape(host)}: {escape(str(error))}[/red]")
            continue
        rows.extend((host, *row(item)) for item in result.get(key, []))
    print_table(headers, rows, notes=notes)

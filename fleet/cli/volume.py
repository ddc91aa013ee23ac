"""fleet volume ls / create / rm: named volumes on the hosts."""

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


@click.group()
def volume():
    """Named volumes on the hosts (STORE/volumes/NAME/_data).

    \b
    Example:
      fleet volume ls -i inventories/lab.ini
    """


def _on_hosts(inventory, hosts, module, params, forks):
    from fleet.remote import call_module
    from fleet.transport.pool import run_parallel
    return run_parallel(hosts, lambda host: call_module(inventory, host, module, params),
                        forks)


def _report(outcomes, output, what):
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


@volume.command(name="ls")
@inventory_option
@click.argument("pattern", default="all")
@limit_option
@forks_option
@output_option
def list_command(inventory_path, pattern, limit, forks, output):
    """List the volumes on PATTERN's hosts, with the containers that use them.

    \b
    Example:
      fleet volume ls -i inventories/lab.ini web -o json
    """
    list_on_hosts(inventory_path, pattern, limit, forks, output, "volume_info", "volumes",
                  ("host", "name", "driver", "used by"),
                  lambda v: (v["Name"], v["Driver"], ", ".join(v["UsedBy"])))


def list_on_hosts(inventory_path, pattern, limit, forks, output, module, key, headers, row):
    """Call an *_info module on PATTERN's hosts; print its ``key`` items, a table row each
    (``row(item)`` after the host) or one JSON document."""
    inventory = load_inventory(inventory_path)
    outcomes = _on_hosts(inventory, select_hosts(inventory, pattern, limit), module, {}, forks)
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


@volume.command()
@inventory_option
@click.argument("pattern")
@click.argument("name")
@forks_option
@output_option
def create(inventory_path, pattern, name, forks, output):
    """Create volume NAME on PATTERN's hosts (nothing to do where it exists).

    \b
    Example:
      fleet volume create -i inventories/lab.ini db pgdata
    """
    inventory = load_inventory(inventory_path)
    _report(_on_hosts(inventory, select_hosts(inventory, pattern), "volume",
                      {"name": name}, forks), output, "create")


@volume.command()
@inventory_option
@click.argument("pattern")
@click.argument("name")
@click.option("-f", "--force", is_flag=True, help="Even when containers use it.")
@output_option
def rm(inventory_path, pattern, name, force, output):
    """Remove volume NAME and its data from PATTERN's hosts (refused where a container
    uses it, unless --force).

    \b
    Example:
      fleet volume rm -i inventories/lab.ini all pgdata
    """
    inventory = load_inventory(inventory_path)
    _report(_on_hosts(inventory, select_hosts(inventory, pattern), "volume",
                      {"name": name, "state": "absent", "force": force}, 32), output, "rm")

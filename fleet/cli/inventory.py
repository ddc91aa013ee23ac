"""fleet inventory: the same views of an inventory as ansible-inventory prints."""

import click

from fleet.cli.common import load_inventory, print_json


@click.command()
@click.option("-i", "--inventory", "inventory_path", envvar="FLEET_INVENTORY", required=True,
              metavar="INVENTORY", help="Inventory file or directory (default: $FLEET_INVENTORY).")
@click.option("--list", "as_list", is_flag=True, help="All groups and hosts as JSON.")
@click.option("--graph", "graph", is_flag=False, flag_value="all", default=None,
              metavar="[GROUP]", help="The group tree (of GROUP, default all).")
@click.option("--host", "host", default=None, metavar="HOST", help="One host's merged vars.")
@click.option("--vars", "with_vars", is_flag=True, help="With --graph: show vars too.")
@click.option("--export", is_flag=True, help="With --list: vars where defined, not merged.")
@click.option("-l", "--limit", default=None, metavar="PATTERN", help="With --list: only these.")
def inventory(inventory_path, as_list, graph, host, with_vars, export, limit):
    """Show an inventory exactly as `ansible-inventory` would.

    \b
    Example:
      fleet inventory -i inventories/lab.ini --graph
      fleet inventory -i inventories/lab.ini --host lab01
    """
    chosen = [flag for flag in (as_list, graph, host) if flag]
    if len(chosen) != 1:
        raise click.UsageError("give exactly one of --list, --graph or --host")
    inv = load_inventory(inventory_path)
    for warning in inv.warnings:
        click.echo(f"warning: {warning}", err=True)
    if as_list:
        print_json(inv.to_list_json(limit=limit, export=export))
    elif host:
        if host not in inv.hosts:
            raise click.ClickException(f"host {host!r} is not in {inventory_path}")
        print_json(inv.host_vars(host))
    else:
        if graph not in inv.groups:
            raise click.ClickException(f"group {graph!r} is not in {inventory_path}")
        click.echo(inv.graph(graph, with_vars=with_vars))

"""fleet network ls / create / rm: container networks on the hosts."""

import click

from fleet.cli.common import (
    forks_option,
    hosts_options,
    inventory_option,
    list_on_hosts,
    load_inventory,
    on_hosts,
    output_option,
    report,
    select_hosts,
)


@click.group()
def network():
    """Container networks on the hosts (a bridge and a subnet each).

    \b
    Example:
      fleet network ls -i inventories/lab.ini
    """


@network.command(name="ls")
@hosts_options
def list_command(inventory_path, pattern, limit, forks, output):
    """List the networks on PATTERN's hosts.

    \b
    Example:
      fleet network ls -i inventories/lab.ini web -o json
    """
    list_on_hosts(inventory_path, pattern, limit, forks, output, "network_info", "networks",
                  ("host", "name", "subnet", "bridge", "containers"),
                  lambda n: (n["Name"], n["Subnet"], n["Bridge"], str(len(n["Containers"]))))


@network.command()
@inventory_option
@click.argument("pattern")
@click.argument("name")
@click.option("--subnet", default=None, help="IPv4 subnet (default: a free 10.90.N.0/24).")
@forks_option
@output_option
def create(inventory_path, pattern, name, subnet, forks, output):
    """Create network NAME on PATTERN's hosts.

    \b
    Example:
      fleet network create -i inventories/lab.ini all backend --subnet 10.91.0.0/24
    """
    inventory = load_inventory(inventory_path)
    params = {"name": name}
    if subnet:
        params["subnet"] = subnet
    report(on_hosts(inventory, select_hosts(inventory, pattern), "network", params, forks),
            output, "create")


@network.command()
@inventory_option
@click.argument("pattern")
@click.argument("name")
@forks_option
@output_option
def rm(inventory_path, pattern, name, forks, output):
    """Remove network NAME from PATTERN's hosts (refused where containers use it).

    \b
    Example:
      fleet network rm -i inventories/lab.ini all backend
    """
    inventory = load_inventory(inventory_path)
    report(on_hosts(inventory, select_hosts(inventory, pattern), "network",
                      {"name": name, "state": "absent"}, forks), output, "rm")

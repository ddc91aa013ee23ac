"""fleet volume ls / create / rm: named volumes on the hosts."""


import click

from fleet.cli.common import (
    forks_long_option,
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
def volume():
    """Named volumes on the hosts (STORE/volumes/NAME/_data).

    \b
    Example:
      fleet volume ls -i inventories/lab.ini
    """


@volume.command(name="ls")
@hosts_options
def list_command(inventory_path, pattern, limit, forks, output):
    """List the volumes on PATTERN's hosts, with the containers that use them.

    \b
    Example:
      fleet volume ls -i inventories/lab.ini web -o json
    """
    list_on_hosts(inventory_path, pattern, limit, forks, output, "volume_info", "volumes",
                  ("host", "name", "driver", "used by"),
                  lambda v: (v["Name"], v["Driver"], ", ".join(v["UsedBy"])))


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
    report(on_hosts(inventory, select_hosts(inventory, pattern), "volume",
                      {"name": name}, forks), output, "create")


@volume.command()
@inventory_option
@click.argument("pattern")
@click.argument("name")
@click.option("-f", "--force", is_flag=True, help="Even when containers use it.")
@forks_long_option
@output_option
def rm(inventory_path, pattern, name, force, forks, output):
    """Remove volume NAME and its data from PATTERN's hosts (refused where a container
    uses it, unless --force).

    \b
    Example:
      fleet volume rm -i inventories/lab.ini all pgdata
    """
    inventory = load_inventory(inventory_path)
    report(on_hosts(inventory, select_hosts(inventory, pattern), "volume",
                      {"name": name, "state": "absent", "force": force}, forks), output,
           "rm")

"""fleet lab: simulated hosts (netns + sshd) and OCI registries on this machine."""

import click

from fleet.cli.common import output_option, print_json


def _config():
    from fleet.lab.config import LabConfig
    return LabConfig.from_env()


def _fail(exc):
    raise click.ClickException(str(exc)) from None


@click.group()
def lab():
    """Simulated Linux hosts on this machine, for trying fleet and for its tests.

    Each host is a network namespace on one bridge with its own sshd, hostname, PID
    namespace, cgroup subtree and private /var/lib/fleet, /run, /tmp and home; the lab
    also runs three OCI registries (plain, basic auth over TLS, token auth) seeded with
    small images. Needs root. State lives in /var/lib/fleet-lab ($FLEET_LAB_DIR).

    \b
    Example:
      fleet lab up --hosts 3 && fleet ping -i /var/lib/fleet-lab/inventory.ini
    """


@lab.command()
@click.option("--hosts", "count", default=3, show_default=True, type=click.IntRange(1),
              help="How many hosts the lab should have.")
@output_option
def up(count, output):
    """Bring the lab up with COUNT hosts (idempotent: running hosts are kept).

    \b
    Example:
      fleet lab up --hosts 32
    """
    import time

    from fleet.lab import lab as lab_lib
    started = time.monotonic()
    say = (lambda text: click.echo("  " + text, err=True)) if output == "text" else None
    try:
        state = lab_lib.up(_config(), count, say)
    except (lab_lib.LabError, RuntimeError, OSError) as exc:
        _fail(exc)
    if output == "json":
        print_json(_state_json(state))
        return
    click.echo("lab up: {} host(s) in {:.1f}s".format(len(state.hosts), time.monotonic() - started))
    _render(state)


@lab.command()
@output_option
def down(output):
    """Stop every lab host and registry and remove the lab's network and state.

    \b
    Example:
      fleet lab down
    """
    from fleet.lab import lab as lab_lib
    try:
        stopped = lab_lib.down(_config())
    except (lab_lib.LabError, RuntimeError, OSError) as exc:
        _fail(exc)
    if output == "json":
        print_json({"stopped": stopped})
    else:
        click.echo("lab down: stopped {} host(s)".format(len(stopped)))


@lab.command()
@output_option
def status(output):
    """Show the lab's hosts, addresses, registries and inventory path.

    \b
    Example:
      fleet lab status -o json
    """
    from fleet.lab import lab as lab_lib
    state = lab_lib.status(_config())
    if output == "json":
        print_json(_state_json(state))
        return
    if not state.hosts:
        click.echo("lab is down")
        return
    _render(state)


def _state_json(state):
    from dataclasses import asdict
    return asdict(state)


def _render(state):
    from rich.console import Console
    from rich.table import Table
    console = Console(soft_wrap=True)
    table = Table(box=None, pad_edge=False)
    for column in ("host", "address", "state", "pid"):
        table.add_column(column)
    for host in state.hosts:
        table.add_row(host.name, host.address,
                      "[green]up[/green]" if host.alive else "[red]down[/red]", str(host.pid))
    console.print(table)
    for registry in state.registries:
        console.print("registry {:<6} {} (auth: {}{})".format(
            registry["name"], registry["url"], registry["auth"],
            ", CA " + registry["ca_file"] if registry.get("ca_file") else ""))
    console.print("inventory   {}".format(state.inventory))
    console.print("known_hosts {}".format(state.known_hosts))

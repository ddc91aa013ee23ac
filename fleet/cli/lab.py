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

    Each host is a network namespace on one switch (macvlan) with its own sshd, hostname, PID
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
@click.option("--demo", is_flag=True,
              help="Also push the demo's images (PostgreSQL, Redis and a web app, built "
                   "once from Debian packages and cached in /var/cache/fleet-demo) for "
                   "playbooks/bestwebappever.yml.")
@output_option
def up(count, demo, output):
    """Bring the lab up with COUNT hosts (idempotent: running hosts are kept).

    \b
    Example:
      fleet lab up --hosts 32
      fleet lab up --demo && fleet apply playbooks/bestwebappever.yml -i inventories/lab.ini
    """
    import time

    from fleet.lab import lab as lab_lib
    started = time.monotonic()
    say = (lambda text: click.echo("  " + text, err=True)) if output == "text" else None
    try:
        state = lab_lib.up(_config(), count, say)
        if demo:
            from fleet.lab.demo_images import DemoImageError, push_demo_images
            from fleet.lab.registries import registry_status
            plain = [r for r in registry_status(str(_config().state_dir))
                     if r.alive and r.name == "plain"]
            try:
                push_demo_images(str(_config().state_dir), plain,
                                 on_progress=say or (lambda text: None))
            except DemoImageError as exc:
                _fail(exc)
    except (lab_lib.LabError, RuntimeError, OSError) as exc:
        _fail(exc)
    if output == "json":
        print_json(_state_json(state))
        return
    click.echo(f"lab up: {len(state.hosts)} host(s) in {time.monotonic() - started:.1f}s")
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
        click.echo(f"lab down: stopped {len(stopped)} host(s)")


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
    from fleet.cli.render import print_table
    rows = [(h.name, h.address, "[green]up[/green]" if h.alive else "[red]down[/red]", str(h.pid))
            for h in state.hosts]
    notes = [f"registry {r['name']:<6} {r['url']} (auth: {r['auth']}"
             + (f", CA {r['ca_file']})" if r.get("ca_file") else ")") for r in state.registries]
    notes += [f"inventory   {state.inventory}", f"known_hosts {state.known_hosts}"]
    print_table(("host", "address", "state", "pid"), rows, notes=notes)

"""fleet down: remove everything a playbook's project made, on every host it targets."""

import sys

import click

from fleet.cli.common import (
    forks_option,
    inventory_option,
    limit_option,
    load_inventory,
    output_option,
    print_json,
)
from fleet.cli.render import Printer, escape

KINDS = ("containers", "networks", "volumes", "images")


@click.command()
@click.argument("playbook", type=click.Path(dir_okay=False))
@inventory_option
@click.option("--volumes", is_flag=True, help="Also remove the project's named volumes.")
@click.option("--images", is_flag=True,
              help="Also remove the images its containers used, unless others use them.")
@click.option("-C", "--check", is_flag=True, help="Say what would be removed; remove nothing.")
@limit_option
@forks_option
@output_option
def down(playbook, inventory_path, volumes, images, check, limit, forks, output):
    """Remove every container and network of PLAYBOOK's project (the fleet.project
    label: the playbook's file name, or its plays' project:) on every host its plays
    target, whether or not the playbook still lists them. Exit code 4 when a host was
    unreachable (the others are cleaned), 2 when a host failed.

    \b
    Example:
      fleet down playbooks/bestwebappever.yml -i inventories/lab.ini --volumes
    """
    from fleet.playbook import PlaybookError, load_playbook
    from fleet.projects import down as take_down
    from fleet.projects import playbook_hosts
    from fleet.transport.ssh import TransportError

    try:
        book = load_playbook(playbook)
    except PlaybookError as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(f"{playbook}: {exc.strerror}") from None
    inventory = load_inventory(inventory_path)
    hosts = playbook_hosts(book, inventory, limit)
    with _HostProgress(output == "text" and sys.stderr.isatty(), len(hosts)) as progress:
        outcomes = take_down(inventory, hosts, book.projects, volumes, images, check, forks,
                             progress.done)
    unreachable = [h for h, (_r, _k, e) in outcomes.items() if isinstance(e, TransportError)]
    failed = [h for h, (_r, _k, e) in outcomes.items() if e is not None and h not in unreachable]
    if output == "json":
        print_json({"projects": book.projects, "check": check, "hosts": [
            {"host": host, "ok": error is None, "removed": removed, "kept": kept,
             **({"msg": str(error)} if error else {})}
            for host, (removed, kept, error) in outcomes.items()]})
    else:
        _render(outcomes, book.projects, check, unreachable)
    sys.exit(4 if unreachable else 2 if failed else 0)


def _render(outcomes, projects, check, unreachable):
    printer = Printer()
    verb = "would remove" if check else "removed"
    for host, (removed, kept, error) in outcomes.items():
        if error is not None:
            what = "unreachable" if host in unreachable else "failed"
            printer.print(f"[red]{escape(host)}: {what}: {escape(str(error))}[/red]")
        parts = [f"{len(removed[k])} {k[:-1] if len(removed[k]) == 1 else k} "
                 f"({', '.join(escape(n) for n in removed[k])})"
                 for k in KINDS if removed.get(k)]
        if parts:
            printer.print(f"{escape(host)}: {verb} {', '.join(parts)}")
        elif error is None:
            printer.print(f"{escape(host)}: nothing to do")
        for line in kept:
            printer.print(f"[yellow]{escape(host)}: kept {escape(line)}[/yellow]")
    printer.print(f"[dim]project {', '.join(projects)}[/dim]")


class _HostProgress:
    """A hosts-done bar on a terminal; nothing otherwise."""

    def __init__(self, enabled, total):
        self.bars, self.total = None, total
        if enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
            self.bars = Progress(TextColumn("down"), BarColumn(), MofNCompleteColumn(),
                                 transient=True)

    def __enter__(self):
        if self.bars is not None:
            self.bars.start()
            self.task = self.bars.add_task("hosts", total=self.total)
        return self

    def __exit__(self, *exc):
        if self.bars is not None:
            self.bars.stop()

    def done(self, _host):
        if self.bars is not None:
            self.bars.advance(self.task)

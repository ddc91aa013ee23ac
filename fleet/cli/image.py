"""fleet image pull | ls | rm: images in the hosts' stores, with live progress."""

import sys

import click

from fleet.cli.common import (
    forks_long_option,
    forks_option,
    hosts_options,
    inventory_option,
    limit_option,
    load_inventory,
    output_option,
    print_json,
    select_hosts,
)
from fleet.cli.render import escape, print_table


@click.group()
def image():
    """Images on the hosts: pull them from a registry, list them, remove them.

    \b
    Example:
      fleet image pull -i inventories/lab.ini all 10.231.0.1:5000/busybox:latest
      fleet image ls -i inventories/lab.ini
    """


def _report(outcomes, output, verb):
    if output == "json":
        print_json({"hosts": [vars(o) for o in outcomes]})
    else:
        rows = []
        for o in outcomes:
            status = ("[red]failed[/red]" if not o.ok else
                      "[yellow]changed[/yellow]" if o.changed else "[green]ok[/green]")
            image = o.images[0] if o.images else {}
            # A message says more than the tags (failed, not present, kept for a container).
            rows.append((o.host, status, (image.get("Id") or "")[7:19],
                         escape(o.msg or ", ".join(image.get("RepoTags") or []))))
        print_table(("host", verb, "image", "tags / reason"), rows)
    if not all(o.ok for o in outcomes):
        sys.exit(2)


class _Progress:
    """Per host and layer download bars on a terminal; nothing otherwise."""

    def __init__(self, enabled):
        self.bars = None
        self.tasks = {}
        if enabled:
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TransferSpeedColumn,
            )
            self.bars = Progress(TextColumn("{task.description}"), BarColumn(),
                                 DownloadColumn(), TransferSpeedColumn(), transient=True)

    def __enter__(self):
        if self.bars is not None:
            self.bars.start()
        return self

    def __exit__(self, *exc):
        if self.bars is not None:
            self.bars.stop()

    def event(self, host, event):
        if self.bars is None or "layer" not in event:
            return
        key = (host, event["layer"])
        if key not in self.tasks:
            self.tasks[key] = self.bars.add_task(f"{host} {event['layer'][7:19]}", total=None)
        if "done" in event:
            self.bars.update(self.tasks[key], completed=event["done"], total=event.get("total"))
        elif event.get("status") in ("done", "exists"):
            task = self.bars.tasks[self.tasks[key]]
            self.bars.update(self.tasks[key], total=task.total or 1,
                             completed=task.total or 1)


@image.command()
@inventory_option
@click.argument("pattern")
@click.argument("name")
@limit_option
@forks_option
@output_option
@click.option("--platform", default=None, help="os/arch[/variant] instead of each host's.")
@click.option("--always", is_flag=True, help="Ask the registry even when the image is there.")
def pull(inventory_path, pattern, name, limit, forks, output, platform, always):
    """Pull image NAME onto every host of PATTERN (progress per host and layer).

    \b
    Example:
      fleet image pull -i inventories/lab.ini web 10.231.0.1:5000/busybox:latest
    """
    from fleet import images
    inventory = load_inventory(inventory_path)
    hosts = select_hosts(inventory, pattern, limit)
    with _Progress(output == "text" and sys.stderr.isatty()) as progress:
        outcomes = images.pull(inventory, hosts, name, platform, always, forks=forks,
                               on_event=progress.event)
    _report(outcomes, output, "pull")


@image.command(name="ls")
@hosts_options
def list_command(inventory_path, pattern, limit, forks, output):
    """List the images in the stores of PATTERN's hosts.

    \b
    Example:
      fleet image ls -i inventories/lab.ini -o json
    """
    from fleet import images
    inventory = load_inventory(inventory_path)
    outcomes = images.list_images(inventory, select_hosts(inventory, pattern, limit),
                                  forks=forks)
    if output == "json":
        print_json({"hosts": [vars(o) for o in outcomes]})
    else:
        rows = []
        for o in outcomes:
            for i in o.images if o.ok else ():
                for repository, tag in _names(i):
                    rows.append((o.host, repository, tag, i["Id"][7:19],
                                 (i.get("Created") or "")[:19].replace("T", " "),
                                 _size(i.get("Size", 0))))
        notes = [f"[red]{escape(o.host)}: {escape(o.msg)}[/red]" for o in outcomes if not o.ok]
        print_table(("host", "repository", "tag", "image id", "created", "size"), rows,
                    right=("size",), notes=notes)
    if not all(o.ok for o in outcomes):
        sys.exit(2)


def _names(image):
    """(repository, tag) pairs of an image, ("<none>", "<none>") when it has none."""
    names = []
    for tag in image.get("RepoTags") or []:
        repository, _, name = tag.rpartition(":")
        names.append((repository, name) if "/" not in name else (tag, "<none>"))
    return names or [("<none>", "<none>")]


def _size(size):
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f}{unit}" if unit == "B" else f"{size:.1f}{unit}"
        size /= 1000
    return str(size)


@image.command()
@inventory_option
@click.argument("pattern")
@click.argument("name")
@limit_option
@forks_long_option
@output_option
@click.option("-f", "--force", is_flag=True,
              help="Where a container uses the image, remove its names anyway (the "
                   "container keeps the image and its layers).")
def rm(inventory_path, pattern, name, limit, forks, output, force):
    """Remove image NAME from PATTERN's hosts (and the layers no other image uses).

    NAME is a reference (repo:tag, repo@digest) or an image id. A host where a container
    uses the image refuses to remove it (and the command exits 2) unless --force.

    \b
    Example:
      fleet image rm -i inventories/lab.ini all 10.231.0.1:5000/busybox:latest
      fleet rmi -f -i inventories/lab.ini web 10.231.0.1:5000/busybox:latest
    """
    from fleet import images
    inventory = load_inventory(inventory_path)
    outcomes = images.remove(inventory, select_hosts(inventory, pattern, limit), name,
                             force=force, forks=forks)
    _report(outcomes, output, "remove")


@image.command(name="inspect")
@inventory_option
@click.argument("host")
@click.argument("name")
def inspect_command(inventory_path, host, name):
    """Print Docker's image inspect JSON of image NAME on inventory host HOST.

    \b
    Example:
      fleet image inspect -i inventories/lab.ini lab01 10.231.0.1:5000/busybox:latest
    """
    from fleet import images
    inventory = load_inventory(inventory_path)
    if host not in inventory.hosts:
        raise click.ClickException(f"host {host!r} is not in {inventory_path}")
    outcome = images.run_on_hosts(inventory, [host], "image_info",
                                  lambda h: {"name": name})[0]
    if not outcome.ok:
        raise click.ClickException(f"{host}: {outcome.msg}")
    if not outcome.images:
        raise click.ClickException(f"{host}: no image {name}")
    print_json([outcome.images[0]])

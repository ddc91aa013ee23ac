"""fleet apply: run a playbook on the inventory's hosts, Ansible-style."""

import shlex
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


def parse_extra_vars(values):
    """-e values: key=value pairs, @file.yml / @file.json, or inline JSON/YAML mappings."""
    import yaml
    merged = {}
    for value in values:
        value = value.strip()
        if value.startswith("@"):
            try:
                with open(value[1:]) as handle:
                    data = yaml.safe_load(handle) or {}
            except OSError as exc:
                raise click.BadParameter(f"{value[1:]}: {exc.strerror}") from None
            except yaml.YAMLError as exc:
                mark = getattr(exc, "problem_mark", None)
                where = f":{mark.line + 1}" if mark else ""
                raise click.BadParameter(f"{value[1:]}{where}: not valid YAML") from None
        elif value.startswith("{"):
            try:
                data = yaml.safe_load(value)
            except yaml.YAMLError:
                raise click.BadParameter(f"not a valid JSON/YAML mapping: {value}") from None
        else:
            data = {}
            for pair in shlex.split(value):
                key, sep, val = pair.partition("=")
                if not sep or not key:
                    raise click.BadParameter(f"expected key=value, got {pair!r}")
                data[key] = val
        if not isinstance(data, dict):
            raise click.BadParameter(f"extra vars must be a mapping: {value}")
        merged.update(data)
    return merged


@click.command()
@click.argument("playbook", type=click.Path(dir_okay=False))
@inventory_option
@limit_option
@forks_option
@output_option
@click.option("-C", "--check", is_flag=True, help="Say what would change; change nothing.")
@click.option("-D", "--diff", is_flag=True, help="Show before/after of what changes.")
@click.option("-t", "--tags", multiple=True, help="Only tasks with these tags (comma lists ok).")
@click.option("--skip-tags", multiple=True, help="Skip tasks with these tags.")
@click.option("-e", "--extra-vars", multiple=True, metavar="VARS",
              help="key=value, @file.yml or a JSON mapping; highest precedence.")
@click.option("-v", "--verbose", count=True, help="Show each host's result (-vv: more).")
@click.option("--timeout", default=10.0, show_default=True, help="SSH connect timeout (s).")
def apply(playbook, inventory_path, limit, forks, output, check, diff, tags, skip_tags,
          extra_vars, verbose, timeout):
    """Run PLAYBOOK on the hosts of INVENTORY.

    Everything is checked before any host is contacted (YAML, modules, arguments);
    each host then gets one persistent session and one request per task. Exit code 0
    when all went well, 2 when a host failed, 4 when a host was unreachable.

    \b
    Example:
      fleet apply playbooks/site.yml -i inventories/lab.ini --check --diff
      fleet apply site.yml -i hosts -l web -e version=1.2 -o json
    """
    from fleet.executor import RunOptions

    book = _load(playbook)
    inventory = load_inventory(inventory_path)
    options = RunOptions(
        check=check, diff=diff, limit=limit, forks=forks, verbosity=verbose,
        tags=_split(tags), skip_tags=_split(skip_tags),
        extra_vars=parse_extra_vars(extra_vars), connect_timeout=timeout)
    _run(book, inventory, options, output)


def _load(playbook):
    """The playbook, checked before any host is contacted; a one-line error otherwise."""
    from fleet.playbook import PlaybookError, check_playbook, load_playbook

    try:
        book = load_playbook(playbook)
        check_playbook(book)
    except PlaybookError as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(f"{playbook}: {exc.strerror}") from None
    return book


def _run(book, inventory, options, output):
    """Run the playbook with a reporter for ``output``; exit with its exit code."""
    from fleet.executor import JsonCollector, exit_code, run_playbook

    if output == "json":
        collector = JsonCollector()
        stats = run_playbook(book, inventory, options, collector)
        print_json(collector.document(stats))
    else:
        from fleet.cli.apply_view import TextReporter
        reporter = TextReporter(options, sys.stdout.isatty())
        try:
            stats = run_playbook(book, inventory, options, reporter)
        except KeyboardInterrupt:
            click.echo("interrupted: running tasks were cancelled on the hosts", err=True)
            sys.exit(130)
        finally:
            reporter.close()
    sys.exit(exit_code(stats))


def _split(values):
    return tuple(t.strip() for value in values for t in value.split(",") if t.strip())


@click.command()
@click.argument("playbook", type=click.Path(dir_okay=False))
@click.argument("counts", nargs=-1, required=True, metavar="SERVICE=N...")
@inventory_option
@limit_option
@forks_option
@output_option
@click.option("-C", "--check", is_flag=True, help="Say what would change; change nothing.")
@click.option("-e", "--extra-vars", multiple=True, metavar="VARS",
              help="key=value, @file.yml or a JSON mapping, as for apply.")
def scale(playbook, counts, inventory_path, limit, forks, output, check, extra_vars):
    """Run only PLAYBOOK's tasks of the replicated services named, with N replicas each
    (placed as apply places them: new ones on the least-loaded hosts, the highest
    numbers removed first).

    \b
    Example:
      fleet scale playbooks/bestwebappever.yml web=6 -i inventories/lab.ini
    """
    from fleet.executor import RunOptions

    wanted = {}
    for count in counts:
        service, sep, number = count.partition("=")
        if not sep or not service or not number.isdigit():
            raise click.BadParameter(f"{count!r} is not SERVICE=N", param_hint="SERVICE=N")
        wanted[service] = int(number)
    book = _load(playbook)
    known = _services(book)
    for service in wanted:
        if service not in known:
            raise click.ClickException(
                f"{playbook}: no container task with replicas named {service!r} "
                f"(services: {', '.join(sorted(known)) or 'none'})")
    options = RunOptions(check=check, limit=limit, forks=forks, scale=wanted,
                         extra_vars=parse_extra_vars(extra_vars))
    _run(book, load_inventory(inventory_path), options, output)


def _services(book):
    """Names of the playbook's container tasks that have replicas (as written)."""
    found = set()

    def walk(items):
        for item in items:
            if hasattr(item, "block"):
                walk(item.block + item.rescue + item.always)
            elif item.action == "container" and "replicas" in (item.args or {}):
                found.add(str(item.args.get("name")))

    for play in book.plays:
        walk(play.pre_tasks + play.tasks + play.post_tasks)
    return found

"""fleet sessions: the SSH sessions kept between commands (ControlPersist), listed or closed."""

import click

from fleet.cli.common import print_json
from fleet.cli.render import print_table


@click.group()
def sessions():
    """Payload sessions kept open between commands, as OpenSSH's ControlPersist keeps
    connections: a command that finds one skips the SSH handshake and the payload's start.

    A session stays 60 s after the command that used it (ControlPersist in a host's
    ansible_ssh_common_args or ansible_ssh_extra_args, else $FLEET_PERSIST: a time such as
    10m, "yes" for until closed, "no" for a connection per command). A session is shared
    only by commands that reach the host with the same key file, or the same ssh-agent
    socket and default keys; hosts with a become password never keep one.

    \b
    Example:
      fleet sessions ls
      fleet sessions close
    """


@sessions.command("ls")
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text",
              show_default=True, help="Output format.")
def list_command(output):
    """List the kept sessions: host, user, busy or idle, for how long.

    \b
    Example:
      fleet sessions ls -o json
    """
    from fleet.transport import persist

    rows = [dict(session, keeper=answer.get("pid"))
            for _path, answer in _ask(persist, "list")
            for session in answer.get("sessions") or []]
    if output == "json":
        print_json({"sessions": rows})
        return
    print_table(("host", "user", "become", "state", "idle s", "age s", "keeper pid"),
                [(f"{r['host']}:{r['port']}", r["user"], r.get("become_user") or "-",
                  r["state"], f"{r['idle']:.0f}", f"{r['age']:.0f}", str(r["keeper"]))
                 for r in rows], right=("idle s", "age s"),
                notes=[] if rows else ["no kept sessions"])


@sessions.command("close")
def close():
    """Close every kept session now (busy ones when their command is done); the
    keepers then exit. Use it after changing a host's SSH settings or keys.

    \b
    Example:
      fleet sessions close
    """
    from fleet.transport import persist

    closed = sum(answer.get("sessions") or 0 for _path, answer in _ask(persist, "close"))
    click.echo(f"closing {closed} session(s)")


def _ask(persist, op):
    try:
        return persist.command(op)
    except persist.KeeperError as exc:
        raise click.ClickException(str(exc)) from None

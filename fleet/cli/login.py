"""fleet login / logout: registry credentials for image pulls, kept on the controller."""

import sys

import click


@click.command()
@click.argument("registry")
@click.option("-u", "--username", required=True, help="User name at the registry.")
@click.option("--password-stdin", is_flag=True,
              help="Read the password from standard input (otherwise it is prompted for).")
def login(registry, username, password_stdin):
    """Store credentials for REGISTRY (like docker login; the password is never shown).

    \b
    Example:
      echo "$TOKEN" | fleet login registry.example.com:5000 -u deploy --password-stdin
    """
    from fleet.credentials import CredentialsError, config_path
    from fleet.credentials import login as store
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True)
    try:
        key = store(registry, username, password)
    except CredentialsError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"Login stored for {key} in {config_path()}")


@click.command()
@click.argument("registry")
def logout(registry):
    """Forget the stored credentials of REGISTRY.

    \b
    Example:
      fleet logout registry.example.com:5000
    """
    from fleet.credentials import CredentialsError
    from fleet.credentials import logout as forget
    try:
        removed = forget(registry)
    except CredentialsError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"Removed login for {registry}" if removed else f"No login stored for {registry}")

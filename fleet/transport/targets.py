"""Turn inventory hosts into SSH targets (connection variables, with their defaults)."""

import os

from fleet.transport.ssh import Target, known_hosts_from_common_args, ssh_option

# Ansible's own ssh_args default to ControlPersist=60s: a session stays a minute.
DEFAULT_PERSIST = "60s"
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def persist_seconds(text):
    """Seconds of an OpenSSH ControlPersist value: ``no`` 0 (off), ``yes`` or ``0``
    forever (inf), else a time as ssh_config writes them (``60``, ``90s``, ``10m``,
    ``1h30m``). Raises ValueError for anything else."""
    value = text.strip().lower()
    if value in ("no", "false"):
        return 0.0
    if value in ("yes", "true", "0"):
        return float("inf")
    total, number = 0, ""
    for char in value:
        if char.isdigit():
            number += char
        elif char in _UNITS and number:
            total, number = total + int(number) * _UNITS[char], ""
        else:
            raise ValueError(f"{text!r} is not a time (60s, 10m, 1h; yes, no)")
    if not value:
        raise ValueError("an empty time")
    total += int(number or 0)
    return float(total) if total else float("inf")  # as ssh: a time of 0 is forever


def _persist(name, host_vars):
    """How long ``name``'s session stays for the next command: ControlMaster=no or
    ControlPersist in its ssh arguments, else $FLEET_PERSIST, else a minute."""
    for var in ("ansible_ssh_extra_args", "ansible_ssh_common_args"):
        args = str(host_vars.get(var) or "")
        if ssh_option(args, "ControlMaster") in ("no", "false"):
            return 0.0
        value = ssh_option(args, "ControlPersist")
        if value is not None:
            try:
                return persist_seconds(value)
            except ValueError as exc:
                raise ValueError(f"host {name}: {var}: ControlPersist {exc}") from None
    try:
        return persist_seconds(os.environ.get("FLEET_PERSIST") or DEFAULT_PERSIST)
    except ValueError as exc:
        raise ValueError(f"FLEET_PERSIST: {exc}") from None


def target_for(inventory, name, connect_timeout=10.0):
    """The Target of inventory host ``name``."""
    conn = inventory.connection(name)
    host_vars = inventory.host_vars(name)
    known = conn.known_hosts_file or known_hosts_from_common_args(
        host_vars.get("ansible_ssh_common_args"))
    # Absolute: the session keeper that may connect for this command has its own cwd.
    known = os.path.abspath(os.path.expanduser(known)) if known else None
    return Target(
        name=name,
        host=conn.host,
        port=conn.port,
        user=conn.user,
        key_file=os.path.abspath(os.path.expanduser(conn.key_file)) if conn.key_file else None,
        python=conn.python,
        become=conn.become,
        become_user=conn.become_user,
        become_password=conn.become_password,
        known_hosts=known,
        connect_timeout=connect_timeout,
        persist=_persist(name, host_vars),
    )

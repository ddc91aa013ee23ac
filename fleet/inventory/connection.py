"""How to reach a host: its connection variables, typed and defaulted.

Each setting is read from the first of these that is set (not null) in the
host's merged variables; the ``fleet_`` form wins over Ansible's, which wins
over Ansible's older aliases:

=================  ==============================  ===========================================
field              fleet variable                  Ansible variables
=================  ==============================  ===========================================
host               fleet_host                      ansible_host, ansible_ssh_host
port               fleet_port                      ansible_port, ansible_ssh_port
user               fleet_user                      ansible_user, ansible_ssh_user
key_file           fleet_ssh_private_key_file      ansible_ssh_private_key_file,
                                                   ansible_private_key_file
python             fleet_python_interpreter        ansible_python_interpreter
become             fleet_become                    ansible_become
become_user        fleet_become_user               ansible_become_user
become_password    fleet_become_password           ansible_become_password, ansible_become_pass
known_hosts_file   fleet_ssh_known_hosts_file      ansible_ssh_known_hosts_file
=================  ==============================  ===========================================

Values are used as written: no templating, and relative paths are not resolved.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple

from agent_payload.argspec import to_bool  # one truthiness, as modules use it

from .errors import InventoryError

__all__ = ["ConnectionVars", "connection_vars", "to_bool", "VARIABLES"]

#: field -> variable names, highest precedence first.
VARIABLES: Dict[str, Tuple[str, ...]] = {
    "host": ("fleet_host", "ansible_host", "ansible_ssh_host"),
    "port": ("fleet_port", "ansible_port", "ansible_ssh_port"),
    "user": ("fleet_user", "ansible_user", "ansible_ssh_user"),
    "key_file": (
        "fleet_ssh_private_key_file",
        "ansible_ssh_private_key_file",
        "ansible_private_key_file",
    ),
    "python": ("fleet_python_interpreter", "ansible_python_interpreter"),
    "become": ("fleet_become", "ansible_become"),
    "become_user": ("fleet_become_user", "ansible_become_user"),
    "become_password": (
        "fleet_become_password",
        "ansible_become_password",
        "ansible_become_pass",
    ),
    "known_hosts_file": ("fleet_ssh_known_hosts_file", "ansible_ssh_known_hosts_file"),
}

# Ansible's spellings of booleans (compared after str().strip().lower()).


@dataclass(frozen=True)
class ConnectionVars:
    """Connection settings of one inventory host."""

    name: str
    host: str
    port: int = 22
    user: Optional[str] = None
    key_file: Optional[str] = None
    python: str = "/usr/bin/python3"
    become: bool = False
    become_user: str = "root"
    become_password: Optional[str] = None
    known_hosts_file: Optional[str] = None


def _problem(host: str, var: str, expected: str, value: Any) -> InventoryError:
    hint = ""
    if isinstance(value, str) and "{{" in value:
        hint = " (templates are not evaluated in connection variables)"
    return InventoryError(
        f"host {host!r}: variable {var!r} must be {expected}, got {value!r}{hint}"
    )


def _text(host: str, var: str, value: Any, allow_int: bool = False) -> str:
    # INI turns digit-only values into ints; a user or password may be numeric.
    if allow_int and isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str) or not value:
        raise _problem(host, var, "a non-empty string", value)
    return value


def _port(host: str, var: str, value: Any) -> int:
    number = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and value.strip().isdigit():
        number = int(value.strip())
    if number is None or not 1 <= number <= 65535:
        raise _problem(host, var, "a port number (1-65535)", value)
    return number


def connection_vars(name: str, variables: Dict[str, Any]) -> ConnectionVars:
    """Build the ConnectionVars of host ``name`` from its merged variables.

    Raises InventoryError naming the host and the variable when a value has the
    wrong type.
    """
    found: Dict[str, Tuple[str, Any]] = {}
    for field_name, names in VARIABLES.items():
        for var in names:
            if variables.get(var) is not None:
                found[field_name] = (var, variables[var])
                break

    settings: Dict[str, Any] = {}
    for field_name, (var, value) in found.items():
        if field_name == "port":
            settings[field_name] = _port(name, var, value)
        elif field_name == "become":
            try:
                settings[field_name] = to_bool(value)
            except ValueError:
                raise _problem(name, var, "a boolean (yes/no, true/false, 1/0)", value) from None
        elif field_name in ("user", "become_user", "become_password"):
            settings[field_name] = _text(name, var, value, allow_int=True)
        else:
            settings[field_name] = _text(name, var, value)
    settings.setdefault("host", name)
    return ConnectionVars(name=name, **settings)

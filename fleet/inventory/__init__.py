"""Ansible-compatible inventory: INI and YAML files, host_vars/ and group_vars/,
host patterns, and the output of ``ansible-inventory``.

::

    from fleet.inventory import load_inventory

    inv = load_inventory("inventories/prod")
    for name in inv.select("web:&prod", limit="web0*"):
        conn = inv.connection(name)
"""

from .connection import ConnectionVars
from .errors import InventoryError
from .loader import load_inventory
from .model import Group, Host, Inventory

__all__ = ["load_inventory", "Inventory", "InventoryError", "ConnectionVars", "Group", "Host"]

"""What ``ansible-inventory --list`` and ``--graph`` print, built from an Inventory."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, List, Set

from .errors import InventoryError
from .values import jsonable

if TYPE_CHECKING:
    from .model import Inventory

__all__ = ["list_json", "graph"]

# ansible-core 2.19 names the JSON encoder profile it used in _meta.
JSON_PROFILE = "inventory_legacy"


def list_json(inv: Inventory, limit: Any = None, export: bool = False) -> Dict[str, Any]:
    """The object ``ansible-inventory --list [--limit L] [--export]`` prints.

    Each group has ``hosts`` (direct members, inventory order; never for
    ``all``) and ``children``; empty keys are left out, and a group with
    nothing left disappears (its parent still lists it among ``children``).
    ``_meta.hostvars`` has the merged variables of every host that has any;
    with ``export`` groups carry their own ``vars`` and hosts only their own.
    """
    available = set(inv.select("all", limit=limit))
    result: Dict[str, Any] = {}
    done: Set[str] = set()

    def add(name: str) -> None:
        group = inv.groups[name]
        entry: Dict[str, Any] = {}
        result[name] = entry
        if name != "all":
            entry["hosts"] = [h for h in group.hosts if h in available]
        entry["children"] = []
        for child in group.children:
            entry["children"].append(child)
            if child not in done:
                add(child)
                done.add(child)
        if export:
            entry["vars"] = jsonable(inv.group_vars(name), unsafe_marker=True)
        for key in ("hosts", "vars", "children"):
            if key in entry and not entry[key]:
                del entry[key]
        if not entry:
            del result[name]

    add("all")
    hostvars: Dict[str, Any] = {}
    for host in inv.select("all", limit=limit):
        variables = inv.own_host_vars(host) if export else inv.host_vars(host)
        if variables:
            hostvars[host] = jsonable(variables, unsafe_marker=True)
    result["_meta"] = {"hostvars": hostvars, "profile": JSON_PROFILE}
    return result


def _line(text: str, depth: int) -> str:
    return "  |" * depth + "--" + text if depth else text


def _var_lines(variables: Dict[str, Any], depth: int) -> List[str]:
    # Values are shown with Python's str(), as ansible-inventory does.
    return [_line(f"{{{key} = {variables[key]}}}", depth) for key in sorted(variables)]


def graph(inv: Inventory, group: str = "all", with_vars: bool = False) -> str:
    """The text of ``ansible-inventory --graph GROUP [--vars]`` (no trailing newline).

    A group reachable through several parents is drawn under each of them.
    """
    if group not in inv.groups:
        raise InventoryError(f"--graph needs a group name; there is no group {group!r}")
    lines: List[str] = []

    def walk(name: str, depth: int) -> None:
        lines.append(_line(f"@{name}:", depth))
        inner = depth + 1
        for child in inv.groups[name].children:
            walk(child, inner)
        if name != "all":
            for host in inv.groups[name].hosts:
                lines.append(_line(host, inner))
                if with_vars:
                    lines.extend(_var_lines(inv.host_vars(host), inner + 1))
        if with_vars:
            lines.extend(_var_lines(inv.group_vars(name), inner))

    walk(group, 0)
    return "\n".join(lines)

"""The in-memory inventory: hosts, groups, their variables, and the queries on them.

Parsers (ini.py, yaml_format.py) fill an :class:`Inventory` through ``add_group``,
``add_host``, ``add_child`` and ``set_*_var``; the loader then calls ``reconcile``
and attaches host_vars/ and group_vars/ data. The rules mirror Ansible's
inventory so that output matches ``ansible-inventory`` for the same files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Set

from .connection import ConnectionVars, connection_vars
from .errors import InventoryError
from .patterns import select, unmatched
from .render import graph, list_json

# Names ansible-inventory strips from the variables it prints (magic variables
# computed at run time, which an inventory cannot meaningfully set).
INTERNAL_VARS = frozenset(
    [
        "ansible_async_path",
        "ansible_collection_name",
        "ansible_config_file",
        "ansible_dependent_role_names",
        "ansible_diff_mode",
        "ansible_facts",
        "ansible_forks",
        "ansible_inventory_sources",
        "ansible_limit",
        "ansible_play_batch",
        "ansible_play_hosts",
        "ansible_play_hosts_all",
        "ansible_play_role_names",
        "ansible_playbook_python",
        "ansible_role_name",
        "ansible_role_names",
        "ansible_run_tags",
        "ansible_skip_tags",
        "ansible_verbosity",
        "ansible_version",
        "inventory_dir",
        "inventory_file",
        "inventory_hostname",
        "inventory_hostname_short",
        "groups",
        "group_names",
        "hostvars",
        "playbook_dir",
        "play_hosts",
        "role_name",
        "role_names",
        "role_path",
        "role_uuid",
    ]
)

PRIORITY_VAR = "ansible_group_priority"


def strip_internal(variables: Dict[str, Any]) -> Dict[str, Any]:
    """Drop the magic variable names ansible-inventory never shows."""
    return {k: v for k, v in variables.items() if k not in INTERNAL_VARS}


@dataclass(eq=False)
class Group:
    """A group. ``hosts`` and ``children`` are direct members in inventory order.

    ``vars`` holds variables set by inventory files; ``file_vars`` those read from
    group_vars/ (kept apart because Ansible merges the two at different levels).
    """

    name: str
    hosts: List[str] = field(default_factory=list)
    children: List[str] = field(default_factory=list)
    parents: List[str] = field(default_factory=list)
    vars: Dict[str, Any] = field(default_factory=dict)
    file_vars: Dict[str, Any] = field(default_factory=dict)
    priority: int = 1
    depth: int = 0


@dataclass(eq=False)
class Host:
    """A host. ``groups`` are its direct groups; ``vars`` / ``file_vars`` as for Group."""

    name: str
    groups: List[str] = field(default_factory=list)
    vars: Dict[str, Any] = field(default_factory=dict)
    file_vars: Dict[str, Any] = field(default_factory=dict)


class Inventory:
    """Hosts and groups loaded from an Ansible-style inventory.

    Use :func:`fleet.inventory.load_inventory` to get one. Host names and group
    names are plain strings everywhere; lists are in inventory order.
    """

    def __init__(self) -> None:
        self._groups: Dict[str, Group] = {}
        self._hosts: Dict[str, Host] = {}
        #: Inventory files that were parsed, in the order they were read.
        self.sources: List[Path] = []
        #: host_vars/ and group_vars/ files that were read.
        self.vars_files: List[Path] = []
        #: Non-fatal problems (one line each); the CLI may show them.
        self.warnings: List[str] = []
        # Direct members of each group as sets: membership checks on big inventories.
        self._members: Dict[str, Set[str]] = {}
        self._group_hosts_cache: Dict[str, List[str]] = {}
        self._host_groups_cache: Dict[str, List[str]] = {}
        # Ansible always has these two; 'ungrouped' is the first child of 'all'.
        self.add_group("all")
        self.add_group("ungrouped")
        self.add_child("all", "ungrouped")

    # ------------------------------------------------------------------ building

    def _changed(self) -> None:
        self._group_hosts_cache.clear()
        self._host_groups_cache.clear()

    def add_group(self, name: str) -> Group:
        """Create group ``name`` unless it exists; return it."""
        if not isinstance(name, str):
            raise InventoryError(f"group name must be a string, got {name!r}")
        if not name:
            raise InventoryError("empty group name")
        group = self._groups.get(name)
        if group is None:
            group = self._groups[name] = Group(name)
            self._members[name] = set()
            self._changed()
        return group

    def add_host(self, name: str, group: Optional[str] = None, port: Optional[int] = None) -> Host:
        """Create host ``name`` unless it exists, and make it a member of ``group``.

        ``port`` (from ``host:port``) becomes ``ansible_port`` only when the host is
        first created, as in Ansible.
        """
        if not isinstance(name, str):
            raise InventoryError(f"host name must be a string, got {name!r}")
        if not name:
            raise InventoryError("empty host name")
        host = self._hosts.get(name)
        if host is None:
            host = self._hosts[name] = Host(name)
            if port:
                host.vars["ansible_port"] = int(port)
        if group is not None:
            grp = self._groups.get(group)
            if grp is None:
                raise InventoryError(f"unknown group {group!r}")
            members = self._members[group]
            if name not in members:
                members.add(name)
                grp.hosts.append(name)
                host.groups.append(group)
        self._changed()
        return host

    def add_child(self, parent: str, child: str) -> None:
        """Make group ``child`` a child of group ``parent`` (both must exist)."""
        if parent not in self._groups:
            raise InventoryError(f"unknown group {parent!r}")
        if child not in self._groups:
            raise InventoryError(f"unknown group {child!r}")
        if parent == child:
            raise InventoryError(f"group {child!r} cannot be a child of itself")
        pgroup, cgroup = self._groups[parent], self._groups[child]
        if child in pgroup.children:
            return
        if child in self._ancestors(parent):
            raise InventoryError(
                f"adding group {child!r} as child to {parent!r} creates a recursive dependency loop"
            )
        pgroup.children.append(child)
        if parent not in cgroup.parents:
            cgroup.parents.append(parent)
        self._changed()

    def set_group_var(self, group: str, key: str, value: Any) -> None:
        """Set an inventory variable on a group (``ansible_group_priority`` sets priority)."""
        grp = self._groups[group]
        if key == PRIORITY_VAR:
            try:
                grp.priority = int(value)
            except (TypeError, ValueError):
                raise InventoryError(
                    f"{PRIORITY_VAR} of group {group!r} must be an integer, got {value!r}"
                ) from None
            self._changed()
            return
        grp.vars[key] = value

    def set_host_var(self, host: str, key: str, value: Any) -> None:
        """Set an inventory variable on a host."""
        self._hosts[host].vars[key] = value

    def remove_host_from_group(self, host: str, group: str) -> None:
        """Take ``host`` out of the direct members of ``group``."""
        grp = self._groups[group]
        if host in self._members[group]:
            self._members[group].discard(host)
            grp.hosts.remove(host)
            self._hosts[host].groups.remove(group)
            self._changed()

    def reconcile(self) -> None:
        """Apply Ansible's post-parse rules; the loader calls this once at the end.

        Groups without a parent become children of ``all``; hosts in no group (or
        only in ``all``) join ``ungrouped``; hosts that were listed as ungrouped but
        belong to a real group leave it. Then group depths are computed.
        """
        for name in list(self._groups):
            if name != "all" and not self._groups[name].parents:
                self.add_child("all", name)
        for host in self._hosts.values():
            direct = host.groups
            if "ungrouped" in direct:
                if any(g not in ("all", "ungrouped") for g in direct):
                    self.remove_host_from_group(host.name, "ungrouped")
            elif not direct or direct == ["all"]:
                self.add_host(host.name, "ungrouped")
        for name in sorted(set(self._groups) & set(self._hosts)):
            self.warnings.append(f"found both group and host with same name: {name}")
        self._compute_depths()
        self._changed()

    def _compute_depths(self) -> None:
        # Depth is the longest path from 'all'; it orders group variables.
        depth: Dict[str, int] = {}

        def walk(name: str) -> int:
            if name not in depth:
                parents = self._groups[name].parents
                depth[name] = 1 + max(walk(p) for p in parents) if parents else 0
            return depth[name]

        for name, group in self._groups.items():
            group.depth = walk(name)

    # ------------------------------------------------------------------ structure

    @property
    def hosts(self) -> List[str]:
        """All host names in the order they were first defined."""
        return list(self._hosts)

    @property
    def groups(self) -> Dict[str, Group]:
        """All groups by name, in the order they were first defined."""
        return self._groups

    def host(self, name: str) -> Host:
        """The :class:`Host` record for ``name``; InventoryError if there is none."""
        try:
            return self._hosts[name]
        except KeyError:
            raise InventoryError(f"unknown host {name!r}") from None

    def has_host(self, name: str) -> bool:
        """True if ``name`` is a host of this inventory."""
        return name in self._hosts

    def _ancestors(self, group: str) -> Set[str]:
        seen: Set[str] = set()
        todo = list(self._groups[group].parents)
        while todo:
            name = todo.pop()
            if name not in seen:
                seen.add(name)
                todo.extend(self._groups[name].parents)
        return seen

    def descendant_groups(self, group: str) -> List[str]:
        """``group`` followed by its descendants, breadth first, each listed once."""
        ordered = [group]
        seen = {group}
        for child in self._groups[group].children:
            if child not in seen:
                seen.add(child)
                ordered.append(child)
        frontier = list(ordered)
        while frontier:
            nxt = []
            for name in frontier:
                for child in self._groups[name].children:
                    if child not in seen:
                        seen.add(child)
                        ordered.append(child)
                        nxt.append(child)
            frontier = nxt
        return ordered

    def group_hosts(self, group: str) -> List[str]:
        """Hosts of ``group`` and all its descendants, in Ansible's order.

        That order is: the group's own hosts, then those of its children, then of
        grandchildren, and so on (breadth first), each host once.
        """
        cached = self._group_hosts_cache.get(group)
        if cached is None:
            if group not in self._groups:
                raise InventoryError(f"unknown group {group!r}")
            cached = []
            seen: Set[str] = set()
            for name in self.descendant_groups(group):
                for host in self._groups[name].hosts:
                    if host not in seen:
                        seen.add(host)
                        cached.append(host)
            self._group_hosts_cache[group] = cached
        return list(cached)

    def host_groups(self, name: str) -> List[str]:
        """Every group ``name`` belongs to, directly or through children, incl. ``all``."""
        cached = self._host_groups_cache.get(name)
        if cached is None:
            found: List[str] = []
            seen: Set[str] = set()
            for direct in self.host(name).groups:
                for group in [direct, *self._ancestors(direct)]:
                    if group not in seen:
                        seen.add(group)
                        found.append(group)
            cached = self._host_groups_cache[name] = found
        return list(cached)

    def group_names(self, name: str) -> List[str]:
        """Sorted groups of host ``name`` without ``all`` (Ansible's ``group_names``)."""
        return sorted(g for g in self.host_groups(name) if g != "all")

    # ------------------------------------------------------------------ variables

    def _sorted_groups(self, names: List[str]) -> List[Group]:
        groups = [self._groups[n] for n in names]
        return sorted(groups, key=lambda g: (g.depth, g.priority, g.name))

    def host_vars(self, name: str) -> Dict[str, Any]:
        """All variables of host ``name`` merged as ``ansible-inventory --host NAME`` does.

        Precedence, lowest first: inventory vars of ``all``; inventory vars of the
        host's other groups by (depth, ansible_group_priority, name); group_vars/all;
        group_vars/ of the other groups in the same order; the host's inventory
        vars; host_vars/ files. Magic variable names are left out.
        """
        host = self.host(name)
        groups = self._sorted_groups([g for g in self.host_groups(name) if g != "all"])
        all_group = self._groups["all"]
        merged: Dict[str, Any] = dict(all_group.vars)
        for group in groups:
            merged.update(group.vars)
        merged.update(all_group.file_vars)
        for group in groups:
            merged.update(group.file_vars)
        merged.update(host.vars)
        merged.update(host.file_vars)
        return strip_internal(merged)

    def group_vars(self, name: str) -> Dict[str, Any]:
        """Variables defined on group ``name`` itself (inventory, then group_vars/).

        Includes ``ansible_group_priority`` when it is not the default, like
        ``ansible-inventory --list --export``.
        """
        try:
            group = self._groups[name]
        except KeyError:
            raise InventoryError(f"unknown group {name!r}") from None
        merged = {**group.vars, **group.file_vars}
        if group.priority != 1:
            merged[PRIORITY_VAR] = group.priority
        return strip_internal(merged)

    def own_host_vars(self, name: str) -> Dict[str, Any]:
        """Variables set on host ``name`` itself (inventory, then host_vars/)."""
        host = self.host(name)
        return strip_internal({**host.vars, **host.file_vars})

    # ------------------------------------------------------------------ delegations

    def select(self, pattern: Any, limit: Any = None) -> List[str]:
        """Hosts matching an Ansible host pattern, optionally narrowed by ``limit``.

        ``pattern`` and ``limit`` are strings (``web:&prod:!db``, ``web,db``,
        ``~regex``, globs, ``group[0:2]``) or lists of such parts; ``limit`` may
        use ``@file``. The order is Ansible's. Parts that match nothing are
        ignored; see :meth:`unmatched`.
        """
        return select(self, pattern, limit)

    def unmatched(self, pattern: Any, limit: Any = None) -> List[str]:
        """Parts of ``pattern`` (and ``limit``) that matched no host or group.

        These are the names Ansible warns about with "Could not match supplied
        host pattern, ignoring: NAME".
        """
        return unmatched(self, pattern, limit)

    def connection(self, name: str) -> ConnectionVars:
        """Connection settings of host ``name`` (see fleet.inventory.connection)."""
        return connection_vars(name, self.host_vars(name))

    def to_list_json(self, limit: Any = None, export: bool = False) -> Dict[str, Any]:
        """The structure ``ansible-inventory --list`` prints (``--export`` if asked)."""
        return list_json(self, limit=limit, export=export)

    def graph(self, group: str = "all", with_vars: bool = False) -> str:
        """The text ``ansible-inventory --graph [GROUP] [--vars]`` prints."""
        return graph(self, group, with_vars)

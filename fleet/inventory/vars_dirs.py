"""host_vars/ and group_vars/ beside an inventory.

For an entity NAME, the first of ``NAME``, ``NAME.yml``, ``NAME.yaml``, ``NAME.json``
that exists is used (only that one, as in Ansible). If it is a directory, every
file in it (recursively, sorted by name, skipping hidden files, backups ending
in ``~`` and files with other extensions) is merged in order, later files
replacing top-level keys of earlier ones.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Set

from .model import Inventory
from .yaml_format import load_vars_file

__all__ = ["VARS_EXTENSIONS", "find_vars_files", "apply_vars_dirs"]

VARS_EXTENSIONS = ("", ".yml", ".yaml", ".json")


def _dir_files(directory: Path) -> List[Path]:
    found: List[Path] = []
    for name in sorted(os.listdir(directory)):
        if name.startswith(".") or name.endswith("~"):
            continue
        path = directory / name
        ext = os.path.splitext(name)[1]
        if not ext and path.is_dir():
            found.extend(_dir_files(path))
        elif ext in VARS_EXTENSIONS and path.is_file():
            found.append(path)
    return found


def find_vars_files(directory: Path, name: str, listing: Optional[Set[str]] = None) -> List[Path]:
    """The files holding variables for ``name`` under ``directory``, in merge order.

    ``listing`` (the names in ``directory``) spares a stat per candidate when
    many entities are looked up.
    """
    for ext in VARS_EXTENSIONS:
        candidate = name + ext
        if listing is not None and os.sep not in candidate:
            if candidate not in listing:
                continue
        path = directory / candidate
        if path.is_dir():
            return _dir_files(path)
        if path.exists():
            return [path]
    return []


def _load(inv: Inventory, files: List[Path], base: Path, display_base: str) -> Dict[str, Any]:
    merged: Dict[str, Any] = {}
    for path in files:
        display = os.path.join(display_base, os.path.relpath(path, base))
        merged.update(load_vars_file(path, display))
        inv.vars_files.append(path)
    return merged


def apply_vars_dirs(inv: Inventory, base: Path, display_base: str) -> None:
    """Read ``base/host_vars`` and ``base/group_vars`` into ``file_vars`` of ``inv``.

    ``display_base`` is how ``base`` is shown in error messages.
    """
    for subdir, names, records in (
        ("group_vars", list(inv.groups), inv.groups),
        ("host_vars", inv.hosts, None),
    ):
        directory = base / subdir
        if not directory.exists():
            continue
        if not directory.is_dir():
            inv.warnings.append(f"found {directory} that is not a directory, skipping")
            continue
        listing = set(os.listdir(directory))
        for name in names:
            if name.startswith(os.sep):  # e.g. chroot paths used as host names
                continue
            files = find_vars_files(directory, name, listing)
            if not files:
                continue
            data = _load(inv, files, base, display_base)
            target = records[name] if records is not None else inv.host(name)
            target.file_vars = data

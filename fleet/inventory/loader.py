"""load_inventory: read an inventory file, a directory of them, or a host list."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Union

from .errors import InventoryError
from .ini import parse_ini
from .model import Inventory
from .ranges import split_host_port
from .vars_dirs import apply_vars_dirs
from .yaml_format import YamlNotInventory, looks_like_yaml, parse_yaml

__all__ = ["load_inventory", "IGNORED_EXTENSIONS"]

#: Files with these endings are skipped in an inventory directory (Ansible's
#: INVENTORY_IGNORE_EXTS default). Hidden files and host_vars/, group_vars/,
#: vars_plugins/ are skipped too.
IGNORED_EXTENSIONS = (
    ".pyc", ".pyo", ".swp", ".bak", "~", ".rpm", ".md", ".txt", ".rst",
    ".orig", ".cfg", ".retry",
)  # fmt: skip
_IGNORED_RE = re.compile(
    r"^\.|^(?:host_vars|group_vars|vars_plugins)$|(?:"
    + "|".join(re.escape(ext) for ext in IGNORED_EXTENSIONS)
    + r")$"
)
_YAML_EXTENSIONS = (".yml", ".yaml", ".json")


def _parse_file(inv: Inventory, path: Path, display: str) -> None:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InventoryError(f"cannot read inventory: {exc.strerror}", display) from None
    ext = os.path.splitext(path.name)[1].lower()
    if ext == ".toml":
        raise InventoryError("TOML inventories are not supported; use INI or YAML", display)

    # Ansible offers files without extension (or with a YAML one) to its YAML
    # parser first and falls back to INI; other extensions are INI only.
    if ext in _YAML_EXTENSIONS or not ext:
        try:
            text = data.decode("utf-8").lstrip("\ufeff")
        except UnicodeDecodeError:
            text = None
        first = next((ln.strip() for ln in (text or "").splitlines() if ln.strip()), "")
        if text is not None and not first.startswith(("[", ";")):
            try:
                parse_yaml(inv, path, text, display)
                return
            except YamlNotInventory as exc:
                yaml_error = exc  # nothing was added yet: INI may still fit
            try:
                parse_ini(inv, path, data, display)
            except InventoryError:
                if ext or looks_like_yaml(text):
                    raise yaml_error from None
                raise
            return
    parse_ini(inv, path, data, display)


def _parse_dir(inv: Inventory, directory: Path, display: str) -> None:
    try:
        names = sorted(os.listdir(directory))
    except OSError as exc:
        raise InventoryError(f"cannot list inventory directory: {exc.strerror}", display) from None
    for name in names:
        if _IGNORED_RE.search(name):
            continue
        path = directory / name
        shown = os.path.join(display, name)
        if path.is_dir():
            _parse_dir(inv, path, shown)
        elif path.is_file():
            _parse_file(inv, path, shown)
            inv.sources.append(path)


def _parse_host_list(inv: Inventory, text: str) -> None:
    # "web1,web2:2222," on the command line: ungrouped hosts, no files.
    for item in text.split(","):
        item = item.strip()
        if item:
            name, port = split_host_port(item)  # type: ignore[misc]
            inv.add_host(name, "ungrouped", port)


def load_inventory(path: Union[str, Path]) -> Inventory:
    """Load an Ansible-style inventory.

    ``path`` is an INI or YAML file (format detected from the extension and
    content), a directory (every inventory file in it, recursively, in sorted
    order), or a comma-separated host list such as ``"web1,web2,"``.
    host_vars/ and group_vars/ beside the file (or inside the directory) are
    read too. Errors raise :class:`InventoryError` with file and line.
    """
    display = os.fspath(path)
    base = Path(path)
    inv = Inventory()
    if base.is_dir():
        _parse_dir(inv, base, display)
        vars_base, vars_display = base, display
    elif base.is_file():
        _parse_file(inv, base, display)
        inv.sources.append(base)
        vars_base, vars_display = base.parent, os.path.dirname(display)
    elif "," in display:
        _parse_host_list(inv, display)
        inv.reconcile()
        return inv
    else:
        raise InventoryError("no such inventory file or directory", display)
    inv.reconcile()
    apply_vars_dirs(inv, vars_base, vars_display)
    return inv

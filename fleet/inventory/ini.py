"""Ansible's INI inventory format.

::

    top1 ansible_host=10.0.0.1      # before any section: group 'ungrouped'
    [web]
    web[01:20].example.com x="a b"  # inline vars: Python literals, else strings
    [web:vars]
    http_port=8080                  # one key=value per line
    [prod:children]
    web

Values are read as ansible-core 2.19 reads them: every value (inline or in a
``:vars`` section) goes through ``ast.literal_eval`` and stays a string when that
fails, so ``8080`` is an int, ``True`` a bool, ``'07'`` the string ``07`` and
``yes`` the string ``yes``. (Ansible's docs say ``:vars`` values are strings, but
2.19 evaluates them too; we follow what it does.)
"""

from __future__ import annotations

import ast
import re
import shlex
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from .errors import InventoryError
from .model import Inventory
from .ranges import RangeError, expand_host_pattern

__all__ = ["parse_ini", "parse_value"]

# "[name]" or "[name:kind]", optionally followed by a comment.
_SECTION_RE = re.compile(r"^\[([^:\]\s]+)(?::(\w+))?\]\s*(?:#.*)?$")
_GROUP_NAME_RE = re.compile(r"^([^:\]\s]+)\s*(?:#.*)?$")
# Shortcuts with the same results as literal_eval / shlex, for speed on big files:
# bare words (literal_eval rejects them), plain decimal ints, and host lines
# without quotes, escapes or comments (shlex would just split on whitespace).
_PLAIN_WORD_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PLAIN_INT_RE = re.compile(r"^-?(?:0|[1-9][0-9]*)$")
_SHLEX_SPECIAL_RE = re.compile(r"[\"'\\#]")
_SHLEX_SPACE_RE = re.compile(r"[ \t\r\n]+")
_KNOWN_KINDS = ("hosts", "children", "vars")


def _normalise(value: Any) -> Any:
    """Make a literal_eval result inventory-friendly, the way Ansible does."""
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_normalise(v) for v in value]
    if isinstance(value, dict):
        return {k: _normalise(v) for k, v in value.items()}  # keys stay as written
    if value is ...:
        return "..."
    if isinstance(value, complex):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    return value


def parse_value(text: str) -> Any:
    """Read one INI value: a Python literal if it is one, else the text itself."""
    if _PLAIN_WORD_RE.match(text) and text not in ("True", "False", "None"):
        return text
    if _PLAIN_INT_RE.match(text):
        return int(text)
    try:
        with warnings.catch_warnings():
            # e.g. "\d" in a quoted value (Deprecation-, later SyntaxWarning): not ours.
            warnings.simplefilter("ignore")
            value = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text
    return _normalise(value)


class _IniParser:
    def __init__(self, inv: Inventory, path: Path, display: str) -> None:
        self.inv = inv
        self.path = path
        self.display = display  # the file name used in error messages
        self.lineno = 0
        # Groups referenced before being declared: name -> declaration info.
        self.pending: Dict[str, Dict[str, Any]] = {}

    def error(self, reason: str, line: Optional[int] = None) -> InventoryError:
        return InventoryError(reason, self.display, self.lineno if line is None else line)

    def parse(self, lines: List[str]) -> None:
        group, kind = "ungrouped", "hosts"
        for self.lineno, raw in enumerate(lines, 1):
            line = raw.strip()
            if not line or line[0] in "#;":
                continue
            m = _SECTION_RE.match(line)
            if m:
                group, kind = m.group(1), m.group(2) or "hosts"
                if kind not in _KNOWN_KINDS:
                    raise self.error(
                        f"section [{m.group(1)}:{kind}] has unknown type {kind!r} "
                        "(expected hosts, children or vars)"
                    )
                self.start_section(group, kind)
                continue
            if line.startswith("[") and line.endswith("]"):
                raise self.error(
                    f"invalid section entry {line!r}: no spaces or other invalid "
                    "characters are allowed in a section name"
                )
            try:
                if kind == "hosts":
                    self.host_line(line, group)
                elif kind == "vars":
                    self.vars_line(line, group)
                else:
                    self.child_line(line, group)
            except InventoryError as exc:
                raise exc.located(self.display, self.lineno) from None

        # Whatever is still pending was referenced but never declared.
        for name, decl in self.pending.items():
            if decl["kind"] == "vars":
                raise self.error(
                    f"section [{name}:vars] not valid for undefined group {name!r}", decl["line"]
                )
            raise self.error(
                f"section [{decl['parents'][-1]}:children] includes undefined group {name!r}",
                decl["line"],
            )

    def start_section(self, group: str, kind: str) -> None:
        inv = self.inv
        if group not in inv.groups:
            # [g] and [g:children] declare a group; [g:vars] alone does not, so it
            # is noted and must be declared by the end of the file.
            if kind == "vars" and group not in self.pending:
                self.pending[group] = {"line": self.lineno, "kind": "vars"}
            inv.add_group(group)
        if kind != "vars" and group in self.pending:
            if self.pending[group]["kind"] == "children":
                self.resolve_children(group)
            else:
                del self.pending[group]

    def resolve_children(self, group: str) -> None:
        # A declared group joins the parents that listed it early; a parent that
        # was itself waiting as a child gets resolved along the way.
        for parent in self.pending[group]["parents"]:
            self.add_child(parent, group)
            if parent in self.pending and self.pending[parent]["kind"] == "children":
                self.resolve_children(parent)
        del self.pending[group]

    def add_child(self, parent: str, child: str) -> None:
        try:
            self.inv.add_child(parent, child)
        except InventoryError as exc:
            raise exc.located(self.display, self.lineno) from None

    def host_line(self, line: str, group: str) -> None:
        try:
            if _SHLEX_SPECIAL_RE.search(line):
                tokens = shlex.split(line, comments=True)
            else:
                tokens = _SHLEX_SPACE_RE.split(line)
        except ValueError as exc:
            raise self.error(f"error parsing host definition {line!r}: {exc}") from None
        if not tokens:
            return
        names, port = self.expand(tokens[0])
        variables: List[Tuple[str, Any]] = []
        for token in tokens[1:]:
            if "=" not in token:
                raise self.error(
                    f"expected key=value host variable assignment, got {token!r} "
                    f"(in host definition {line!r})"
                )
            key, value = token.split("=", 1)
            variables.append((key, parse_value(value)))
        for name in names:
            self.inv.add_host(name, group, port)
            for key, value in variables:
                self.inv.set_host_var(name, key, value)

    def expand(self, pattern: str) -> Tuple[List[str], Optional[int]]:
        try:
            names, port = expand_host_pattern(pattern)
        except RangeError as exc:
            raise self.error(str(exc)) from None
        if pattern.strip().endswith(":") and port is None:
            raise self.error(
                f"invalid host pattern {pattern!r}: ending in ':' is not allowed, "
                "':' introduces a port"
            )
        if any(n.strip() == "---" for n in names):
            raise self.error(
                f"invalid host pattern {pattern!r}: '---' is normally a sign this is a YAML file"
            )
        return names, port

    def vars_line(self, line: str, group: str) -> None:
        if "=" not in line:
            raise self.error(f"expected key=value in [{group}:vars], got {line!r}")
        key, value = (part.strip() for part in line.split("=", 1))
        self.inv.set_group_var(group, key, parse_value(value))

    def child_line(self, line: str, group: str) -> None:
        m = _GROUP_NAME_RE.match(line)
        if not m:
            raise self.error(f"expected group name in [{group}:children], got {line!r}")
        child = m.group(1)
        if child in self.inv.groups:
            self.add_child(group, child)
        elif child in self.pending:
            self.pending[child]["parents"].append(group)
        else:
            self.pending[child] = {"line": self.lineno, "kind": "children", "parents": [group]}


def _decode(data: bytes, display: str) -> List[str]:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        # Tolerate other encodings in comments only, keeping line numbers right.
        lines = []
        for number, raw in enumerate(data.splitlines(), 1):
            if raw[:1] in (b"#", b";"):
                lines.append("")
                continue
            try:
                lines.append(raw.decode("utf-8"))
            except UnicodeDecodeError:
                raise InventoryError("line is not valid UTF-8", display, number) from None
        return lines
    return text.lstrip("\ufeff").splitlines()


def parse_ini(inv: Inventory, path: Path, data: bytes, display: Optional[str] = None) -> None:
    """Add the hosts and groups of INI inventory ``data`` (read from ``path``) to ``inv``."""
    name = display if display is not None else str(path)
    _IniParser(inv, path, name).parse(_decode(data, name))

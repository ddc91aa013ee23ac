"""Ansible host patterns: which hosts a play or ``--limit`` selects.

A pattern is a list of parts separated by ``,`` (or ``:`` when that is not part of
an address or range). A part is a host name, a group name, a shell glob
(``web*.example.com``), or a regex (``~web\\d+``); it may carry a subscript
(``web[0]``, ``web[1:3]``, ``web[2:]``) and a prefix: ``&`` intersects, ``!``
excludes. Plain parts are applied first, then ``&`` parts, then ``!`` parts; if
there is no plain part, ``all`` is implied. A part that names nothing selects
nothing (Ansible warns; :func:`unmatched` reports them).
"""

from __future__ import annotations

import fnmatch
import re
from typing import TYPE_CHECKING, Any, Dict, Iterable, List, Optional, Tuple

from .errors import InventoryError
from .ranges import is_address

if TYPE_CHECKING:
    from .model import Inventory

__all__ = ["split_pattern", "select", "unmatched"]

# "expr[3]", "expr[-1]", "expr[1:3]", "expr[2:]" (and the retired "expr[1-3]").
_SUBSCRIPT_RE = re.compile(r"^(.+)\[(?:(-?[0-9]+)|([0-9]+)([:-])([0-9]*))\]$")
# Runs of characters other than whitespace, ':' and brackets, or whole [..] groups.
_COLON_PARTS_RE = re.compile(r"(?:[^\s:\[\]]|\[[^\]]*\])+")
# Characters that make a part worth matching against host names even when it
# already matched group names.
_HOSTISH = (".", "?", "*", "[")


def split_pattern(pattern: Any) -> List[str]:
    """Split a pattern (string or list of strings) into its parts.

    >>> split_pattern("web:&prod:!db")
    ['web', '&prod', '!db']
    """
    if isinstance(pattern, (list, tuple)):
        return [part for item in pattern for part in split_pattern(item)]
    pattern = str(pattern)
    if "," in pattern:
        parts = pattern.split(",")
    elif is_address(pattern):
        # An IPv6 address or "web[1:3]" must not be cut at its colons.
        parts = [pattern]
    else:
        parts = _COLON_PARTS_RE.findall(pattern)
    return [p.strip() for p in parts if p.strip()]


def _ordered(parts: Iterable[str]) -> List[str]:
    plain, both, excluded = [], [], []
    for part in parts:
        if not part:
            continue
        if part[0] == "!":
            excluded.append(part)
        elif part[0] == "&":
            both.append(part)
        else:
            plain.append(part)
    return (plain or ["all"]) + both + excluded


def _split_subscript(expr: str) -> Tuple[str, Optional[Tuple[int, Optional[int]]]]:
    if expr[0] == "~":  # brackets belong to the regex
        return expr, None
    m = _SUBSCRIPT_RE.match(expr)
    if not m:
        return expr, None
    base, index, start, _sep, end = m.groups()
    if index is not None:
        return base, (int(index), None)
    return base, (int(start), int(end) if end else -1)


class _Matcher:
    """Evaluates pattern parts against one inventory, remembering misses."""

    def __init__(self, inv: Inventory) -> None:
        self.inv = inv
        self.cache: Dict[str, List[str]] = {}
        self.missed: List[str] = []

    def _regex(self, expr: str) -> Any:
        try:
            if expr[0] == "~":
                return re.compile(expr[1:])
            return re.compile(fnmatch.translate(expr))
        except re.error as exc:
            raise InventoryError(f"invalid host pattern {expr!r}: {exc}") from None

    def _enumerate(self, expr: str) -> List[str]:
        inv = self.inv
        rx = self._regex(expr)
        groups = [g for g in inv.groups if rx.match(g)]
        results: List[str] = []
        for group in groups:
            results.extend(inv.group_hosts(group))
        if not groups or expr[0] == "~" or any(c in expr for c in _HOSTISH):
            results.extend(h for h in inv.hosts if rx.match(h))
        if not results and not groups and expr != "all" and expr not in self.missed:
            self.missed.append(expr)
        return results

    def match_part(self, part: str) -> List[str]:
        expr = part[1:] if part[0] in "&!" else part
        if expr not in self.cache:
            if not expr:
                raise InventoryError(f"empty host pattern after {part[0]!r}")
            base, subscript = _split_subscript(expr)
            hosts = self._enumerate(base)
            if hosts and subscript:
                start, end = subscript
                if end:
                    hosts = hosts[start : (len(hosts) if end == -1 else end + 1)]
                else:
                    try:
                        hosts = [hosts[start]]
                    except IndexError:
                        raise InventoryError(
                            f"no hosts matched the subscripted pattern {expr!r}"
                        ) from None
            self.cache[expr] = hosts
        return self.cache[expr]

    def evaluate(self, parts: Iterable[str]) -> List[str]:
        hosts: List[str] = []
        present = set()
        for part in _ordered(parts):
            if self.inv.has_host(part):
                # A plain host name needs no matching at all.
                if part not in present:
                    present.add(part)
                    hosts.append(part)
                continue
            found = self.match_part(part)
            if part[0] == "!":
                drop = set(found)
                hosts = [h for h in hosts if h not in drop]
                present -= drop
            elif part[0] == "&":
                keep = set(found)
                hosts = [h for h in hosts if h in keep]
                present &= keep
            else:
                for host in found:
                    if host not in present:
                        present.add(host)
                        hosts.append(host)
        return hosts


def _limit_parts(limit: Any) -> List[str]:
    parts: List[str] = []
    for part in split_pattern(limit):
        if part[0] != "@":
            parts.append(part)
            continue
        # "@file": one pattern per line (what a failed run's .retry file holds).
        name = part[1:]
        try:
            with open(name, encoding="utf-8") as fh:
                parts.extend(line.strip() for line in fh.read().split("\n"))
        except IsADirectoryError:
            raise InventoryError(
                f"limit starting with '@' must be a file, not a directory: {name}"
            ) from None
        except OSError:
            raise InventoryError(f"unable to find limit file {name}") from None
    return parts


def _run(inv: Inventory, pattern: Any, limit: Any) -> Tuple[List[str], List[str]]:
    matcher = _Matcher(inv)
    hosts = matcher.evaluate(split_pattern(pattern))
    if limit is not None:
        parts = _limit_parts(limit)
        if parts:
            allowed = set(matcher.evaluate(parts))
            hosts = [h for h in hosts if h in allowed]
    return hosts, matcher.missed


def select(inv: Inventory, pattern: Any, limit: Any = None) -> List[str]:
    """Host names matching ``pattern`` (narrowed by ``limit``), in Ansible's order."""
    return _run(inv, pattern, limit)[0]


def unmatched(inv: Inventory, pattern: Any, limit: Any = None) -> List[str]:
    """The parts of ``pattern`` / ``limit`` that matched no group and no host."""
    return _run(inv, pattern, limit)[1]

"""Value types that inventories carry beyond plain YAML/JSON."""

from __future__ import annotations

import datetime
from typing import Any

__all__ = ["UnsafeText", "jsonable"]


class UnsafeText(str):
    """A string marked ``!unsafe`` in YAML: it must never be templated."""

    __slots__ = ()


def jsonable(value: Any, unsafe_marker: bool = False) -> Any:
    """``value`` with YAML-only types made JSON-friendly, as ansible-inventory does.

    Dates become ISO strings, sets and tuples lists. With ``unsafe_marker``,
    ``!unsafe`` strings become ``{"__ansible_unsafe": text}`` (what --list prints).
    """
    if isinstance(value, str):
        if unsafe_marker and isinstance(value, UnsafeText):
            return {"__ansible_unsafe": str(value)}
        return value
    if isinstance(value, dict):
        return {k: jsonable(v, unsafe_marker) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v, unsafe_marker) for v in value]
    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.isoformat()
    return value

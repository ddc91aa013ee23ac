"""YAML loading that remembers where things are.

:func:`load_yaml_file` parses with a SafeLoader subclass that builds
:class:`OriginDict`, :class:`OriginList` and :class:`OriginStr`: a dict, list and str
that carry ``.origin`` (an :class:`~fleet.playbook.model.Origin`); dicts also know the
line of each key (``key_origins``) and lists the line of each item (``item_origins``).
:func:`plain` turns such data back into ordinary dicts, lists and strings.

Ansible's YAML rules: YAML 1.1 scalars as PyYAML reads them, merge keys (``<<``),
``!unsafe`` for strings that must never be templated. Unlike Ansible, a key given twice
in one mapping is an error, not a warning; ``!vault`` values are not supported.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from fleet.templating import Unsafe

from .errors import PlaybookError
from .model import Origin

__all__ = [
    "OriginDict",
    "OriginList",
    "OriginStr",
    "describe",
    "load_yaml_file",
    "load_yaml_text",
    "origin_of",
    "plain",
]


class OriginDict(dict):
    """A dict from YAML: ``.origin`` (its first line) and ``.key_origins[key]``."""

    origin: Origin
    key_origins: dict


class OriginList(list):
    """A list from YAML: ``.origin`` and ``.item_origins[i]``."""

    origin: Origin
    item_origins: list


class OriginStr(str):
    """A string from YAML with its ``.origin``."""

    origin: Origin


class _Loader(yaml.SafeLoader):
    """SafeLoader building Origin* containers; ``display`` is the file as shown."""

    display = "<string>"

    def origin(self, node: yaml.Node) -> Origin:
        """Where ``node`` starts."""
        return Origin(self.display, node.start_mark.line + 1)


def _fail(loader: _Loader, node: yaml.Node, message: str) -> PlaybookError:
    return PlaybookError(message, loader.origin(node))


def _construct_mapping(loader: _Loader, node: yaml.MappingNode):
    data = OriginDict()
    data.origin = loader.origin(node)
    data.key_origins = {}
    yield data
    # Keys written in this mapping must be unique; keys merged in with "<<" may be
    # overridden by them (flatten_mapping puts the merged pairs first).
    explicit = {id(k) for k, _ in node.value if k.tag != "tag:yaml.org,2002:merge"}
    loader.flatten_mapping(node)
    set_explicitly = set()
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError:
            raise _fail(loader, key_node, "a mapping key must be a scalar") from None
        if id(key_node) in explicit:
            if key in set_explicitly:
                raise _fail(loader, key_node, f"duplicate key {str(key)!r}")
            set_explicitly.add(key)
        data[key] = loader.construct_object(value_node, deep=True)
        data.key_origins[key] = loader.origin(key_node)


def _construct_sequence(loader: _Loader, node: yaml.SequenceNode):
    data = OriginList()
    data.origin = loader.origin(node)
    data.item_origins = []
    yield data
    for child in node.value:
        data.append(loader.construct_object(child, deep=True))
        data.item_origins.append(loader.origin(child))


def _construct_str(loader: _Loader, node: yaml.ScalarNode) -> OriginStr:
    value = OriginStr(loader.construct_scalar(node))
    value.origin = loader.origin(node)
    return value


def _construct_unsafe(loader: _Loader, node: yaml.Node) -> Unsafe:
    if not isinstance(node, yaml.ScalarNode):
        raise _fail(loader, node, "!unsafe applies to strings only")
    return Unsafe(loader.construct_scalar(node))


def _construct_vault(loader: _Loader, node: yaml.Node) -> Any:
    raise _fail(loader, node, "!vault values are not supported by fleet")


_Loader.add_constructor("tag:yaml.org,2002:map", _construct_mapping)
_Loader.add_constructor("tag:yaml.org,2002:seq", _construct_sequence)
_Loader.add_constructor("tag:yaml.org,2002:str", _construct_str)
_Loader.add_constructor("!unsafe", _construct_unsafe)
_Loader.add_constructor("!vault", _construct_vault)


def load_yaml_text(text: str, display: str) -> Any:
    """Parse one YAML document; errors are PlaybookError ``display:LINE: ...``."""
    loader = _Loader(text)
    loader.display = display
    try:
        return loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = ", ".join(p for p in (exc.context, exc.problem) if p) or "invalid syntax"
        if mark is None:
            raise PlaybookError(f"invalid YAML: {problem}", file=display) from None
        where = Origin(display, mark.line + 1)
        raise PlaybookError(f"invalid YAML: {problem} (column {mark.column + 1})", where) from None
    except yaml.YAMLError as exc:
        raise PlaybookError(f"invalid YAML: {exc}", file=display) from None
    finally:
        loader.dispose()


def load_yaml_file(path: str | Path, display: str | None = None) -> Any:
    """Read and parse the YAML file ``path`` (``display``: the name shown in errors)."""
    shown = str(path) if display is None else display
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise PlaybookError("file not found", file=shown) from None
    except OSError as exc:
        raise PlaybookError(f"cannot read: {exc.strerror}", file=shown) from None
    except UnicodeDecodeError:
        raise PlaybookError("not UTF-8 text", file=shown) from None
    return load_yaml_text(text.lstrip("\ufeff"), shown)


def plain(value: Any) -> Any:
    """``value`` with Origin* containers and strings turned into plain ones (deeply).

    ``!unsafe`` strings stay :class:`~fleet.templating.Unsafe`.
    """
    if isinstance(value, dict):
        return {plain(k): plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, OriginStr):
        return str(value)
    return value


def describe(value: Any) -> str:
    """A short description of a YAML value for error messages ("a mapping", ...)."""
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"the string {str(value)!r}"
    if isinstance(value, bool):
        return f"the boolean {value}"
    if isinstance(value, (int, float)):
        return f"the number {value}"
    if value is None:
        return "nothing (null)"
    return type(value).__name__


def origin_of(value: Any, default: Origin) -> Origin:
    """``value.origin`` if it has one, else ``default``."""
    return getattr(value, "origin", None) or default

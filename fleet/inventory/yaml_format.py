"""Ansible's YAML inventory format, and the YAML reading shared with vars files.

::

    all:
      hosts:
        top1:
      children:
        web:
          hosts:
            web[01:03].example.com:
              http_port: 8080
          vars:
            x: 1
          children:
            nginx: {}

Every top-level key is a group (usually just ``all``). In a group, ``hosts``,
``children`` and ``vars`` are mappings (a bare string is taken as a one-entry
mapping); keys are processed in the order written, as Ansible does.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Iterator, Optional, Tuple

import yaml

from .errors import InventoryError
from .ranges import RangeError, expand_host_pattern
from .values import UnsafeText

if TYPE_CHECKING:
    from .model import Inventory

__all__ = ["parse_yaml", "load_yaml", "load_vars_file", "YamlNotInventory"]

_BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_BaseLoader):  # type: ignore[misc, valid-type]
    """Safe loader plus Ansible's ``!unsafe`` and a clear error for ``!vault``."""


def _mark_unsafe(value: Any) -> Any:
    if isinstance(value, str):
        return UnsafeText(value)
    if isinstance(value, list):
        return [_mark_unsafe(v) for v in value]
    if isinstance(value, dict):
        return {k: _mark_unsafe(v) for k, v in value.items()}
    return value


def _construct_unsafe(loader: Any, node: Any) -> Any:
    # Like Ansible, every string under the tag is unsafe, however deep.
    if isinstance(node, yaml.ScalarNode):
        return UnsafeText(loader.construct_scalar(node))
    if isinstance(node, yaml.SequenceNode):
        return _mark_unsafe(loader.construct_sequence(node, deep=True))
    return _mark_unsafe(loader.construct_mapping(node, deep=True))


def _construct_vault(loader: Any, node: Any) -> Any:
    raise yaml.constructor.ConstructorError(
        None, None, "ansible-vault encrypted values (!vault) are not supported", node.start_mark
    )


_Loader.add_constructor("!unsafe", _construct_unsafe)
_Loader.add_constructor("!vault", _construct_vault)


class YamlNotInventory(InventoryError):
    """The text is not a YAML inventory at all (bad YAML, or not a mapping).

    Raised before anything was added to the inventory, so the caller may
    still try the file as INI.
    """


def _yaml_error(
    exc: yaml.YAMLError, display: str, text: str, cls: type = InventoryError
) -> InventoryError:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    line = None
    if mark is not None:
        # A problem found at end of input is reported on the last line, not after it.
        last = max(1, len(text.splitlines()))
        line = min(mark.line + 1, last)
    problem = getattr(exc, "problem", None)
    context = getattr(exc, "context", None)
    if problem:
        reason = f"invalid YAML: {problem}"
        if context:
            reason += f" ({context})"
    else:
        reason = f"invalid YAML: {exc}"
    return cls(reason, display, line)


def _check_vault(text: str, display: str) -> None:
    if text.startswith("$ANSIBLE_VAULT"):
        raise InventoryError("ansible-vault encrypted files are not supported", display, 1)


def load_yaml(text: str, display: str) -> Any:
    """Load one YAML (or JSON) document; errors are one-line InventoryErrors."""
    _check_vault(text, display)
    stripped = text.lstrip()
    if stripped[:1] in ("{", "["):
        # Ansible tries JSON first; it is also much faster for big JSON files.
        try:
            return json.loads(text)
        except ValueError:
            pass
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - a safe loader subclass
    except yaml.YAMLError as exc:
        raise _yaml_error(exc, display, text) from None


def load_vars_file(path: Path, display: str) -> Dict[str, Any]:
    """Read a host_vars/ or group_vars/ file: a mapping, or ``{}`` when empty."""
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise InventoryError("file is not valid UTF-8", display) from None
    except OSError as exc:
        raise InventoryError(f"cannot read: {exc.strerror}", display) from None
    data = load_yaml(text, display)
    if data is None or data == {}:
        return {}
    if not isinstance(data, dict):
        raise InventoryError(f"expected a mapping of variables, got {_kind(data)}", display, 1)
    return data


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, str):
        return f"a string ({value!r})"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return f"{type(value).__name__} {value!r}"


class _YamlInventory:
    def __init__(self, inv: Inventory, loader: Any, display: str, text: str) -> None:
        self.inv = inv
        self.loader = loader
        self.display = display
        self.text = text

    def error(self, reason: str, node: Any) -> InventoryError:
        return InventoryError(reason, self.display, node.start_mark.line + 1)

    def value(self, node: Any) -> Any:
        try:
            return self.loader.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            raise _yaml_error(exc, self.display, self.text) from None

    def pairs(self, node: Any) -> Iterator[Tuple[Any, Any, Any]]:
        """(key, key node, value node) of a mapping node, last duplicate winning."""
        self.loader.flatten_mapping(node)  # resolve "<<" merge keys
        entries: Dict[Any, Tuple[Any, Any]] = {}
        for key_node, value_node in node.value:
            key = self.value(key_node)
            try:
                entries[key] = (key_node, value_node)
            except TypeError:
                raise self.error(f"unhashable mapping key {key!r}", key_node) from None
        for key, (key_node, value_node) in entries.items():
            yield key, key_node, value_node

    @staticmethod
    def is_null(node: Any) -> bool:
        return isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null"

    def document(self, node: Any) -> None:
        for name, key_node, value_node in self.pairs(node):
            self.group(name, key_node, value_node)

    def group(self, name: Any, key_node: Any, node: Any) -> str:
        if not isinstance(name, str) or not name:
            raise self.error(f"group name must be a non-empty string, got {name!r}", key_node)
        if not (self.is_null(node) or isinstance(node, yaml.MappingNode)):
            raise self.error(
                f"group {name!r} must be a mapping (with hosts, children or vars), "
                f"got {_kind(self.value(node))}",
                node,
            )
        self.inv.add_group(name)
        if self.is_null(node):
            return name
        for key, knode, vnode in self.pairs(node):
            if key in ("hosts", "children", "vars"):
                if isinstance(vnode, yaml.ScalarNode) and not self.is_null(vnode):
                    text = self.value(vnode)
                    if isinstance(text, str):
                        # "hosts: web1" is short for "hosts: {web1: }".
                        self.section_from_string(name, key, text, vnode)
                        continue
                if not (self.is_null(vnode) or isinstance(vnode, yaml.MappingNode)):
                    raise self.error(
                        f"invalid {key!r} entry for group {name!r}: requires a mapping, "
                        f"found {_kind(self.value(vnode))}",
                        vnode,
                    )
                if self.is_null(vnode):
                    continue
                getattr(self, "section_" + key)(name, vnode)
            else:
                self.inv.warnings.append(
                    f"{self.display}:{knode.start_mark.line + 1}: skipping unexpected key "
                    f"{key!r} in group {name!r}; only 'hosts', 'children' and 'vars' are valid"
                )
        return name

    def section_from_string(self, group: str, key: str, text: str, node: Any) -> None:
        # Ansible reads a bare string as {string: null} in all three sections.
        if key == "vars":
            self.inv.set_group_var(group, text, None)
        elif key == "hosts":
            self.add_hosts(group, text, {}, node)
        else:
            self.inv.add_group(text)
            self.add_child(group, text, node)

    def section_vars(self, group: str, node: Any) -> None:
        for key, knode, vnode in self.pairs(node):
            if not isinstance(key, str):
                raise self.error(f"variable name must be a string, got {key!r}", knode)
            try:
                self.inv.set_group_var(group, key, self.value(vnode))
            except InventoryError as exc:
                raise exc.located(self.display, vnode.start_mark.line + 1) from None

    def section_children(self, group: str, node: Any) -> None:
        for child, knode, vnode in self.pairs(node):
            self.group(child, knode, vnode)
            self.add_child(group, child, knode)

    def add_child(self, parent: str, child: str, node: Any) -> None:
        try:
            self.inv.add_child(parent, child)
        except InventoryError as exc:
            raise exc.located(self.display, node.start_mark.line + 1) from None

    def section_hosts(self, group: str, node: Any) -> None:
        for pattern, knode, vnode in self.pairs(node):
            variables = {} if self.is_null(vnode) else self.value(vnode)
            if not isinstance(variables, dict):
                raise self.error(
                    f"host {pattern!r} in group {group!r}: expected a mapping of variables, "
                    f"got {_kind(variables)}",
                    vnode,
                )
            self.add_hosts(group, pattern, variables, knode)

    def add_hosts(self, group: str, pattern: Any, variables: Dict[Any, Any], node: Any) -> None:
        if not isinstance(pattern, str):
            raise self.error(f"host pattern {pattern!r} must be a string; quote numbers", node)
        try:
            names, port = expand_host_pattern(pattern)
        except RangeError as exc:
            raise self.error(str(exc), node) from None
        for key in variables:
            if not isinstance(key, str):
                raise self.error(f"variable name must be a string, got {key!r}", node)
        try:
            for name in names:
                self.inv.add_host(name, group, port)
                for key, value in variables.items():
                    self.inv.set_host_var(name, key, value)
        except InventoryError as exc:
            raise exc.located(self.display, node.start_mark.line + 1) from None


def parse_yaml(inv: Inventory, path: Path, text: str, display: Optional[str] = None) -> None:
    """Add the hosts and groups of YAML inventory ``text`` (read from ``path``) to ``inv``.

    Raises :class:`YamlNotInventory` when the text is valid YAML but not a
    mapping (the caller may then try INI), InventoryError for anything else.
    """
    name = display if display is not None else str(path)
    _check_vault(text, name)
    loader = _Loader(text)
    try:
        try:
            root = loader.get_single_node()
        except yaml.YAMLError as exc:
            raise _yaml_error(exc, name, text, YamlNotInventory) from None
        if root is None:
            return  # an empty document is an empty inventory
        if not isinstance(root, yaml.MappingNode):
            raise YamlNotInventory(
                "YAML inventory must be a mapping of group names", name, root.start_mark.line + 1
            )
        parser = _YamlInventory(inv, loader, name, text)
        for key_node, value_node in root.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.value == "plugin":
                plugin = parser.value(value_node)
                if plugin:  # a 'plugin' group with no data is still a group
                    raise InventoryError(
                        f"inventory plugin configuration files are not supported "
                        f"(plugin: {plugin!r})",
                        name,
                        key_node.start_mark.line + 1,
                    )
        parser.document(root)
    finally:
        loader.dispose()


# "---", or a first line that is a lone "key:" (INI host names never end in ':').
_YAML_START_RE = re.compile(r"^(?:---|[^\s=#;\[][^\s=]*:(?:\s|$))")


def looks_like_yaml(text: str) -> bool:
    """Guess from the first meaningful line whether a file was meant as YAML."""
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            return bool(_YAML_START_RE.match(line))
    return False

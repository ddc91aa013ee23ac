"""Jinja2 templating with Ansible's semantics, used for every templated value of a play.

::

    from fleet.templating import render, evaluate_condition

    render("{{ ports | length }}", {"ports": [80, 443]})        # -> 2 (an int)
    render("port {{ ports[0] }}", {"ports": [80, 443]})        # -> "port 80"
    evaluate_condition("ports | length > 1", {"ports": [80]})  # -> False

The rules, as in Ansible (2.19):

- A string that is exactly one ``{{ expression }}`` renders to the expression's value
  with its type (a list stays a list, an int an int); anything else renders to a
  string, where ``None`` shows as the empty string.
- Undefined variables are errors (StrictUndefined), except where a filter or test
  deals with them (``default``, ``mandatory``, ``is defined``); ``a.b.c`` on an
  undefined ``a`` stays undefined, so ``a.b | default(1)`` works.
- Variables are templated lazily: a variable whose value is ``"{{ other }}"`` resolves
  against the same variables when it is used (see :class:`Variables`), and a variable
  that refers to itself is an error instead of an endless loop.
- dicts and lists are rendered item by item (keys too).
- Conditionals (``when``, ``changed_when``, ``failed_when``, ``assert``'s ``that``)
  are bare expressions or booleans; a string that is all template (``"{{ x }}"``) is
  rendered first, and a string result is then evaluated as an expression. The
  result must be a boolean.
- ``omit``: a module argument whose value renders to :data:`OMIT` is dropped
  (:func:`drop_omitted`).

Every problem raises :class:`TemplateError`, whose message is one line naming the
undefined variable or the syntax problem; the caller adds the file and line.
"""

from __future__ import annotations

import base64
import codecs
import hashlib
import json
import os
import re
import shlex
from collections.abc import Mapping
from functools import lru_cache
from itertools import zip_longest
from types import GeneratorType
from typing import Any, Iterable

import jinja2
import yaml
from jinja2 import nodes
from jinja2.parser import Parser

__all__ = [
    "OMIT",
    "TemplateError",
    "Unsafe",
    "Variables",
    "WithItems",
    "drop_omitted",
    "evaluate_condition",
    "evaluate_conditions",
    "is_template",
    "render",
    "render_text",
]

#: The value of the ``omit`` variable; an argument equal to it is dropped.
OMIT = "__omit_place_holder__" + hashlib.sha1(b"fleet omit").hexdigest()

_MARKERS = ("{{", "{%")
_RESULT = "fleet_result__"
_SHOWN = 80  # characters of a template quoted in an error message


class TemplateError(Exception):
    """A template could not be rendered; ``str()`` is one line."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


class Unsafe(str):
    """A string that is never templated (YAML ``!unsafe``, data that must stay literal)."""

    __slots__ = ()


class WithItems(list):
    """The terms of ``with_items``: rendered, then flattened one level, like Ansible.

    ``WithItems([...])`` holds the terms as written (a YAML list);
    ``WithItems(["{{ expr }}"], string=True)`` stands for ``with_items: "{{ expr }}"``,
    whose rendered value (a list) is the terms.
    """

    def __init__(self, items: Iterable = (), string: bool = False) -> None:
        super().__init__(items)
        self.string = string

    def __repr__(self) -> str:
        return f"WithItems({list.__repr__(self)}{', string=True' if self.string else ''})"


# ----------------------------------------------------------------------------- undefined


class _Undefined(jinja2.StrictUndefined):
    """StrictUndefined whose attributes and items are the same undefined value.

    So ``a.b.c`` with ``a`` undefined reports ``'a' is undefined`` when used, and
    ``a.b | default(x)`` gives ``x``, as in Ansible.
    """

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        if name[:2] == "__":
            raise AttributeError(name)
        return self

    def __getitem__(self, key: Any) -> Any:
        return self


def _undefined_message(value: jinja2.Undefined) -> str:
    try:
        str(value)
    except jinja2.UndefinedError as exc:
        return exc.message or "undefined value"
    return "undefined value"  # pragma: no cover - str() of a strict undefined fails


# ----------------------------------------------------------------------------- filters


class _Problem(jinja2.TemplateRuntimeError):
    """A filter, test or lookup refused its input (reported with the template)."""


def _plain(value: Any) -> Any:
    """``value`` with mappings as dicts, sequences as lists, and strings as str."""
    if isinstance(value, jinja2.Undefined):
        raise jinja2.UndefinedError(_undefined_message(value))
    if isinstance(value, Mapping):
        return {_plain(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, str):
        return str(value)
    return value


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if value is None:
        return False
    if isinstance(value, str):
        return value.strip().lower() in ("yes", "on", "1", "true", "y", "t")
    if isinstance(value, (int, float)):
        return value == 1
    return False


def _to_json(value: Any, *args: Any, **kwargs: Any) -> str:
    return json.dumps(_plain(value), *args, **kwargs)


def _to_nice_json(value: Any, indent: int = 4, sort_keys: bool = True, **kwargs: Any) -> str:
    return json.dumps(
        _plain(value), indent=indent, sort_keys=sort_keys, separators=(",", ": "), **kwargs
    )


def _from_json(value: Any) -> Any:
    try:
        return json.loads(value)
    except (TypeError, ValueError) as exc:
        raise _Problem(f"from_json: {exc}") from None


def _yaml_dump(value: Any, **kwargs: Any) -> str:
    kwargs.setdefault("allow_unicode", True)
    text = yaml.safe_dump(_plain(value), **kwargs)
    # A bare scalar ends with the document end marker; Ansible's output has none.
    return text[: -len("...\n")] if text.endswith("\n...\n") else text


def _to_yaml(value: Any, **kwargs: Any) -> str:
    kwargs.setdefault("default_flow_style", None)
    return _yaml_dump(value, **kwargs)


def _to_nice_yaml(value: Any, indent: int = 4, **kwargs: Any) -> str:
    kwargs.setdefault("default_flow_style", False)
    return _yaml_dump(value, indent=indent, **kwargs)


def _from_yaml(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return yaml.safe_load(value)
    except yaml.YAMLError as exc:
        raise _Problem("from_yaml: " + " ".join(str(exc).split())) from None


def _flags(ignorecase: bool, multiline: bool) -> int:
    return (re.I if ignorecase else 0) | (re.M if multiline else 0)


def _regex_replace(
    value: Any = "",
    pattern: str = "",
    replacement: str = "",
    ignorecase: bool = False,
    multiline: bool = False,
    count: int = 0,
    mandatory_count: int = 0,
) -> str:
    text, found = re.compile(pattern, _flags(ignorecase, multiline)).subn(
        replacement, str(value), count=count
    )
    if mandatory_count and found != mandatory_count:
        raise _Problem(f"regex_replace: {found} substitutions, expected {mandatory_count}")
    return text


def _regex_search(
    value: Any, regex: str, *groups: str, ignorecase: bool = False, multiline: bool = False
) -> Any:
    match = re.search(regex, str(value), _flags(ignorecase, multiline))
    if match is None:
        return None
    if not groups:
        return match.group(0)
    found = []
    for ref in groups:
        named = re.fullmatch(r"\\g<(\w+)>", ref)
        numbered = re.fullmatch(r"\\(\d+)", ref)
        if named:
            found.append(match.group(named.group(1)))
        elif numbered:
            found.append(match.group(int(numbered.group(1))))
        else:
            raise _Problem(f"regex_search: unknown group reference {ref!r}")
    return found


def _regex_findall(
    value: Any, regex: str, multiline: bool = False, ignorecase: bool = False
) -> list:
    return re.findall(regex, str(value), _flags(ignorecase, multiline))


def _mandatory(value: Any, msg: str | None = None) -> Any:
    if isinstance(value, jinja2.Undefined):
        raise _Problem(msg or f"mandatory variable not defined: {_undefined_message(value)}")
    return value


def _quote(value: Any) -> str:
    return shlex.quote("" if value is None else str(value))


def _merge(left: dict, right: Mapping, recursive: bool, list_merge: str) -> dict:
    merged = dict(left)
    for key, value in right.items():
        old = merged.get(key)
        if recursive and isinstance(old, Mapping) and isinstance(value, Mapping):
            merged[key] = _merge(dict(old), value, recursive, list_merge)
        elif isinstance(old, list) and isinstance(value, list) and list_merge != "replace":
            if list_merge == "keep":
                merged[key] = old
            elif list_merge == "append":
                merged[key] = old + value
            elif list_merge == "prepend":
                merged[key] = value + old
            elif list_merge == "append_rp":
                merged[key] = [x for x in old if x not in value] + value
            else:  # prepend_rp
                merged[key] = value + [x for x in old if x not in value]
        else:
            merged[key] = value
    return merged


def _combine(*terms: Any, recursive: bool = False, list_merge: str = "replace") -> dict:
    if list_merge not in ("replace", "keep", "append", "prepend", "append_rp", "prepend_rp"):
        raise _Problem(f"combine: unknown list_merge {list_merge!r}")
    dicts = []
    for term in terms:
        dicts.extend(term if isinstance(term, list) else [term])
    result: dict = {}
    for item in dicts:
        if not isinstance(item, Mapping):
            raise _Problem(f"combine: expected mappings, got {type(item).__name__}")
        result = _merge(result, item, recursive, list_merge)
    return result


def _dict2items(value: Any, key_name: str = "key", value_name: str = "value") -> list:
    if not isinstance(value, Mapping):
        raise _Problem(f"dict2items: expected a mapping, got {type(value).__name__}")
    return [{key_name: k, value_name: v} for k, v in value.items()]


def _items2dict(value: Any, key_name: str = "key", value_name: str = "value") -> dict:
    try:
        return {item[key_name]: item[value_name] for item in value}
    except (KeyError, TypeError) as exc:
        raise _Problem(
            f"items2dict: every item needs {key_name!r} and {value_name!r} ({exc})"
        ) from None


def _b64encode(value: Any, encoding: str = "utf-8") -> str:
    return base64.b64encode(str(value).encode(encoding)).decode("ascii")


def _b64decode(value: Any, encoding: str = "utf-8") -> str:
    return base64.b64decode(str(value)).decode(encoding)


def _unique_list(items: Iterable) -> list:
    seen: list = []
    for item in items:
        if item not in seen:
            seen.append(item)
    return seen


def _unique(value: Iterable, case_sensitive: bool = False, attribute: Any = None) -> list:
    """Ansible's unique: first occurrences, strings compared case-insensitively unless
    ``case_sensitive``; ``attribute`` compares that key of each item."""
    seen: list = []
    result = []
    for item in value:
        key = item
        if attribute is not None:
            key = item[attribute] if isinstance(item, Mapping) else getattr(item, attribute)
        if isinstance(key, str) and not case_sensitive:
            key = key.lower()
        if key not in seen:
            seen.append(key)
            result.append(item)
    return result


def _union(a: Iterable, b: Iterable) -> list:
    return _unique_list([*a, *b])


def _intersect(a: Iterable, b: Iterable) -> list:
    b = list(b)
    return _unique_list(x for x in a if x in b)


def _difference(a: Iterable, b: Iterable) -> list:
    b = list(b)
    return _unique_list(x for x in a if x not in b)


def _symmetric_difference(a: Iterable, b: Iterable) -> list:
    a, b = list(a), list(b)
    return _unique_list([x for x in a if x not in b] + [x for x in b if x not in a])


def _flatten(value: Any, levels: int | None = None, skip_nulls: bool = True) -> list:
    result: list = []
    for item in value:
        if skip_nulls and item in (None, "None", "null"):
            continue
        if isinstance(item, (list, tuple)) and (levels is None or levels > 0):
            result.extend(_flatten(item, None if levels is None else levels - 1, skip_nulls))
        else:
            result.append(item)
    return result


def _zip(*lists: Iterable) -> list:
    return [list(t) for t in zip(*lists)]


def _zip_longest(*lists: Iterable, fillvalue: Any = None) -> list:
    return [list(t) for t in zip_longest(*lists, fillvalue=fillvalue)]


def _ternary(value: Any, true_val: Any, false_val: Any, none_val: Any = None) -> Any:
    if value is None and none_val is not None:
        return none_val
    return true_val if value else false_val


def _hash(value: Any, hashtype: str = "sha1") -> str:
    try:
        digest = hashlib.new(hashtype)
    except ValueError:
        raise _Problem(f"hash: unknown hash type {hashtype!r}") from None
    digest.update(value if isinstance(value, bytes) else str(value).encode("utf-8"))
    return digest.hexdigest()


def _split(value: Any, sep: str | None = None, maxsplit: int = -1) -> list:
    return str(value).split(sep, maxsplit)


def _type_debug(value: Any) -> str:
    return type(value).__name__


def _extract(item: Any, container: Any, morekeys: Any = None) -> Any:
    value = container[item]
    keys = [] if morekeys is None else morekeys if isinstance(morekeys, list) else [morekeys]
    for key in keys:
        value = value[key]
    return value


def _path_join(parts: Any) -> str:
    if isinstance(parts, str):
        return parts
    return os.path.join(*[str(p) for p in parts])


FILTERS = {
    "b64decode": _b64decode,
    "b64encode": _b64encode,
    "basename": lambda p: os.path.basename(str(p)),
    "bool": _to_bool,
    "checksum": lambda v: _hash(v, "sha1"),
    "combine": _combine,
    "dict2items": _dict2items,
    "difference": _difference,
    "dirname": lambda p: os.path.dirname(str(p)),
    "extract": _extract,
    "flatten": _flatten,
    "from_json": _from_json,
    "from_yaml": _from_yaml,
    "hash": _hash,
    "intersect": _intersect,
    "items2dict": _items2dict,
    "mandatory": _mandatory,
    "md5": lambda v: _hash(v, "md5"),
    "path_join": _path_join,
    "quote": _quote,
    "regex_escape": lambda v: re.escape(str(v)),
    "regex_findall": _regex_findall,
    "regex_replace": _regex_replace,
    "regex_search": _regex_search,
    "sha1": lambda v: _hash(v, "sha1"),
    "split": _split,
    "splitext": lambda p: list(os.path.splitext(str(p))),
    "symmetric_difference": _symmetric_difference,
    "ternary": _ternary,
    "to_json": _to_json,
    "to_nice_json": _to_nice_json,
    "to_nice_yaml": _to_nice_yaml,
    "to_yaml": _to_yaml,
    "type_debug": _type_debug,
    "union": _union,
    "unique": _unique,
    "zip": _zip,
    "zip_longest": _zip_longest,
}


# ----------------------------------------------------------------------------- tests


def _result(value: Any, test: str) -> Mapping:
    if not isinstance(value, Mapping):
        raise _Problem(f"the {test!r} test expects a task result (a mapping)")
    return value


def _failed(value: Any) -> bool:
    return _to_bool(_result(value, "failed").get("failed", False))


def _succeeded(value: Any) -> bool:
    return not _to_bool(_result(value, "succeeded").get("failed", False))


def _changed(value: Any) -> bool:
    result = _result(value, "changed")
    if "changed" in result:
        return _to_bool(result["changed"])
    return any(
        isinstance(r, Mapping) and _to_bool(r.get("changed", False))
        for r in result.get("results", ())
    )


def _skipped(value: Any) -> bool:
    return _to_bool(_result(value, "skipped").get("skipped", False))


def _unreachable(value: Any) -> bool:
    return _to_bool(_result(value, "unreachable").get("unreachable", False))


def _regex_test(
    value: Any,
    pattern: str = "",
    ignorecase: bool = False,
    multiline: bool = False,
    match_type: str = "search",
) -> bool:
    flags = _flags(ignorecase, multiline)
    if match_type not in ("search", "match", "fullmatch"):
        raise _Problem(f"regex: unknown match_type {match_type!r}")
    return getattr(re, match_type)(pattern, str(value), flags) is not None


_LOOSE_RE = re.compile(r"(\d+|[a-z]+|\.)")
_STRICT_RE = re.compile(r"^(\d+)\.(\d+)(?:\.(\d+))?(?:([ab])(\d+))?$", re.ASCII)
_OPERATORS = {
    "==": "eq", "=": "eq", "eq": "eq", "<": "lt", "lt": "lt", "<=": "le", "le": "le",
    ">": "gt", "gt": "gt", ">=": "ge", "ge": "ge", "!=": "ne", "<>": "ne", "ne": "ne",
}  # fmt: skip


def _loose_key(text: str) -> list:
    parts = [p for p in _LOOSE_RE.split(text) if p and p != "."]
    return [int(p) if p.isdigit() else p for p in parts]


def _strict_key(text: str) -> tuple:
    match = _STRICT_RE.match(text)
    if match is None:
        raise _Problem(f"version: invalid strict version {text!r}")
    major, minor, patch, pre, pre_num = match.groups()
    release = (int(major), int(minor), int(patch or 0))
    # A release sorts after its pre-releases: ("~",) > ("a", n) and ("b", n).
    return release, (pre, int(pre_num)) if pre else ("~", 0)


def _version(
    value: Any,
    version: Any = "",
    operator: str = "eq",
    strict: Any = None,
    version_type: str | None = None,
) -> bool:
    if operator not in _OPERATORS:
        raise _Problem(f"version: invalid operator {operator!r}")
    if strict and version_type is None:
        version_type = "strict"
    kind = version_type or "loose"
    if kind not in ("loose", "strict"):
        raise _Problem(f"version: version_type {kind!r} is not supported (loose, strict)")
    key = _loose_key if kind == "loose" else _strict_key
    try:
        left, right = key(str(value)), key(str(version))
        op = _OPERATORS[operator]
        return {
            "eq": left == right, "ne": left != right, "lt": left < right,
            "le": left <= right, "gt": left > right, "ge": left >= right,
        }[op]  # fmt: skip
    except TypeError as exc:
        raise _Problem(f"version comparison failed: {exc}") from None


def _contains(seq: Any, value: Any) -> bool:
    return value in seq


def _subset(a: Any, b: Any) -> bool:
    return all(x in b for x in a)


def _superset(a: Any, b: Any) -> bool:
    return all(x in a for x in b)


TESTS = {
    "change": _changed,
    "changed": _changed,
    "contains": _contains,
    "failed": _failed,
    "failure": _failed,
    "match": lambda v, p="", ignorecase=False, multiline=False: _regex_test(
        v, p, ignorecase, multiline, "match"
    ),
    "regex": _regex_test,
    "search": lambda v, p="", ignorecase=False, multiline=False: _regex_test(
        v, p, ignorecase, multiline, "search"
    ),
    "skip": _skipped,
    "skipped": _skipped,
    "subset": _subset,
    "succeeded": _succeeded,
    "success": _succeeded,
    "superset": _superset,
    "unreachable": _unreachable,
    "version": _version,
    "version_compare": _version,
}


def _lookup(name: str, *terms: Any, **kwargs: Any) -> Any:
    """lookup()/query(): only ``env`` is supported (the controller's environment)."""
    if name in ("env", "ansible.builtin.env"):
        default = kwargs.get("default", "")
        return ",".join(os.environ.get(str(t), default) for t in terms)
    raise _Problem(f"lookup plugin {name!r} is not supported by fleet (only 'env')")


def _query(name: str, *terms: Any, **kwargs: Any) -> list:
    if name in ("env", "ansible.builtin.env"):
        default = kwargs.get("default", "")
        return [os.environ.get(str(t), default) for t in terms]
    raise _Problem(f"lookup plugin {name!r} is not supported by fleet (only 'env')")


def _finalize(value: Any) -> Any:
    return "" if value is None else value


def _make_environment() -> jinja2.Environment:
    env = jinja2.Environment(
        undefined=_Undefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        finalize=_finalize,
        autoescape=False,
        extensions=["jinja2.ext.loopcontrols"],
    )
    for name, func in FILTERS.items():
        env.filters[name] = func
        env.filters["ansible.builtin." + name] = func
    for name, func in TESTS.items():
        env.tests[name] = func
        env.tests["ansible.builtin." + name] = func
    env.globals.update(lookup=_lookup, query=_query, q=_query)
    return env


#: The one environment; filters and tests are registered under their short names and
#: as ``ansible.builtin.<name>``.
ENV = _make_environment()


# ----------------------------------------------------------------------------- variables


class Variables(Mapping):
    """Variables whose values are templated, against these same variables, on access.

    ``data`` maps names to raw values. Names in ``literal`` are returned as they are
    (facts, registered results, set_fact values, loop items: data, not templates).
    Names in ``hidden`` can be looked up but are not listed (``hostvars`` inside
    ``hostvars[host]``).
    Rendered values are cached; a variable that needs itself is a TemplateError.
    """

    def __init__(
        self, data: Mapping, literal: Iterable[str] = (), hidden: Iterable[str] = ()
    ) -> None:
        self._data = data
        self._literal = frozenset(literal)
        self._hidden = frozenset(hidden)
        self._cache: dict = {}
        self._active: list = []

    def __getitem__(self, key: str) -> Any:
        try:
            return self._cache[key]
        except KeyError:
            pass
        raw = self._data[key]
        if key in self._literal:
            return raw
        if key in self._active:
            chain = " -> ".join([*self._active[self._active.index(key) :], key])
            raise TemplateError(f"recursive loop detected in template: {chain}")
        self._active.append(key)
        try:
            value = _render(raw, self)
        finally:
            self._active.pop()
        self._cache[key] = value
        return value

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __iter__(self):
        return (key for key in self._data if key not in self._hidden)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def raw(self, key: str) -> Any:
        """The value of ``key`` before templating."""
        return self._data[key]

    def __repr__(self) -> str:
        return f"Variables({len(self._data)} names)"


class _Scope:
    """What a jinja context sees: the variables, then ``vars`` and the globals."""

    __slots__ = ("variables",)

    def __init__(self, variables: Variables) -> None:
        self.variables = variables

    def __contains__(self, key: object) -> bool:
        return key in self.variables or key == "vars" or key in ENV.globals

    def __getitem__(self, key: str) -> Any:
        if key in self.variables:
            return self.variables[key]
        if key == "vars":
            return self.variables
        return ENV.globals[key]

    def keys(self):
        """The variable names (what jinja's ``Context.get_all`` copies)."""
        return list(self.variables)


def _as_variables(variables: Any) -> Variables:
    if isinstance(variables, Variables):
        return variables
    return Variables(variables or {})


# ----------------------------------------------------------------------------- rendering


def _shown(source: str) -> str:
    text = source if len(source) <= _SHOWN else source[: _SHOWN - 3] + "..."
    return repr(text)


def _error(exc: BaseException, source: str) -> TemplateError:
    if isinstance(exc, TemplateError):
        return exc
    if isinstance(exc, jinja2.TemplateSyntaxError):
        where = f" (line {exc.lineno})" if "\n" in source.strip() and exc.lineno else ""
        message = (exc.message or "invalid syntax").rstrip(".")
        return TemplateError(f"template syntax error{where}: {message} in {_shown(source)}")
    if isinstance(exc, jinja2.UndefinedError):
        return TemplateError(f"{exc.message} in {_shown(source)}")
    if isinstance(exc, RecursionError):
        return TemplateError(f"recursive loop detected in template {_shown(source)}")
    if isinstance(exc, jinja2.TemplateError):
        return TemplateError(f"{exc.message or type(exc).__name__} in {_shown(source)}")
    return TemplateError(f"{type(exc).__name__}: {exc} in {_shown(source)}")


def _literal_backslashes(source: str) -> str:
    """``source`` with backslashes in Jinja string literals doubled.

    Ansible does this so that a backslash written in a playbook (already unescaped
    by YAML) reaches the filter as written: ``regex_replace('(\\w+)', '\\1')``.
    """
    if "\\" not in source:
        return source
    try:
        tokens = list(ENV.lex(source))
    except jinja2.TemplateSyntaxError:
        return source  # compiling reports it
    return "".join(
        value.replace("\\", "\\\\") if kind == "string" else value for _, kind, value in tokens
    )


def _expression_template(expr: nodes.Expr) -> jinja2.Template:
    tree = nodes.Template([nodes.Assign(nodes.Name(_RESULT, "store"), expr)], lineno=1)
    tree.set_environment(ENV)
    return ENV.from_string(tree)


def _parse(source: str) -> nodes.Template:
    return ENV.parse(_literal_backslashes(source))


@lru_cache(maxsize=4096)
def _compile(source: str) -> jinja2.Template | None:
    """The template of ``source``'s one expression when it is exactly one, else None."""
    try:
        body = _parse(source).body
        if (
            len(body) == 1
            and isinstance(body[0], nodes.Output)
            and len(body[0].nodes) == 1
            and not isinstance(body[0].nodes[0], nodes.TemplateData)
        ):
            return _expression_template(body[0].nodes[0])
        return None
    except Exception as exc:
        raise _error(exc, source) from None


@lru_cache(maxsize=1024)
def _compile_text(source: str) -> jinja2.Template:
    """``source`` compiled to render a string."""
    try:
        return ENV.from_string(_parse(source))
    except Exception as exc:
        raise _error(exc, source) from None


@lru_cache(maxsize=4096)
def _compile_expression(source: str) -> jinja2.Template:
    try:
        parser = Parser(ENV, _literal_backslashes("{{ " + source + " }}")[3:-3], state="variable")
        expr = parser.parse_expression()
        if not parser.stream.eos:
            token = parser.stream.current
            raise jinja2.TemplateSyntaxError(
                f"unexpected {str(token.value)!r} after the expression", token.lineno
            )
        return _expression_template(expr)
    except Exception as exc:
        raise _error(exc, source) from None


def _checked(value: Any) -> Any:
    """A native result with undefined parts reported, lazy mappings made dicts and
    generators (``map``, ``select`` ...) made lists."""
    if isinstance(value, GeneratorType):
        value = list(value)
    if isinstance(value, jinja2.Undefined):
        raise jinja2.UndefinedError(_undefined_message(value))
    if isinstance(value, dict):
        return {k: _checked(v) for k, v in value.items()}
    if isinstance(value, Mapping):
        return {k: _checked(value[k]) for k in value}
    if isinstance(value, list):
        return [_checked(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_checked(v) for v in value)
    return value


def _run_expression(template: jinja2.Template, variables: Variables) -> Any:
    context = template.new_context(_Scope(variables), shared=True)  # type: ignore[arg-type]
    for _ in template.root_render_func(context):
        pass
    return _checked(context.vars[_RESULT])


def _render_string(source: str, variables: Variables, text: bool) -> Any:
    native = None if text else _compile(source)
    template = native or _compile_text(source)
    try:
        if native is not None:
            return _run_expression(native, variables)
        context = template.new_context(_Scope(variables), shared=True)  # type: ignore[arg-type]
        return ENV.concat(template.root_render_func(context))  # type: ignore[attr-defined]
    except Exception as exc:
        raise _error(exc, source) from None


def _render(value: Any, variables: Variables) -> Any:
    if isinstance(value, str):
        if isinstance(value, Unsafe) or not is_template(value):
            return value
        return _render_string(value, variables, text=False)
    if isinstance(value, WithItems):
        if value.string:
            rendered = _render(value[0], variables)
            terms = rendered if isinstance(rendered, list) else [rendered]
        else:
            terms = [_render(term, variables) for term in value]
        items: list = []
        for term in terms:
            items.extend(term if isinstance(term, list) else [term])
        return items
    if isinstance(value, dict):
        return {_render(k, variables): _render(v, variables) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_render(v, variables) for v in value]
    return value


def render(value: Any, variables: Mapping | None = None) -> Any:
    """Template ``value`` (a string, or dicts and lists of them) with ``variables``.

    ``variables`` is a :class:`Variables` or any mapping (its values are then
    templated lazily too). Returns the value with its native type when a string is
    exactly one expression; see the module docstring. Raises TemplateError.
    """
    return _render(value, _as_variables(variables))


def render_text(source: str, variables: Mapping | None = None) -> str:
    """Render ``source`` to a string (template files: never a native value)."""
    if isinstance(source, Unsafe):
        return str(source)
    return _render_string(source, _as_variables(variables), text=True)


def is_template(value: Any) -> bool:
    """True if ``value`` is a string with ``{{`` or ``{%`` (or a dict/list holding one)."""
    if isinstance(value, str):
        return not isinstance(value, Unsafe) and any(m in value for m in _MARKERS)
    if isinstance(value, dict):
        return any(is_template(k) or is_template(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return any(is_template(v) for v in value)
    return False


def _all_template(text: str) -> bool:
    stripped = text.strip()
    return stripped.startswith(_MARKERS) and stripped.endswith(("}}", "%}"))


def _evaluate_expression(source: str, variables: Variables) -> Any:
    template = _compile_expression(source)
    try:
        return _run_expression(template, variables)
    except Exception as exc:
        raise _error(exc, source) from None


def evaluate_condition(condition: Any, variables: Mapping | None = None) -> bool:
    """Evaluate one ``when``-style condition with Ansible's (2.19) rules.

    ``condition`` is a bool, or a bare Jinja expression (``x is defined and x > 1``),
    or a string that is all template (``"{{ flag }}"``: rendered, and a string
    result evaluated as an expression). The result must be a boolean; anything else
    is a TemplateError, as are undefined variables.
    """
    if isinstance(condition, bool):
        return condition
    if not isinstance(condition, str):
        raise TemplateError(
            f"conditional expressions must be strings or booleans, "
            f"got {type(condition).__name__} {condition!r}"
        )
    scope = _as_variables(variables)
    if not condition.strip():
        raise TemplateError("empty conditional expression")
    if isinstance(condition, Unsafe):
        raise TemplateError(f"conditional {_shown(condition)} is marked unsafe")
    if _all_template(condition):
        result = _render_string(condition, scope, text=False)
        if isinstance(result, str):
            if not result.strip():
                raise TemplateError(f"conditional {_shown(condition)} rendered to ''")
            result = _evaluate_expression(result, scope)
    else:
        result = _evaluate_expression(condition, scope)
    if not isinstance(result, bool):
        raise TemplateError(
            f"conditional result ({bool(result)}) of {_shown(condition)} was derived from "
            f"a value of type {type(result).__name__!r}; conditionals must have a boolean "
            f"result (use '| bool', '| length > 0', 'is defined', ...)"
        )
    return result


def evaluate_conditions(conditions: Iterable[Any], variables: Mapping | None = None) -> bool:
    """True if every condition holds (stops at the first that does not); [] is True."""
    scope = _as_variables(variables)
    return all(evaluate_condition(c, scope) for c in conditions)


def syntax_check(value: Any) -> None:
    """Compile every template in ``value`` (no variables needed); TemplateError if one
    does not parse or names an unknown filter or test."""
    if isinstance(value, str):
        if is_template(value) and _compile(value) is None:
            _compile_text(value)
    elif isinstance(value, dict):
        for key, item in value.items():
            syntax_check(key)
            syntax_check(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            syntax_check(item)


def condition_syntax_check(condition: Any) -> None:
    """Compile a condition (see :func:`evaluate_condition`); TemplateError if it cannot."""
    if isinstance(condition, bool):
        return
    if not isinstance(condition, str):
        raise TemplateError(
            f"conditional expressions must be strings or booleans, "
            f"got {type(condition).__name__} {condition!r}"
        )
    if not condition.strip():
        raise TemplateError("empty conditional expression")
    if _all_template(condition):
        syntax_check(condition)
    else:
        _compile_expression(condition)


def drop_omitted(args: Any) -> Any:
    """``args`` without the values equal to :data:`OMIT` (dict keys and list items,
    at any depth)."""
    if isinstance(args, dict):
        return {k: drop_omitted(v) for k, v in args.items() if v != OMIT}
    if isinstance(args, list):
        return [drop_omitted(v) for v in args if v != OMIT]
    return args


def decode_escapes(text: str) -> str:
    """Python-style backslash escapes in ``text`` decoded (Ansible's k=v strings)."""
    return _ESCAPE_RE.sub(lambda m: codecs.decode(m.group(0), "unicode-escape"), text)


_ESCAPE_RE = re.compile(
    r"\\(?:U[0-9a-fA-F]{8}|u[0-9a-fA-F]{4}|x[0-9a-fA-F]{2}|[0-7]{1,3}|N\{[^}]+\}|[\\'\"abfnrtv])"
)

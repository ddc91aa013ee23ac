"""load_playbook: YAML -> :class:`~fleet.playbook.model.Playbook`, structure checked.

What is checked here is the shape of the playbook: keywords, their types, one known
action per task, handlers only where they belong. Arguments are checked against
each action's spec by :func:`fleet.playbook.check.check_playbook`.
"""

from __future__ import annotations

import difflib
import keyword
import re
from pathlib import Path
from typing import Any

from fleet import modules
from fleet.templating import WithItems, is_template

from .errors import PlaybookError
from .kv import KVError, parse_free_form, parse_kv, split_args
from .model import Block, Origin, Play, Playbook, Task
from .yaml_loader import describe as _kind
from .yaml_loader import load_yaml_file, origin_of, plain

__all__ = ["load_playbook", "PLAY_KEYWORDS", "TASK_KEYWORDS", "BLOCK_KEYWORDS"]

PLAY_KEYWORDS = (
    "name", "hosts", "gather_facts", "vars", "vars_files", "become", "become_user",
    "serial", "strategy", "pre_tasks", "tasks", "post_tasks", "handlers", "tags",
    "ignore_errors", "project",
)  # fmt: skip
TASK_KEYWORDS = (
    "name", "action", "args", "when", "loop", "with_items", "with_list", "loop_control",
    "register", "notify", "tags", "ignore_errors", "changed_when", "failed_when", "vars",
    "become", "become_user", "listen", "check_mode", "no_log",
)  # fmt: skip
BLOCK_KEYWORDS = (
    "name", "block", "rescue", "always", "when", "tags", "vars", "become", "become_user",
    "ignore_errors",
)  # fmt: skip
LOOP_CONTROL = ("loop_var",)
_PROJECT_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}")

# Ansible keywords fleet does not implement: named as unsupported, not as typos.
_ANSIBLE_COMMON = (
    "any_errors_fatal", "become_exe", "become_flags", "become_method", "check_mode",
    "collections", "connection", "debugger", "diff", "environment", "ignore_unreachable",
    "module_defaults", "no_log", "port", "remote_user", "run_once", "throttle", "timeout",
)  # fmt: skip
_ANSIBLE_PLAY = _ANSIBLE_COMMON + (
    "fact_path", "force_handlers", "gather_subset", "gather_timeout", "max_fail_percentage",
    "order", "vars_prompt",
)  # fmt: skip
_ANSIBLE_TASK = _ANSIBLE_COMMON + (
    "async", "delay", "delegate_facts", "delegate_to", "local_action", "poll", "retries",
    "until",
)  # fmt: skip
_INCLUDES = (
    "include",
    "include_tasks",
    "import_tasks",
    "include_role",
    "import_role",
    "import_playbook",
    "roles",
)


class _Context:
    """Where we are: the file shown in errors."""

    def __init__(self, display: str) -> None:
        self.display = display

    def fail(self, message: str, where: Any) -> PlaybookError:
        """A PlaybookError at ``where`` (an Origin, or a YAML value carrying one)."""
        origin = where if isinstance(where, Origin) else origin_of(where, Origin(self.display, 1))
        return PlaybookError(message, origin)


def _where(ds: dict, key: str) -> Origin:
    return ds.key_origins.get(key, ds.origin)  # type: ignore[attr-defined]


def _strip_prefix(name: str) -> str:
    for prefix in modules.PREFIXES:
        if name.startswith(prefix):
            return name[len(prefix) :]
    return name


def _suggest(word: str, choices: Any) -> list[str]:
    return difflib.get_close_matches(word, list(choices), n=3, cutoff=0.6)


def _did_you_mean(word: str, choices: Any) -> str:
    close = _suggest(word, choices)
    return f" (did you mean: {', '.join(close)}?)" if close else ""


def _include_error(ctx: _Context, key: str, where: Origin) -> PlaybookError:
    base = _strip_prefix(key)
    if base == "roles":
        hint = "put the role's tasks in the play"
    elif base == "import_playbook":
        hint = "list the plays in one playbook"
    else:
        hint = "put the tasks in the play, or group them with block"
    return ctx.fail(f"'{key}' is not supported by fleet: {hint}", where)


def _check_keys(ctx: _Context, ds: dict, kind: str, allowed: tuple, ansible: tuple) -> None:
    for key in ds:
        if not isinstance(key, str):
            raise ctx.fail(f"{kind} keywords must be strings, got {_kind(key)}", _where(ds, key))
        if key in allowed:
            continue
        where = _where(ds, key)
        if _strip_prefix(key) in _INCLUDES:
            raise _include_error(ctx, key, where)
        if key in ansible or key in TASK_KEYWORDS + PLAY_KEYWORDS + BLOCK_KEYWORDS:
            raise ctx.fail(f"{kind} keyword '{key}' is not supported by fleet", where)
        close = _suggest(key, allowed)
        hint = f"did you mean: {', '.join(close)}?" if close else "known: " + ", ".join(allowed)
        raise ctx.fail(f"unknown {kind} keyword '{key}' ({hint})", where)


# ----------------------------------------------------------------------------- values


def _string(ctx: _Context, ds: dict, key: str, default: Any = None) -> Any:
    value = ds.get(key)
    if value is None:
        return default
    if isinstance(value, (dict, list)):
        raise ctx.fail(f"{key}: expected a string, got {_kind(value)}", _where(ds, key))
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _bool(ctx: _Context, ds: dict, key: str, default: Any) -> Any:
    """A boolean keyword (Ansible's yes/no/true/false forms); no templates."""
    value = ds.get(key)
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in ("yes", "on", "1", "true", "y", "t"):
            return True
        if lowered in ("no", "off", "0", "false", "n", "f"):
            return False
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    extra = " (templates are not supported here)" if is_template(value) else ""
    raise ctx.fail(f"{key}: expected a boolean, got {_kind(value)}{extra}", _where(ds, key))


def _bool_or_template(ctx: _Context, ds: dict, key: str) -> Any:
    value = ds.get(key)
    if isinstance(value, str) and is_template(value):
        return str(value)
    return _bool(ctx, ds, key, False)


def _string_list(ctx: _Context, ds: dict, key: str) -> list[str]:
    """A string or a list of strings (numbers are taken as strings)."""
    value = ds.get(key)
    if value is None:
        return []
    items = value if isinstance(value, list) else [value]
    result = []
    for item in items:
        if isinstance(item, (dict, list)) or item is None or isinstance(item, bool):
            raise ctx.fail(
                f"{key}: expected a string or a list of strings, got {_kind(item)}",
                origin_of(item, _where(ds, key)),
            )
        result.append(str(item))
    return result


def _tags(ctx: _Context, ds: dict, inherited: list[str]) -> list[str]:
    tags = list(inherited)
    for item in _string_list(ctx, ds, "tags"):
        for tag in item.split(","):
            tag = tag.strip()
            if tag and tag not in tags:
                tags.append(tag)
    return tags


def _conditions(ctx: _Context, ds: dict, key: str) -> list:
    value = ds[key]
    if value is None:
        return []
    items = value if isinstance(value, list) else [value]
    result = []
    for item in items:
        if not isinstance(item, (str, bool)):
            raise ctx.fail(
                f"{key}: conditions must be strings or booleans, got {_kind(item)}",
                origin_of(item, _where(ds, key)),
            )
        result.append(plain(item))
    return result


def _identifier(name: Any) -> bool:
    return isinstance(name, str) and name.isidentifier() and not keyword.iskeyword(name)


def _vars(ctx: _Context, ds: dict, key: str = "vars") -> dict:
    value = ds.get(key)
    if value is None:
        return {}
    parts = value if isinstance(value, list) else [value]
    result: dict = {}
    for part in parts:
        if not isinstance(part, dict):
            raise ctx.fail(f"{key}: expected a mapping, got {_kind(part)}", _where(ds, key))
        for name in part:
            if not _identifier(name):
                where = part.key_origins.get(name, part.origin)  # type: ignore[attr-defined]
                raise ctx.fail(f"{key}: {str(name)!r} is not a valid variable name", where)
        result.update(plain(part))
    return result


def _serial(ctx: _Context, ds: dict) -> list | None:
    value = ds.get("serial")
    if value is None:
        return None
    items = value if isinstance(value, list) else [value]
    result: list = []
    for item in items:
        if isinstance(item, int) and not isinstance(item, bool) and item >= 0:
            result.append(item)
            continue
        if isinstance(item, str):
            text = item.strip()
            if text.isdigit():
                result.append(int(text))
                continue
            if text.endswith("%") and text[:-1].strip().replace(".", "", 1).isdigit():
                result.append(text)
                continue
            if is_template(text):
                result.append(str(item))
                continue
        raise ctx.fail(
            f"serial: expected a number of hosts or a percentage like '30%', got {_kind(item)}",
            _where(ds, "serial"),
        )
    if not result:
        raise ctx.fail("serial: the list is empty", _where(ds, "serial"))
    return result


# ----------------------------------------------------------------------------- plays


def _play(ctx: _Context, ds: Any, where: Origin) -> Play:
    if not isinstance(ds, dict):
        raise ctx.fail(f"a play must be a mapping, got {_kind(ds)}", where)
    _check_keys(ctx, ds, "play", PLAY_KEYWORDS, _ANSIBLE_PLAY)
    hosts = ds.get("hosts")
    if hosts is None:
        raise ctx.fail("the play has no 'hosts'", ds.origin)
    if isinstance(hosts, list):
        parts = _string_list(ctx, ds, "hosts")
        hosts = ":".join(p.strip() for p in parts)
    elif isinstance(hosts, dict) or isinstance(hosts, bool):
        raise ctx.fail(
            f"hosts: expected a pattern or a list of them, got {_kind(hosts)}", _where(ds, "hosts")
        )
    else:
        hosts = str(hosts).strip()
    if not hosts:
        raise ctx.fail("hosts: the pattern is empty", _where(ds, "hosts"))
    strategy = _string(ctx, ds, "strategy", "linear")
    if strategy not in ("linear", "free"):
        raise ctx.fail(
            f"strategy: {strategy!r} is not supported (linear, free)", _where(ds, "strategy")
        )
    vars_files = _string_list(ctx, ds, "vars_files")
    tags = _tags(ctx, ds, [])
    project = _string(ctx, ds, "project")
    if project is not None and not _PROJECT_NAME.fullmatch(project):
        raise ctx.fail(f"project: {project!r} is not a project name ([a-zA-Z0-9][a-zA-Z0-9_.-]*)",
                       _where(ds, "project"))
    play = Play(
        name=_string(ctx, ds, "name", hosts),
        hosts=hosts,
        origin=ds.origin,
        gather_facts=_bool(ctx, ds, "gather_facts", True),
        vars=_vars(ctx, ds),
        vars_files=vars_files,
        become=_bool(ctx, ds, "become", False),
        become_user=_string(ctx, ds, "become_user"),
        serial=_serial(ctx, ds),
        strategy=strategy,
        tags=tags,
        ignore_errors=_bool(ctx, ds, "ignore_errors", False),
        project=project,
        key_origins=dict(ds.key_origins),
    )
    play.pre_tasks = _task_list(ctx, ds, "pre_tasks", tags, handler=False)
    play.tasks = _task_list(ctx, ds, "tasks", tags, handler=False)
    play.post_tasks = _task_list(ctx, ds, "post_tasks", tags, handler=False)
    play.handlers = _task_list(ctx, ds, "handlers", tags, handler=True)
    return play


def _task_list(ctx: _Context, ds: dict, key: str, tags: list[str], handler: bool) -> list:
    value = ds.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise ctx.fail(f"{key}: expected a list of tasks, got {_kind(value)}", _where(ds, key))
    items = []
    for item, where in zip(value, value.item_origins):  # type: ignore[attr-defined]
        if not isinstance(item, dict):
            raise ctx.fail(f"a task must be a mapping, got {_kind(item)}", where)
        if "block" in item:
            if handler:
                raise ctx.fail("blocks are not supported in handlers", item.origin)
            items.append(_block(ctx, item, tags))
        elif "rescue" in item or "always" in item:
            key = "rescue" if "rescue" in item else "always"
            raise ctx.fail(f"'{key}' without 'block'", _where(item, key))
        else:
            items.append(_task(ctx, item, tags, handler))
    return items


def _block(ctx: _Context, ds: dict, inherited: list[str]) -> Block:
    _check_keys(ctx, ds, "block", BLOCK_KEYWORDS, _ANSIBLE_TASK)
    tags = _tags(ctx, ds, inherited)
    block = Block(
        name=_string(ctx, ds, "name"),
        when=_conditions(ctx, ds, "when") if "when" in ds else [],
        tags=tags,
        vars=_vars(ctx, ds),
        become=_bool(ctx, ds, "become", None),
        become_user=_string(ctx, ds, "become_user"),
        ignore_errors=_bool_or_template(ctx, ds, "ignore_errors"),
        origin=ds.origin,
        key_origins=dict(ds.key_origins),
    )
    block.block = _task_list(ctx, ds, "block", tags, handler=False)
    block.rescue = _task_list(ctx, ds, "rescue", tags, handler=False)
    block.always = _task_list(ctx, ds, "always", tags, handler=False)
    return block


# ----------------------------------------------------------------------------- tasks


def _find_action(ctx: _Context, ds: dict, handler: bool) -> tuple[str, str]:
    """(key as written, canonical action) of the task's one action."""
    allowed = TASK_KEYWORDS if handler else tuple(k for k in TASK_KEYWORDS if k != "listen")
    found: list[tuple[str, str]] = []
    unknown: list[str] = []
    for key in ds:
        if not isinstance(key, str):
            raise ctx.fail(f"task keywords must be strings, got {_kind(key)}", _where(ds, key))
        where = _where(ds, key)
        if key == "listen" and not handler:
            raise ctx.fail("'listen' is only valid in handlers", where)
        if key in allowed:
            continue
        if _strip_prefix(key) in _INCLUDES:
            raise _include_error(ctx, key, where)
        if key.startswith("with_"):
            raise ctx.fail(f"'{key}' is not supported by fleet: use loop", where)
        name = modules.canonical(key)
        if name is not None:
            if found:
                raise ctx.fail(f"conflicting action statements: {found[0][0]}, {key}", where)
            found.append((str(key), str(name)))
        elif key in _ANSIBLE_TASK or key in PLAY_KEYWORDS + BLOCK_KEYWORDS:
            raise ctx.fail(f"task keyword '{key}' is not supported by fleet", where)
        else:
            unknown.append(key)
    if "action" in ds:
        if found:
            raise ctx.fail(
                f"conflicting action statements: {found[0][0]}, action", _where(ds, "action")
            )
        found.append(("action", ""))
    known = modules.known_names()
    if unknown:
        key = unknown[0]
        where = _where(ds, key)
        near_keyword = _suggest(key, allowed)
        near_action = _suggest(_strip_prefix(key), known)
        if found or (near_keyword and not near_action):
            raise ctx.fail(f"unknown task keyword '{key}'{_did_you_mean(key, allowed)}", where)
        hint = f"did you mean: {', '.join(near_action)}? " if near_action else ""
        raise ctx.fail(f"unknown action '{key}' ({hint}known actions: {', '.join(known)})", where)
    if not found:
        raise ctx.fail(f"no action in the task (known actions: {', '.join(known)})", ds.origin)
    return found[0]


def _action_keyword(ctx: _Context, ds: dict) -> tuple[str, Any]:
    """``action: copy src=a dest=b`` or ``action: {module: copy, src: a}``."""
    value = ds["action"]
    where = _where(ds, "action")
    if isinstance(value, dict):
        rest = {k: v for k, v in value.items() if k != "module"}
        module = value.get("module")
        if not isinstance(module, str):
            raise ctx.fail("action: the mapping needs 'module: NAME'", where)
        return module, rest
    if not isinstance(value, str) or not value.strip():
        raise ctx.fail(f"action: expected 'NAME key=value ...', got {_kind(value)}", where)
    text = value.strip()
    try:
        module = split_args(text)[0]
    except (KVError, IndexError):
        module = text.split()[0]
    return module, text[len(module) :].strip() or None


def _args(ctx: _Context, ds: dict, key: str, action: str, raw: Any) -> tuple[dict, dict]:
    """(args, arg_origins) from the action's value and the ``args`` keyword."""
    where = _where(ds, key)
    free_form = action in modules.FREE_FORM
    args: dict = {}
    origins: dict = {}
    extra = ds.get("args")
    if extra is not None:
        if not isinstance(extra, dict):
            raise ctx.fail(f"args: expected a mapping, got {_kind(extra)}", _where(ds, "args"))
        for name in extra:
            args[plain(name)] = plain(extra[name])
            origins[plain(name)] = extra.key_origins.get(name, extra.origin)
    if raw is None:
        inline: dict = {}
    elif isinstance(raw, dict):
        inline = raw
    elif isinstance(raw, str):
        try:
            inline = parse_free_form(raw) if free_form else parse_kv(raw)
        except KVError as exc:
            hint = "" if free_form else " (this action takes key=value arguments)"
            raise ctx.fail(f"{action}: {exc}{hint}", where) from None
    else:
        raise ctx.fail(
            f"{action}: the arguments must be a mapping or key=value text, got {_kind(raw)}",
            where,
        )
    for name in inline:
        if not isinstance(name, str):
            raise ctx.fail(f"{action}: argument names must be strings, got {_kind(name)}", where)
        args[plain(name)] = plain(inline[name])
        key_origins = getattr(inline, "key_origins", None)
        origins[plain(name)] = key_origins.get(name, where) if key_origins else where
    return args, origins


def _loop(ctx: _Context, ds: dict) -> Any:
    given = [k for k in ("loop", "with_items", "with_list") if k in ds]
    if len(given) > 1:
        raise ctx.fail(
            f"'{given[0]}' and '{given[1]}' cannot be used together", _where(ds, given[1])
        )
    if not given:
        return None
    key = given[0]
    value = ds[key]
    if key == "with_items":
        if isinstance(value, list):
            return WithItems(plain(value))
        return WithItems([plain(value)], string=True)
    if isinstance(value, list) or (isinstance(value, str) and is_template(value)):
        return plain(value)
    raise ctx.fail(f"{key}: expected a list or a template, got {_kind(value)}", _where(ds, key))


def _loop_var(ctx: _Context, ds: dict, has_loop: bool) -> str:
    control = ds.get("loop_control")
    if control is None:
        return "item"
    where = _where(ds, "loop_control")
    if not has_loop:
        raise ctx.fail("loop_control without a loop", where)
    if not isinstance(control, dict):
        raise ctx.fail(f"loop_control: expected a mapping, got {_kind(control)}", where)
    for key in control:
        if key not in LOOP_CONTROL:
            raise ctx.fail(
                f"loop_control: '{key}' is not supported by fleet (supported: loop_var)",
                control.key_origins.get(key, where),
            )
    name = control.get("loop_var", "item")
    if not _identifier(name):
        raise ctx.fail(
            f"loop_control: loop_var {str(name)!r} is not a valid variable name",
            control.key_origins.get("loop_var", where),
        )
    return str(name)


def _task(ctx: _Context, ds: dict, inherited: list[str], handler: bool) -> Task:
    key, action = _find_action(ctx, ds, handler)
    raw = ds[key]
    if key == "action":
        written, raw = _action_keyword(ctx, ds)
        action = modules.canonical(written) or ""
        if not action:
            known = ", ".join(modules.known_names())
            raise ctx.fail(f"unknown action '{written}' (known actions: {known})", _where(ds, key))
    args, arg_origins = _args(ctx, ds, key, action, raw)
    register = ds.get("register")
    if register is not None and not _identifier(register):
        raise ctx.fail(
            f"register: {str(register)!r} is not a valid variable name", _where(ds, "register")
        )
    loop = _loop(ctx, ds)
    key_origins = dict(ds.key_origins)
    key_origins["action"] = _where(ds, key)
    name = ds.get("name")
    return Task(
        name=None if name is None else plain(name) if isinstance(name, str) else str(name),
        action=action,
        args=args,
        origin=ds.origin,
        when=_conditions(ctx, ds, "when") if "when" in ds else [],
        loop=loop,
        loop_var=_loop_var(ctx, ds, loop is not None),
        register=None if register is None else str(register),
        notify=_string_list(ctx, ds, "notify"),
        tags=_tags(ctx, ds, inherited),
        ignore_errors=_bool_or_template(ctx, ds, "ignore_errors"),
        changed_when=_conditions(ctx, ds, "changed_when") if "changed_when" in ds else None,
        failed_when=_conditions(ctx, ds, "failed_when") if "failed_when" in ds else None,
        vars=_vars(ctx, ds),
        become=_bool(ctx, ds, "become", None),
        become_user=_string(ctx, ds, "become_user"),
        listen=_string_list(ctx, ds, "listen"),
        check_mode=_bool(ctx, ds, "check_mode", None),
        no_log=_bool(ctx, ds, "no_log", False),
        key_origins=key_origins,
        arg_origins=arg_origins,
    )


# ----------------------------------------------------------------------------- playbook


def load_playbook(path: str | Path) -> Playbook:
    """Read the playbook at ``path`` and check its structure.

    Raises PlaybookError (``FILE:LINE: message``, FILE as given) for YAML errors,
    unknown or unsupported keywords, tasks without exactly one known action, and
    values of the wrong type. Arguments are checked by ``check_playbook``.
    """
    display = str(path)
    ctx = _Context(display)
    data = load_yaml_file(path, display)
    if data is None or data == []:
        raise PlaybookError("the playbook has no plays", Origin(display, 1))
    if not isinstance(data, list):
        raise ctx.fail(f"a playbook must be a list of plays, got {_kind(data)}", data)
    plays = [_play(ctx, item, where) for item, where in zip(data, data.item_origins)]
    return Playbook(path=Path(path), plays=plays)

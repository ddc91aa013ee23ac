"""check_playbook: everything that can be known about a playbook before any host is
contacted.

- each task's literal arguments against its action's argument spec
  (:func:`agent_payload.argspec.validate` on :func:`fleet.modules.user_spec`);
  arguments whose value is a template are checked for their name only (their value
  is known per host, later);
- set_fact variable names, debug's ``msg``/``var`` exclusivity;
- the syntax of every template and condition (unknown filters and tests included);
- ``notify`` names a handler of the play (by ``name`` or ``listen``);
- vars_files without templates exist and are valid YAML mappings.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterator

from agent_payload.argspec import ArgumentError, validate
from fleet import modules
from fleet.templating import TemplateError, condition_syntax_check, is_template, syntax_check

from .errors import PlaybookError
from .model import Block, Play, Playbook, Task
from .vars_files import load_vars_file

__all__ = ["check_playbook", "check_args", "walk_tasks"]

_KEY_RE = re.compile(r"(?:unsupported parameter |missing required parameter )?'?([\w-]+)")


def walk_tasks(items: list, blocks: tuple = ()) -> Iterator[tuple[Task, tuple]]:
    """(task, enclosing blocks outermost first) for every task in ``items``, in order."""
    for item in items:
        if isinstance(item, Block):
            inner = (*blocks, item)
            for part in (item.block, item.rescue, item.always):
                yield from walk_tasks(part, inner)
        else:
            yield item, blocks


def _walk_blocks(items: list) -> Iterator[Block]:
    for item in items:
        if isinstance(item, Block):
            yield item
            for part in (item.block, item.rescue, item.always):
                yield from _walk_blocks(part)


def _relaxed(spec: dict, params: dict) -> dict:
    """``spec`` with options whose value is a template made type ``raw`` (at any depth)."""
    names = {}
    for name, option in spec.items():
        names[name] = name
        for alias in option.get("aliases", ()):
            names[alias] = name
    relaxed = dict(spec)
    for key, value in params.items():
        name = names.get(key)
        if name is None or not is_template(value):
            continue
        option = spec[name]
        nested = option.get("options")
        if nested and isinstance(value, dict):
            relaxed[name] = {**option, "options": _relaxed(nested, value)}
        elif nested and isinstance(value, list) and all(isinstance(v, dict) for v in value):
            merged: dict = {}
            for item in value:
                merged.update({k: v for k, v in item.items() if is_template(v)})
            relaxed[name] = {**option, "options": _relaxed(nested, merged)}
        else:
            loose = {
                k: v
                for k, v in option.items()
                if k not in ("type", "choices", "options", "elements")
            }
            relaxed[name] = {**loose, "type": "raw"}
    return relaxed


def check_args(action: str, spec: dict | None, args: dict) -> None:
    """Check literal ``args`` of ``action`` against ``spec`` (a user spec; None: any
    variable names). Raises ArgumentError with a one-line message."""
    if spec is None:
        if not args:
            raise ArgumentError("no variables given")
        for name in args:
            if name == "cacheable" or (isinstance(name, str) and is_template(name)):
                continue
            if not (isinstance(name, str) and name.isidentifier()):
                raise ArgumentError(f"{str(name)!r} is not a valid variable name")
        return
    if action == "debug" and "msg" in args and "var" in args:
        raise ArgumentError("'msg' and 'var' are mutually exclusive")
    validate(_relaxed(spec, args), args)


def _arg_origin(task: Task, message: str) -> Any:
    match = _KEY_RE.match(message)
    if match and match.group(1) in task.arg_origins:
        return task.arg_origins[match.group(1)]
    return task.key_origins.get("action", task.origin)


def _check_task(task: Task, handler_names: set) -> Iterator[PlaybookError]:
    where = task.key_origins.get("action", task.origin)
    try:
        spec = modules.user_spec(modules.action(task.action).spec)
    except ImportError as exc:
        yield PlaybookError(f"{task.action}: cannot load the action's argument spec ({exc})", where)
        spec = None
    else:
        try:
            check_args(task.action, spec, task.args)
        except ArgumentError as exc:
            yield PlaybookError(f"{task.action}: {exc}", _arg_origin(task, str(exc)))
    for name, value in task.args.items():
        try:
            syntax_check(value)
        except TemplateError as exc:
            yield PlaybookError(f"{task.action}: {name}: {exc}", task.arg_origins.get(name, where))
    checks: list[tuple[str, Any, Any]] = [
        ("name", task.name, syntax_check),
        ("loop", task.loop, syntax_check),
        ("vars", task.vars, syntax_check),
        ("ignore_errors", task.ignore_errors, syntax_check),
    ]
    for key in ("when", "changed_when", "failed_when"):
        for condition in getattr(task, key) or ():
            checks.append((key, condition, condition_syntax_check))
    for key, value, check in checks:
        try:
            check(value)
        except TemplateError as exc:
            loop_key = next(
                (k for k in ("loop", "with_items", "with_list") if k in task.key_origins), "loop"
            )
            at = task.key_origins.get(loop_key if key == "loop" else key, task.origin)
            yield PlaybookError(f"{key}: {exc}", at)
    for name in task.notify:
        if not is_template(name) and name not in handler_names:
            known = ", ".join(sorted(handler_names)) or "none"
            yield PlaybookError(
                f"notify: no handler named {name!r} in this play (handlers: {known})",
                task.key_origins.get("notify", task.origin),
            )


def _check_block(block: Block) -> Iterator[PlaybookError]:
    for condition in block.when:
        try:
            condition_syntax_check(condition)
        except TemplateError as exc:
            yield PlaybookError(f"when: {exc}", block.key_origins.get("when", block.origin))
    try:
        syntax_check(block.vars)
        syntax_check(block.ignore_errors)
    except TemplateError as exc:
        yield PlaybookError(str(exc), block.origin)


def _check_vars_files(play: Play, base: Path) -> Iterator[PlaybookError]:
    where = play.key_origins.get("vars_files", play.origin)
    for name in play.vars_files:
        if is_template(name):
            continue
        path = base / name
        if not path.is_file():
            yield PlaybookError(f"vars_files: {name!r} not found (looked for {path})", where)
            continue
        try:
            load_vars_file(path, str(Path(play.origin.file).parent / name))
        except PlaybookError as exc:
            yield exc


def check_playbook(playbook: Playbook) -> None:
    """Check ``playbook`` as far as it can be checked without hosts.

    Collects every problem and raises PlaybookError for the first one (``.errors``
    holds them all, in playbook order). Returns None when all is well.
    """
    errors: list[PlaybookError] = []
    base = Path(playbook.path).parent
    for play in playbook.plays:
        found: list[PlaybookError] = []
        handler_names = set()
        for handler in play.handlers:
            if handler.name and not is_template(handler.name):
                handler_names.add(handler.name)
            handler_names.update(handler.listen)
        try:
            syntax_check(play.vars)
        except TemplateError as exc:
            found.append(PlaybookError(f"vars: {exc}", play.key_origins.get("vars", play.origin)))
        found.extend(_check_vars_files(play, base))
        items = play.pre_tasks + play.tasks + play.post_tasks + play.handlers
        for block in _walk_blocks(items):
            found.extend(_check_block(block))
        for task, _blocks in walk_tasks(items):
            found.extend(_check_task(task, handler_names))
        # In file order (problems in a vars file first: they belong to the play's top).
        found.sort(
            key=lambda e: (
                e.origin.line if e.origin is not None and e.origin.file == play.origin.file else 0
            )
        )
        errors.extend(found)
    if errors:
        first = errors[0]
        raise PlaybookError(first.reason, first.origin, first.file, errors=errors)

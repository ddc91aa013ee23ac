"""vars_files: YAML mappings of variables, read relative to the playbook's directory."""

from __future__ import annotations

import keyword
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fleet.templating import TemplateError, is_template, render

from .errors import PlaybookError
from .model import Play
from .yaml_loader import describe, load_yaml_file, plain

__all__ = ["load_vars_file", "load_vars_files"]


def load_vars_file(path: str | Path, display: str | None = None) -> dict:
    """The variables in the YAML file ``path`` (empty file: none).

    The file must hold a mapping whose keys are valid variable names; errors are
    PlaybookError ``FILE:LINE: message`` with FILE as ``display``.
    """
    shown = str(path) if display is None else display
    data = load_yaml_file(path, shown)
    if data is None:
        return {}
    if not isinstance(data, dict):
        where = getattr(data, "origin", None)
        raise PlaybookError(
            f"a vars file must be a mapping of variables, got {describe(data)}",
            where,
            file=shown,
        )
    for name in data:
        if not (isinstance(name, str) and name.isidentifier() and not keyword.iskeyword(name)):
            raise PlaybookError(
                f"{str(name)!r} is not a valid variable name",
                data.key_origins.get(name, data.origin),
            )
    return plain(data)


def load_vars_files(play: Play, base_dir: str | Path, variables: Mapping | None = None) -> dict:
    """The play's vars_files merged in order (a later file wins).

    Paths are relative to ``base_dir`` (the playbook's directory) unless absolute; a
    path with a template is rendered with ``variables`` (e.g. extra vars and play
    vars). Errors name the play's ``vars_files`` line or the file's own line.
    """
    where = play.key_origins.get("vars_files", play.origin)
    shown_base = Path(play.origin.file).parent
    merged: dict = {}
    for name in play.vars_files:
        rel: Any = name
        if is_template(name):
            try:
                rel = render(name, variables or {})
            except TemplateError as exc:
                raise PlaybookError(f"vars_files: {exc}", where) from None
            if not isinstance(rel, str) or not rel:
                raise PlaybookError(f"vars_files: {name!r} rendered to {rel!r}", where)
        path = Path(base_dir) / rel
        if not path.is_file():
            raise PlaybookError(f"vars_files: {rel!r} not found (looked for {path})", where)
        merged.update(load_vars_file(path, str(shown_base / rel)))
    return merged

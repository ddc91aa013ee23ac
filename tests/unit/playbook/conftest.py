"""Fixtures shared by the playbook, templating and variables tests."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from fleet import modules

# Fixed argument specs for the remote modules the checker tests use, so the tests do
# not depend on the module files (written elsewhere, and changing).
FAKE_SPECS = {
    "command": {
        "_raw_params": {"type": "str"},
        "cmd": {"type": "str"},
        "chdir": {"type": "path"},
        "creates": {"type": "path"},
        "removes": {"type": "path"},
    },
    "shell": {
        "_raw_params": {"type": "str"},
        "chdir": {"type": "path"},
        "creates": {"type": "path"},
        "executable": {"type": "path"},
    },
    "copy": {
        "src": {"type": "path"},
        "content": {"type": "raw"},
        "dest": {"type": "path", "required": True},
        "mode": {"type": "raw"},
        "force": {"type": "bool", "default": True, "aliases": ["thirsty"]},
        "backup": {"type": "bool", "default": False},
        "_digests": {"type": "dict"},
    },
    "file": {
        "path": {"type": "path", "required": True, "aliases": ["dest", "name"]},
        "state": {"type": "str", "choices": ["file", "directory", "absent", "touch"]},
        "mode": {"type": "raw"},
        "recurse": {"type": "bool", "default": False},
        "attrs": {
            "type": "dict",
            "options": {"owner": {"type": "str"}, "size": {"type": "int"}},
        },
        "ports": {
            "type": "list",
            "elements": "dict",
            "options": {"port": {"type": "int", "required": True}, "proto": {"type": "str"}},
        },
    },
}


@pytest.fixture
def fake_modules(monkeypatch):
    """Make fleet.modules.action() answer FAKE_SPECS for command, shell, copy, file."""
    real = modules.action

    def action(name):
        if name in FAKE_SPECS:
            return modules.Action(name, True, FAKE_SPECS[name], name in modules.FREE_FORM)
        return real(name)

    monkeypatch.setattr(modules, "action", action)
    return FAKE_SPECS


@pytest.fixture
def write(tmp_path: Path, monkeypatch):
    """write("site.yml", text) -> Path: a dedented file under tmp_path (also the cwd,
    so a playbook loaded as "site.yml" shows up as "site.yml" in errors)."""
    monkeypatch.chdir(tmp_path)

    def _write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))
        return path

    return _write

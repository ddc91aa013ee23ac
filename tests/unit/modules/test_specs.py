"""The payload's file and command modules: registered, specs valid, every option documented."""

import importlib

import pytest

from agent_payload import serve
from fleet import modules

NAMES = ["command", "shell", "file", "copy"]


@pytest.mark.parametrize("name", NAMES)
def test_every_option_and_alias_is_documented(name):
    module = importlib.import_module("agent_payload.modules." + name)
    assert name in serve.MODULE_NAMES
    doc = module.__doc__
    assert doc and "Options:" in doc
    for option, spec in module.ARGUMENT_SPEC.items():
        assert option in doc, option
        for alias in spec.get("aliases", ()):
            assert alias in doc, alias
        assert spec.get("type", "str") in ("str", "int", "bool", "list", "dict", "path", "raw")


@pytest.mark.parametrize("name, hidden, kept", [
    ("copy", {"_digests", "_size", "_basename"}, {"src", "content", "dest"}),
    ("command", set(), {"_raw_params", "argv", "creates"}),
    ("shell", set(), {"_raw_params", "executable"}),
    ("file", set(), {"path", "state", "src"}),
])
def test_internal_options_are_not_for_playbooks(name, hidden, kept):
    spec = modules.user_spec(modules.action(name).spec)
    assert not hidden & set(spec) and kept <= set(spec)
    assert modules.action(name).free_form is (name in ("command", "shell"))

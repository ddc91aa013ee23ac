"""Where each task action runs and what arguments it takes: one registry for the
playbook checker and the executor.

Remote modules live in agent_payload/modules/<name>.py (their ARGUMENT_SPEC is read
from there, the one definition); controller actions live in fleet/actions/<name>.py.
Ansible's fully-qualified names (ansible.builtin.copy, ansible.legacy.copy) and
fleet.<name> map to the same action. Parameters whose names start with "_" are
internal (sent by the controller, never written in a playbook), except _raw_params,
the free-form text of command and shell.
"""

import importlib
from dataclasses import dataclass

from agent_payload.serve import MODULE_NAMES

# Actions the controller carries out: these three stay there, template ships its output
# to the host through copy.
LOCAL_ACTIONS = ("debug", "assert", "set_fact")
CONTROLLER_ACTIONS = LOCAL_ACTIONS + ("template",)
FREE_FORM = ("command", "shell")
PREFIXES = ("ansible.builtin.", "ansible.legacy.", "fleet.")
RAW_PARAMS = "_raw_params"


@dataclass(frozen=True)
class Action:
    """A task action: its canonical name, where it runs, its argument spec."""

    name: str
    remote: bool
    spec: dict
    free_form: bool


def canonical(name):
    """The canonical action name for ``name`` (FQCN stripped), or None if unknown."""
    for prefix in PREFIXES:
        if name.startswith(prefix):
            name = name[len(prefix):]
            break
    if name in MODULE_NAMES or name in CONTROLLER_ACTIONS:
        return name
    return None


def known_names():
    """Every action name a playbook may use, short form."""
    return sorted(set(MODULE_NAMES) | set(CONTROLLER_ACTIONS))


def touches_hosts(name):
    """Whether the action ``name`` does anything on a host."""
    return name not in LOCAL_ACTIONS


def action(name):
    """The Action for a canonical name."""
    if name in CONTROLLER_ACTIONS:
        module = importlib.import_module("fleet.actions." + name)
        return Action(name, False, module.ARGUMENT_SPEC, False)
    module = importlib.import_module("agent_payload.modules." + name)
    return Action(name, True, module.ARGUMENT_SPEC, name in FREE_FORM)


def user_spec(spec):
    """The spec a playbook may use: the module's spec without internal parameters.

    None means the action takes any keys (set_fact)."""
    if spec is None:
        return None
    return {k: v for k, v in spec.items() if not k.startswith("_") or k == RAW_PARAMS}

"""The variables a task sees on a host, with Ansible's precedence.

Highest first (for the sources fleet has):

1. loop variables (``item`` or the loop_var, ``ansible_loop_var``): Ansible sets
   them last, so they win even over extra vars;
2. extra vars (``-e``);
3. magic variables (``inventory_hostname``, ``groups``, ``hostvars`` ...);
4. set_fact and registered results (one layer: the latest wins);
5. task vars;
6. block vars (inner over outer);
7. play vars_files (a later file over an earlier one);
8. play vars;
9. host facts (``ansible_facts`` and, as Ansible's INJECT_FACTS_AS_VARS does,
   ``ansible_<name>`` for each fact);
10. inventory variables (``inv.host_vars(name)``: host_vars/ over inventory host
    vars over group_vars/ over inventory group vars).

Values are templated when used (see :class:`fleet.templating.Variables`); facts,
set_fact values, registered results and loop items are data and never templated
again. ``hostvars[name]`` shows a host's variables without play, block or task vars
(as Ansible does), templated against that host's own variables.

::

    hv = HostVars(inventory, extra_vars={"env": "prod"})
    hv.play_context(play, load_vars_files(play, playbook_dir, ...))
    variables = hv.for_task("web1", task, blocks=(outer, inner), loop_vars={"item": 3})
    render(task.args, variables)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from fleet.templating import OMIT, Variables

__all__ = ["HostVars", "PlayHosts", "MAGIC_VARIABLES", "loop_variables"]

#: The names fleet computes for every host (besides ``hostvars`` and ``vars``).
MAGIC_VARIABLES = (
    "inventory_hostname", "inventory_hostname_short", "groups", "group_names", "hostvars",
    "play_hosts", "ansible_play_hosts", "ansible_play_hosts_all", "ansible_play_batch",
    "ansible_play_name", "ansible_check_mode", "ansible_diff_mode", "omit", "playbook_dir",
)  # fmt: skip


@dataclass
class PlayHosts:
    """The hosts of the running play: all it targets, those still active (not failed
    or unreachable), and the current serial batch (its active hosts)."""

    all: list
    active: list
    batch: list


def loop_variables(loop_var: str, item: Any) -> dict:
    """The variables one loop iteration adds: the loop var and ``ansible_loop_var``."""
    return {loop_var: item, "ansible_loop_var": loop_var}


class _HostVarsView(Mapping):
    """``hostvars``: host name -> that host's variables, built when first asked for."""

    def __init__(self, owner: HostVars) -> None:
        self._owner = owner
        self._seen: dict = {}

    def __getitem__(self, host: str) -> Variables:
        if host not in self._seen:
            if not self._owner.inventory.has_host(host):
                raise KeyError(host)
            self._seen[host] = self._owner.for_host(host)
        return self._seen[host]

    def __contains__(self, host: object) -> bool:
        return isinstance(host, str) and self._owner.inventory.has_host(host)

    def __iter__(self) -> Iterator[str]:
        return iter(self._owner.inventory.hosts)

    def __len__(self) -> int:
        return len(self._owner.inventory.hosts)

    def __repr__(self) -> str:
        return f"hostvars({len(self)} hosts)"


class HostVars:
    """Per-host variables for one run of a playbook.

    ``inventory`` is a :class:`fleet.inventory.Inventory`; ``extra_vars`` the ``-e``
    variables; ``play_hosts_provider`` a callable returning the current
    :class:`PlayHosts` (or one list used for all three), called when a task's
    variables are built. Without one, every host the play's pattern selects counts.
    ``playbook_dir``, ``check_mode`` and ``diff_mode`` fill the magic variables of
    the same names.
    """

    def __init__(
        self,
        inventory: Any,
        extra_vars: Mapping | None = None,
        play_hosts_provider: Callable[[], Any] | None = None,
        *,
        playbook_dir: str | Path | None = None,
        check_mode: bool = False,
        diff_mode: bool = False,
    ) -> None:
        self.inventory = inventory
        self.extra_vars = dict(extra_vars or {})
        self._provider = play_hosts_provider
        self.playbook_dir = str(Path(playbook_dir).resolve()) if playbook_dir else None
        self.check_mode = check_mode
        self.diff_mode = diff_mode
        self.play: Any = None
        self.vars_files_data: dict = {}
        self._facts: dict[str, dict] = {}
        self._set: dict[str, dict] = {}
        self._inventory_vars: dict[str, dict] = {}
        self._groups: dict | None = None

    # ------------------------------------------------------------------ state

    def play_context(self, play: Any, vars_files_data: Mapping | None = None) -> None:
        """Start ``play``: its vars and its loaded vars_files apply from now on."""
        self.play = play
        self.vars_files_data = dict(vars_files_data or {})

    def set_facts(self, host: str, facts: Mapping) -> None:
        """Store gathered facts (merged into earlier ones). Keys may carry the
        ``ansible_`` prefix or not; ``ansible_facts`` holds them without it."""
        current = self._facts.setdefault(host, {})
        for key, value in facts.items():
            name = key[len("ansible_") :] if key.startswith("ansible_") else key
            current[name] = value

    def facts(self, host: str) -> dict:
        """The facts known for ``host`` (names without ``ansible_``)."""
        return dict(self._facts.get(host, {}))

    def set_fact(self, host: str, mapping: Mapping) -> None:
        """set_fact: ``mapping`` (already templated) becomes host variables."""
        self._set.setdefault(host, {}).update(mapping)

    def register(self, host: str, name: str, result: Any) -> None:
        """register: the task's result under ``name``."""
        self._set.setdefault(host, {})[name] = result

    # ------------------------------------------------------------------ layers

    def _inventory(self, host: str) -> dict:
        cached = self._inventory_vars.get(host)
        if cached is None:
            cached = self._inventory_vars[host] = self.inventory.host_vars(host)
        return cached

    def _fact_layer(self, host: str) -> dict:
        facts = self._facts.get(host, {})
        layer = {"ansible_" + k: v for k, v in facts.items()}
        layer["ansible_facts"] = dict(facts)
        return layer

    def _all_groups(self) -> dict:
        if self._groups is None:
            inv = self.inventory
            self._groups = {name: inv.group_hosts(name) for name in inv.groups}
        return self._groups

    def _play_hosts(self) -> PlayHosts:
        given = self._provider() if self._provider is not None else None
        if isinstance(given, PlayHosts):
            return given
        if given is None:
            hosts = self.inventory.select(self.play.hosts) if self.play is not None else []
        else:
            hosts = list(given)
        return PlayHosts(list(hosts), list(hosts), list(hosts))

    def _magic(self, host: str, with_play: bool) -> dict:
        magic = {
            "inventory_hostname": host,
            "inventory_hostname_short": host.split(".")[0],
            "groups": {k: list(v) for k, v in self._all_groups().items()},
            "group_names": self.inventory.group_names(host),
            "ansible_check_mode": self.check_mode,
            "ansible_diff_mode": self.diff_mode,
            "omit": OMIT,
        }
        if self.playbook_dir is not None:
            magic["playbook_dir"] = self.playbook_dir
        if with_play and self.play is not None:
            hosts = self._play_hosts()
            magic.update(
                play_hosts=list(hosts.batch),
                ansible_play_batch=list(hosts.batch),
                ansible_play_hosts=list(hosts.active),
                ansible_play_hosts_all=list(hosts.all),
                ansible_play_name=self.play.name,
            )
        return magic

    def _build(
        self, host: str, layers: Iterable[tuple[Mapping, bool]], hidden: tuple = ()
    ) -> Variables:
        data: dict = {}
        literal: set = set()
        for layer, is_literal in layers:
            for key, value in layer.items():
                data[key] = value
                if is_literal:
                    literal.add(key)
                else:
                    literal.discard(key)
        data["hostvars"] = _HostVarsView(self)
        literal.add("hostvars")
        return Variables(data, literal, hidden)

    # ------------------------------------------------------------------ views

    def for_host(self, host: str) -> Variables:
        """What ``hostvars[host]`` shows: inventory, facts, set_fact/registered, magic
        and extra vars; no play, block or task vars."""
        layers = [
            (self._inventory(host), False),
            (self._fact_layer(host), True),
            (self._set.get(host, {}), True),
            (self._magic(host, with_play=False), True),
            (self.extra_vars, False),
        ]
        return self._build(host, layers, hidden=("hostvars",))

    def for_play(self, host: str) -> Variables:
        """The variables of play-level keywords on ``host`` (no block or task vars)."""
        return self.for_task(host, None)

    def for_task(
        self,
        host: str,
        task: Any,
        blocks: Iterable[Any] = (),
        loop_vars: Mapping | None = None,
    ) -> Variables:
        """The variables ``task`` sees on ``host``: a lazily templated mapping.

        ``blocks`` are the enclosing blocks, outermost first (their ``vars`` apply,
        inner over outer); ``loop_vars`` the current iteration's variables (see
        :func:`loop_variables`). ``task`` may be None (play level).
        """
        play = self.play
        layers: list[tuple[Mapping, bool]] = [
            (self._inventory(host), False),
            (self._fact_layer(host), True),
        ]
        if play is not None:
            layers.append((play.vars, False))
            layers.append((self.vars_files_data, False))
        for block in blocks:
            layers.append((block.vars, False))
        if task is not None:
            layers.append((task.vars, False))
        layers.append((self._set.get(host, {}), True))
        layers.append((self._magic(host, with_play=True), True))
        layers.append((self.extra_vars, False))
        if loop_vars:
            layers.append((loop_vars, True))
        return self._build(host, layers)

"""fleet.variables: precedence, magic variables, facts, hostvars, vars_files."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleet.inventory import load_inventory
from fleet.playbook import Block, Origin, Play, PlaybookError, Task, load_vars_files
from fleet.templating import OMIT, TemplateError, render
from fleet.variables import HostVars, PlayHosts, loop_variables

HERE = Origin("site.yml", 1)

# Highest first. The variable is ansible_v so that a gathered fact "v" can define it.
LEVELS = [
    "loop",
    "extra",
    "set_fact",
    "task",
    "inner_block",
    "outer_block",
    "vars_files",
    "play",
    "facts",
    "host_vars_dir",
    "inventory_host",
    "group_vars_dir",
    "inventory_group",
    "inventory_all",
]


def _inventory(tmp_path: Path, levels: list[str]):
    """An inventory with web1 in group web, ansible_v set at the inventory ``levels``."""
    root = tmp_path / "inv"
    (root / "host_vars").mkdir(parents=True)
    (root / "group_vars").mkdir()
    host_var = " ansible_v=inventory_host" if "inventory_host" in levels else ""
    text = f"[web]\nweb1{host_var}\nweb2\n[db]\ndb1\n"
    if "inventory_group" in levels:
        text += "[web:vars]\nansible_v=inventory_group\n"
    if "inventory_all" in levels:
        text += "[all:vars]\nansible_v=inventory_all\n"
    (root / "hosts").write_text(text)
    if "host_vars_dir" in levels:
        (root / "host_vars" / "web1.yml").write_text("ansible_v: host_vars_dir\n")
    if "group_vars_dir" in levels:
        (root / "group_vars" / "web.yml").write_text("ansible_v: group_vars_dir\n")
    return load_inventory(root / "hosts")


def _vars_for(tmp_path: Path, levels: list[str]):
    value = {"ansible_v": None}
    inv = _inventory(tmp_path, levels)

    def at(level):
        return {"ansible_v": level} if level in levels else {}

    hv = HostVars(inv, extra_vars=at("extra"))
    play = Play(name="p", hosts="web", origin=HERE, vars=at("play"))
    hv.play_context(play, at("vars_files"))
    if "facts" in levels:
        hv.set_facts("web1", {"v": "facts"})
    if "set_fact" in levels:
        hv.set_fact("web1", {"ansible_v": "set_fact"})
    outer = Block(vars=at("outer_block"))
    inner = Block(vars=at("inner_block"))
    task = Task(name=None, action="debug", args={}, origin=HERE, vars=at("task"))
    loop = {**loop_variables("item", 1), **at("loop")} if "loop" in levels else None
    del value
    return hv.for_task("web1", task, blocks=(outer, inner), loop_vars=loop)


@pytest.mark.parametrize("top", range(len(LEVELS)), ids=LEVELS)
def test_precedence(tmp_path, top):
    """ansible_v defined at LEVELS[top:]: the highest of those wins."""
    variables = _vars_for(tmp_path, LEVELS[top:])
    assert render("{{ ansible_v }}", variables) == LEVELS[top]


def test_registered_and_set_fact_share_a_level(tmp_path):
    inv = _inventory(tmp_path, [])
    hv = HostVars(inv)
    hv.play_context(Play(name="p", hosts="web", origin=HERE, vars={"r": "play"}))
    hv.set_fact("web1", {"r": "fact"})
    hv.register("web1", "r", {"msg": "registered", "changed": False})
    assert render("{{ r.msg }}", hv.for_task("web1", None)) == "registered"
    hv.set_fact("web1", {"r": "fact again"})
    assert render("{{ r }}", hv.for_task("web1", None)) == "fact again"
    assert render("{{ r | default('none') }}", hv.for_task("web2", None)) == "play"


def test_extra_vars_override_magic_variables_but_not_loop_variables(tmp_path):
    inv = _inventory(tmp_path, [])
    hv = HostVars(inv, extra_vars={"inventory_hostname": "forced", "item": "extra"})
    hv.play_context(Play(name="p", hosts="web", origin=HERE))
    variables = hv.for_task("web1", None, loop_vars=loop_variables("item", 7))
    assert render("{{ inventory_hostname }} {{ item }} {{ ansible_loop_var }}", variables) == (
        "forced 7 item"
    )


def test_values_are_templated_lazily_in_the_tasks_scope(tmp_path):
    inv = _inventory(tmp_path, [])
    hv = HostVars(inv, extra_vars={"who": "{{ role }}-{{ inventory_hostname }}"})
    hv.play_context(Play(name="p", hosts="web", origin=HERE, vars={"role": "play"}))
    task = Task(name=None, action="debug", args={}, origin=HERE, vars={"role": "task"})
    assert render("{{ who }}", hv.for_task("web1", task)) == "task-web1"
    assert render("{{ who }}", hv.for_task("web1", None)) == "play-web1"


def test_facts_registered_results_and_loop_items_are_not_templated_again(tmp_path):
    inv = _inventory(tmp_path, [])
    hv = HostVars(inv)
    hv.play_context(Play(name="p", hosts="web", origin=HERE, vars={"x": 1}))
    hv.set_facts("web1", {"ansible_motd": "{{ x }}"})
    hv.register("web1", "out", {"stdout": "{{ x }}"})
    hv.set_fact("web1", {"fact": "{{ x }}"})
    variables = hv.for_task("web1", None, loop_vars={"item": "{{ x }}"})
    assert render("{{ ansible_motd }} {{ out.stdout }} {{ fact }} {{ item }}", variables) == (
        "{{ x }} {{ x }} {{ x }} {{ x }}"
    )


def test_facts(tmp_path):
    inv = _inventory(tmp_path, [])
    hv = HostVars(inv)
    hv.set_facts("web1", {"distribution": "Debian", "ansible_os_family": "Debian"})
    hv.set_facts("web1", {"memtotal_mb": 512})
    variables = hv.for_task("web1", None)
    assert render("{{ ansible_facts }}", variables) == {
        "distribution": "Debian",
        "os_family": "Debian",
        "memtotal_mb": 512,
    }
    assert render("{{ ansible_distribution }} {{ ansible_os_family }}", variables) == (
        "Debian Debian"
    )
    assert render("{{ ansible_facts }}", hv.for_task("web2", None)) == {}
    assert hv.facts("web1")["memtotal_mb"] == 512


def test_magic_variables(tmp_path):
    inv = _inventory(tmp_path, [])
    inv_dir = tmp_path / "book"
    hv = HostVars(inv, playbook_dir=inv_dir, check_mode=True, diff_mode=False)
    hv.play_context(Play(name="deploy", hosts="web", origin=HERE))
    variables = hv.for_task("web1", None)
    expected = {
        "inventory_hostname": "web1",
        "inventory_hostname_short": "web1",
        "groups": {
            "all": ["web1", "web2", "db1"],
            "ungrouped": [],
            "web": ["web1", "web2"],
            "db": ["db1"],
        },
        "group_names": ["web"],
        "play_hosts": ["web1", "web2"],
        "ansible_play_hosts": ["web1", "web2"],
        "ansible_play_hosts_all": ["web1", "web2"],
        "ansible_play_batch": ["web1", "web2"],
        "ansible_play_name": "deploy",
        "ansible_check_mode": True,
        "ansible_diff_mode": False,
        "omit": OMIT,
        "playbook_dir": str(inv_dir.resolve()),
    }
    for name, value in expected.items():
        assert render("{{ " + name + " }}", variables) == value, name


def test_inventory_hostname_short(tmp_path):
    root = tmp_path / "inv"
    root.mkdir()
    (root / "hosts").write_text("db1.example.com\n")
    hv = HostVars(load_inventory(root / "hosts"))
    variables = hv.for_task("db1.example.com", None)
    assert render("{{ inventory_hostname_short }} {{ group_names }}", variables) == (
        "db1 ['ungrouped']"
    )


def test_play_hosts_from_the_provider(tmp_path):
    inv = _inventory(tmp_path, [])
    given: list = [PlayHosts(all=["web1", "web2", "db1"], active=["web1", "db1"], batch=["web1"])]
    hv = HostVars(inv, play_hosts_provider=lambda: given[0])
    hv.play_context(Play(name="p", hosts="all", origin=HERE))
    text = "{{ ansible_play_hosts_all }} {{ ansible_play_hosts }} {{ ansible_play_batch }}"
    assert render(text + " {{ play_hosts }}", hv.for_task("web1", None)) == (
        "['web1', 'web2', 'db1'] ['web1', 'db1'] ['web1'] ['web1']"
    )
    given[0] = ["db1"]
    assert render(text, hv.for_task("db1", None)) == "['db1'] ['db1'] ['db1']"


def test_hostvars(tmp_path):
    inv = _inventory(tmp_path, ["inventory_group"])
    hv = HostVars(inv, extra_vars={"e": "x"})
    hv.play_context(
        Play(
            name="p",
            hosts="web",
            origin=HERE,
            vars={"play_only": 1, "me": "{{ inventory_hostname }}"},
        )
    )
    inv.set_host_var("web2", "greeting", "hi from {{ inventory_hostname }}")
    hv.set_fact("web2", {"fact": "f2"})
    variables = hv.for_task("web1", None)
    assert render("{{ hostvars['web2'].greeting }}", variables) == "hi from web2"
    assert render("{{ hostvars.web2.fact }} {{ hostvars.web2.e }}", variables) == "f2 x"
    assert render("{{ hostvars['web2'].play_only | default('no play vars') }}", variables) == (
        "no play vars"
    )
    assert render("{{ hostvars['web1'].ansible_v }}", variables) == "inventory_group"
    assert render("{{ 'db1' in hostvars }} {{ hostvars | length }}", variables) == "True 3"
    assert render("{{ groups.web | map('extract', hostvars, 'inventory_hostname') | list }}",
                  variables) == ["web1", "web2"]  # fmt: skip
    with pytest.raises(TemplateError, match="has no attribute 'nohost'"):
        render("{{ hostvars.nohost.x }}", variables)


def test_hostvars_results_are_plain_dicts(tmp_path):
    inv = _inventory(tmp_path, [])
    hv = HostVars(inv)
    value = render("{{ hostvars['db1'] }}", hv.for_task("web1", None))
    assert type(value) is dict
    assert value["inventory_hostname"] == "db1"
    assert "hostvars" not in value  # as in Ansible: a host's vars do not nest hostvars
    everything = render("{{ hostvars }}", hv.for_task("web1", None))
    assert sorted(everything) == ["db1", "web1", "web2"]
    assert render("{{ hostvars.web1.hostvars.db1.inventory_hostname }}",
                  hv.for_task("web1", None)) == "db1"  # fmt: skip


def test_vars_files(write):
    write("vars/common.yml", "a: 1\nb: '{{ a }}'\n")
    write("vars/prod.yml", "a: 2\n")
    write("vars/list.yml", "- 1\n")
    write("vars/badname.yml", "ok: 1\nnot ok: 2\n")
    play = Play(
        name="p",
        hosts="all",
        origin=Origin("site.yml", 1),
        vars_files=["vars/common.yml", "vars/{{ env }}.yml"],
    )
    assert load_vars_files(play, Path("."), {"env": "prod"}) == {"a": 2, "b": "{{ a }}"}
    cases = [
        (["vars/{{ nope }}.yml"], "site.yml:1: vars_files: 'nope' is undefined in "
                                  "'vars/{{ nope }}.yml'"),
        (["vars/missing.yml"], "site.yml:1: vars_files: 'vars/missing.yml' not found (looked "
                               "for vars/missing.yml)"),
        (["vars/list.yml"], "vars/list.yml:1: a vars file must be a mapping of variables, got "
                            "a list"),
        (["vars/badname.yml"], "vars/badname.yml:2: 'not ok' is not a valid variable name"),
    ]  # fmt: skip
    for files, message in cases:
        play.vars_files = files
        with pytest.raises(PlaybookError) as caught:
            load_vars_files(play, Path("."), {})
        assert str(caught.value) == message

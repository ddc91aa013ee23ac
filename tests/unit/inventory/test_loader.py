"""load_inventory: format detection, directories, host_vars/ and group_vars/."""

import json
import time

import pytest

from fleet.inventory import Inventory, InventoryError, load_inventory


def test_format_detection(load):
    assert load("plain", "[web]\nw1\n").hosts == ["w1"]  # no extension, INI
    assert load("plain_yaml", "all:\n  hosts:\n    y1:\n").hosts == ["y1"]  # no ext, YAML
    assert load("hosts.ini", "w1\n").hosts == ["w1"]
    assert load("hosts.list", "w1\nw2\n").hosts == ["w1", "w2"]  # other extensions: INI
    # Ansible falls back to INI when a .yml file is not a YAML inventory.
    assert load("odd.yml", "[web]\nw1\n").hosts == ["w1"]
    assert load("words", "w1 a=1\nw2\n").hosts == ["w1", "w2"]  # YAML would see a string


def test_error_from_the_format_the_file_looks_like(load):
    with pytest.raises(InventoryError, match=r"hosts:3: invalid YAML"):
        load("hosts", "all:\n  hosts:\n  - [\n")
    with pytest.raises(InventoryError, match=r"hosts2:2: expected key=value host variable"):
        load("hosts2", "[web]\nw1 oops\n")
    with pytest.raises(InventoryError, match=r"hosts.yml:2: invalid YAML"):
        load("hosts.yml", "all:\n  - x: [\n")


def test_unsupported_sources(load, tmp_path):
    with pytest.raises(InventoryError, match="hosts.toml: TOML inventories are not supported"):
        load("hosts.toml", "[all]\n")
    with pytest.raises(InventoryError, match="no such inventory file or directory"):
        load_inventory(tmp_path / "missing")
    with pytest.raises(InventoryError, match="1: ansible-vault encrypted files"):
        load("vaulted.yml", "$ANSIBLE_VAULT;1.1;AES256\n3132\n")


def test_host_list():
    inv = load_inventory("web1,web2:2222, 10.0.0.1 ,")
    assert inv.hosts == ["web1", "web2", "10.0.0.1"]
    assert inv.groups["ungrouped"].hosts == inv.hosts
    assert inv.connection("web2").port == 2222
    assert inv.sources == []


def test_directory(write, tmp_path):
    write("inv/01-base.ini", "[web]\nw1\n")
    write("inv/02-more.yml", "all:\n  children:\n    web:\n      hosts:\n        w2:\n")
    write("inv/sub/03-deep", "[deep]\nd1\n")
    write("inv/group_vars/web.yml", "x: 1\n")
    write("inv/host_vars/d1.yml", "y: 2\n")
    for ignored in (
        "a.bak",
        "b.orig",
        "c~",
        "d.txt",
        "e.md",
        "f.cfg",
        "g.retry",
        "h.rst",
        ".hidden",
        "i.pyc",
        "j.swp",
    ):
        write(f"inv/{ignored}", "[bad]\nnever\n")
    write("inv/host_vars/bad-in-vars.ini", "[bad]\n")  # host_vars/ is not inventory
    inv = load_inventory(tmp_path / "inv")
    assert inv.hosts == ["w1", "w2", "d1"]
    assert "bad" not in inv.groups
    assert [p.name for p in inv.sources] == ["01-base.ini", "02-more.yml", "03-deep"]
    assert inv.host_vars("w2") == {"x": 1}
    assert inv.host_vars("d1") == {"y": 2}


def test_directory_errors_name_the_file(write, tmp_path):
    write("inv/01-ok.ini", "[web]\nw1\n")
    write("inv/02-bad.ini", "[web]\n\nw2 nope\n")
    with pytest.raises(InventoryError) as info:
        load_inventory(str(tmp_path / "inv"))
    assert str(info.value).startswith(f"{tmp_path / 'inv' / '02-bad.ini'}:3: ")


def test_vars_file_choice_and_merge_order(write):
    hosts = write("hosts", "[web]\nw1\n[db]\nd1\n")
    write("group_vars/web", "src: plain\n")
    write("group_vars/web.yml", "src: yml\n")  # ignored: 'web' exists
    write("group_vars/db.yaml", "src: yaml\n")
    write("group_vars/db.json", '{"src": "json"}')  # ignored: db.yaml exists
    write("group_vars/all/b.yml", "order: b\nb: 1\n")
    write("group_vars/all/a.yml", "order: a\na: 1\n")
    write("group_vars/all/sub/z.json", '{"order": "z"}')
    write("group_vars/all/c.txt", "order: ignored\n")
    write("group_vars/all/d.yml~", "order: ignored\n")
    write("group_vars/all/.e.yml", "order: ignored\n")
    write("group_vars/all/empty.yml", "")
    inv = load_inventory(hosts)
    assert inv.groups["web"].file_vars == {"src": "plain"}
    assert inv.groups["db"].file_vars == {"src": "yaml"}
    # sorted: a.yml, b.yml, empty.yml, sub/ (z.json)
    assert inv.groups["all"].file_vars == {"order": "z", "a": 1, "b": 1}
    assert sorted(p.name for p in inv.vars_files) == [
        "a.yml",
        "b.yml",
        "db.yaml",
        "empty.yml",
        "web",
        "z.json",
    ]


def test_vars_file_errors(write):
    hosts = write("hosts", "[web]\nw1\n")
    write("group_vars/web.yml", "- a\n- b\n")
    with pytest.raises(InventoryError, match=r"group_vars/web.yml:1: expected a mapping"):
        load_inventory(hosts)
    write("group_vars/web.yml", "a: 1\nb: [\n")
    with pytest.raises(InventoryError, match=r"group_vars/web.yml:2: invalid YAML"):
        load_inventory(hosts)


def test_relative_paths_in_messages(write, tmp_path, monkeypatch):
    write("inv/hosts.ini", "[web]\nw1\n")
    write("inv/host_vars/w1.yml", "x: [\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InventoryError) as info:
        load_inventory("inv/hosts.ini")
    assert str(info.value).startswith("inv/host_vars/w1.yml:1: invalid YAML")


def test_precedence(write):
    hosts = write(
        "hosts.ini",
        """
        [web]
        w1 v6=host_inline v7=host_inline
        [db]
        w1
        [prod:children]
        web
        db
        [all:vars]
        v1=all_inv
        [prod:vars]
        v1=prod_inv
        v2=prod_inv
        [web:vars]
        v2=web_inv
        v3=web_inv
        v4=web_inv
        [db:vars]
        v3=db_inv
        """,
    )
    write("group_vars/all.yml", "v4: all_file\nv5: all_file\n")
    write("group_vars/db.yml", "v5: db_file\nv6: db_file\n")
    write("host_vars/w1.yml", "v7: host_file\n")
    assert load_inventory(hosts).host_vars("w1") == {
        "v1": "prod_inv",  # a group beats all
        "v2": "web_inv",  # a deeper group beats its parent
        "v3": "web_inv",  # same depth: by name, later wins (db < web)
        "v4": "all_file",  # group_vars/all beats every inventory group var
        "v5": "db_file",  # group_vars/<group> beats group_vars/all
        "v6": "host_inline",  # host vars beat every group var
        "v7": "host_file",  # host_vars/ beats inline host vars
    }


def test_group_priority(load):
    inv = load(
        "hosts.ini",
        """
        [a]
        h
        [b]
        h
        [a:vars]
        x=a
        ansible_group_priority=5
        [b:vars]
        x=b
        """,
    )
    assert inv.groups["a"].priority == 5
    assert "ansible_group_priority" not in inv.groups["a"].vars
    assert inv.host_vars("h") == {"x": "a"}
    assert inv.group_vars("a") == {"x": "a", "ansible_group_priority": 5}


def test_magic_names_are_not_shown(load):
    inv = load("hosts.ini", "h inventory_hostname=x group_names=y keep=1\n")
    assert inv.host_vars("h") == {"keep": 1}


def test_same_name_for_host_and_group_warns(load):
    inv = load("hosts.ini", "[web]\nweb\n")
    assert inv.warnings == ["found both group and host with same name: web"]


def test_list_json_shape(load):
    inv = load(
        "hosts.ini",
        """
        [web]
        w1 x=1
        w2
        [empty]
        [parent:children]
        web
        empty
        """,
    )
    assert inv.to_list_json() == {
        "_meta": {"hostvars": {"w1": {"x": 1}}, "profile": "inventory_legacy"},
        "all": {"children": ["ungrouped", "parent"]},
        "parent": {"children": ["web", "empty"]},
        "web": {"hosts": ["w1", "w2"]},
    }
    assert inv.to_list_json(limit="w2")["web"] == {"hosts": ["w2"]}
    json.dumps(inv.to_list_json(export=True))


def test_graph(load):
    inv = load("hosts.ini", "top\n[web]\nw1 x=1\n[parent:children]\nweb\n")
    assert inv.graph() == "\n".join(
        [
            "@all:",
            "  |--@ungrouped:",
            "  |  |--top",
            "  |--@parent:",
            "  |  |--@web:",
            "  |  |  |--w1",
        ]
    )
    assert inv.graph("web", with_vars=True) == "@web:\n  |--w1\n  |  |--{x = 1}"
    with pytest.raises(InventoryError, match="no group 'nope'"):
        inv.graph("nope")


def test_unknown_host(load):
    inv = load("hosts.ini", "h\n")
    with pytest.raises(InventoryError, match="unknown host 'x'"):
        inv.host_vars("x")
    with pytest.raises(InventoryError, match="unknown host 'x'"):
        inv.group_names("x")


def test_building_by_hand():
    inv = Inventory()
    inv.add_group("web")
    inv.add_host("w1", "web", port=2200)
    inv.set_group_var("web", "x", 1)
    inv.reconcile()
    assert inv.select("all") == ["w1"]
    assert inv.host_vars("w1") == {"x": 1, "ansible_port": 2200}
    with pytest.raises(InventoryError, match="unknown group 'nope'"):
        inv.add_host("w2", "nope")


def test_loading_is_fast(write):
    lines = ["[all:vars]", "ansible_user=deploy"]
    for group in range(50):
        lines.append(f"[g{group}]")
        lines.append(f"g{group}-[0001:0100].example.com ansible_port=22 role=r{group}")
        lines.append(f"[g{group}:vars]")
        lines.append(f"gv=g{group}")
    hosts = write("big.ini", "\n".join(lines) + "\n")
    start = time.perf_counter()
    inv = load_inventory(hosts)
    selected = inv.select("all:!g1")
    merged = [inv.host_vars(h) for h in selected]
    elapsed = time.perf_counter() - start
    assert len(inv.hosts) == 5000 and len(merged) == 4900
    assert elapsed < 3.0, elapsed

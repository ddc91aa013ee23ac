"""The YAML inventory format (fleet.inventory.yaml_format)."""

import datetime

import pytest

from fleet.inventory import InventoryError
from fleet.inventory.values import UnsafeText


def test_groups_hosts_children_vars(load):
    inv = load(
        "hosts.yml",
        """
        all:
          hosts:
            bastion:
              ansible_host: 203.0.113.1
          vars:
            ansible_user: deploy
          children:
            web:
              hosts:
                web[1:2]:
                  port: 80
                "10.0.0.1:2222":
              vars:
                tier: web
            db:
              hosts: db1          # a bare string is a one-host mapping
              children: replicas  # ... and a one-child mapping
        """,
    )
    assert inv.hosts == ["bastion", "web1", "web2", "10.0.0.1", "db1"]
    assert inv.groups["web"].hosts == ["web1", "web2", "10.0.0.1"]
    assert inv.groups["db"].children == ["replicas"]
    assert inv.groups["all"].hosts == ["bastion"]
    assert inv.groups["ungrouped"].hosts == ["bastion"]
    assert inv.host("10.0.0.1").vars == {"ansible_port": 2222}
    assert inv.host_vars("web2") == {"ansible_user": "deploy", "tier": "web", "port": 80}


def test_keys_are_processed_in_written_order(load):
    inv = load(
        "hosts.yml",
        """
        all:
          children:
            late:
              hosts: {h2: }
          hosts:
            h1:
        """,
    )
    assert inv.hosts == ["h2", "h1"]


def test_top_level_groups_besides_all(load):
    inv = load(
        "hosts.yml",
        """
        web:
          hosts: {w1: }
        db:
        """,
    )
    assert inv.groups["all"].children == ["ungrouped", "web", "db"]


def test_value_types(load):
    inv = load(
        "hosts.yml",
        """
        all:
          hosts:
            h1:
              yes_bool: yes
              quoted: "yes"
              day: 2024-01-02
              raw: !unsafe "{{ not_templated }}"
              nested: !unsafe {a: ["{{ x }}"]}
        """,
    )
    hv = inv.host_vars("h1")
    assert hv["yes_bool"] is True
    assert hv["quoted"] == "yes"
    assert hv["day"] == datetime.date(2024, 1, 2)
    assert isinstance(hv["raw"], UnsafeText) and hv["raw"] == "{{ not_templated }}"
    assert isinstance(hv["nested"]["a"][0], UnsafeText)


def test_unexpected_key_is_a_warning(load):
    inv = load(
        "hosts.yml",
        """
        all:
          host:
            typo: {}
        """,
    )
    assert inv.hosts == []
    assert len(inv.warnings) == 1
    assert "hosts.yml:2: skipping unexpected key 'host' in group 'all'" in inv.warnings[0]


def test_empty_yaml_is_an_empty_inventory(load):
    inv = load("hosts.yml", "# nothing yet\n")
    assert inv.hosts == []
    assert list(inv.groups) == ["all", "ungrouped"]


def test_json_inventory(load):
    inv = load("inv.json", '{"all": {"hosts": {"h1": {"a": 1}}}}')
    assert inv.host_vars("h1") == {"a": 1}


@pytest.mark.parametrize(
    "text, line, message",
    [
        ("all:\n  children:\n    web: [a, b]\n", 3, "group 'web' must be a mapping"),
        ("all:\n  children:\n    web: just text\n", 3, "group 'web' must be a mapping"),
        ("all:\n  hosts:\n    a: [\n", 3, "invalid YAML: did not find expected node content"),
        ("all:\n  hosts:\n    a: 5\n", 3, "host 'a' in group 'all': expected a mapping"),
        ("all:\n  hosts:\n    1:\n", 3, "host pattern 1 must be a string"),
        ("all:\n  hosts:\n    a:\n  vars: [1]\n", 4, "invalid 'vars' entry for group 'all'"),
        ("all:\n  hosts: [a, b]\n", 2, "invalid 'hosts' entry for group 'all'"),
        ("all:\n  hosts:\n    w[3:1]:\n", 3, "host range must have begin <= end"),
        ("plugin: aws_ec2\nregions: [x]\n", 1, "inventory plugin configuration files"),
        ("all:\n  vars:\n    secret: !vault |\n      $ANSIBLE_VAULT;1.1;AES256\n", 3, "!vault"),
        (
            "a:\n  children:\n    b:\n      children:\n        a:\n",
            3,
            "adding group 'b' as child to 'a' creates a recursive dependency loop",
        ),
        ("all:\n  vars:\n    ansible_group_priority: [1]\n", 3, "ansible_group_priority"),
    ],
)
def test_errors_name_file_and_line(load, text, line, message):
    with pytest.raises(InventoryError) as info:
        load("hosts.yml", text)
    err = info.value
    assert err.path.endswith("hosts.yml")
    assert err.line == line, str(err)
    assert str(err).startswith(f"{err.path}:{line}: ")
    assert message in str(err)
    assert "\n" not in str(err)


def test_not_a_mapping_in_yml_file(load):
    with pytest.raises(InventoryError, match=r"hosts.yml:1: YAML inventory must be a mapping"):
        load("hosts.yml", "- a\n- b\n")

"""Connection variables (fleet.inventory.connection)."""

import dataclasses

import pytest

from fleet.inventory import ConnectionVars, InventoryError
from fleet.inventory.connection import connection_vars, to_bool


def test_defaults():
    conn = connection_vars("web1", {})
    assert conn == ConnectionVars(
        name="web1",
        host="web1",
        port=22,
        user=None,
        key_file=None,
        python="/usr/bin/python3",
        become=False,
        become_user="root",
        become_password=None,
        known_hosts_file=None,
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        conn.port = 2222  # type: ignore[misc]


def test_ansible_names():
    conn = connection_vars(
        "web1",
        {
            "ansible_host": "10.0.0.1",
            "ansible_port": 2222,
            "ansible_user": "deploy",
            "ansible_ssh_private_key_file": "keys/id_ed25519",
            "ansible_python_interpreter": "/usr/local/bin/python3",
            "ansible_become": "yes",
            "ansible_become_user": "app",
            "ansible_become_password": "s3cret",
            "ansible_ssh_known_hosts_file": "known_hosts",
        },
    )
    assert conn.host == "10.0.0.1"
    assert conn.port == 2222
    assert conn.user == "deploy"
    assert conn.key_file == "keys/id_ed25519"  # kept as written, not resolved
    assert conn.python == "/usr/local/bin/python3"
    assert conn.become is True
    assert conn.become_user == "app"
    assert conn.become_password == "s3cret"
    assert conn.known_hosts_file == "known_hosts"


def test_fleet_prefix_wins():
    conn = connection_vars(
        "web1",
        {
            "ansible_host": "10.0.0.1",
            "fleet_host": "10.9.9.9",
            "ansible_port": 22,
            "fleet_port": "2022",
            "ansible_become": True,
            "fleet_become": "no",
            "fleet_ssh_private_key_file": "fleet.key",
            "ansible_ssh_private_key_file": "ansible.key",
        },
    )
    assert (conn.host, conn.port, conn.become) == ("10.9.9.9", 2022, False)
    assert conn.key_file == "fleet.key"


def test_legacy_aliases_and_null():
    conn = connection_vars(
        "h",
        {
            "ansible_ssh_host": "1.2.3.4",
            "ansible_ssh_port": "2200",
            "ansible_ssh_user": "old",
            "ansible_private_key_file": "k",
            "ansible_become_pass": 1234,  # INI makes digit-only values ints
            "fleet_user": None,  # null means unset
        },
    )
    assert (conn.host, conn.port, conn.user, conn.key_file) == ("1.2.3.4", 2200, "old", "k")
    assert conn.become_password == "1234"


@pytest.mark.parametrize(
    "value, expected",
    [
        (True, True),
        (False, False),
        ("yes", True),
        ("Yes ", True),
        ("on", True),
        ("1", True),
        ("true", True),
        ("t", True),
        ("y", True),
        (1, True),
        (1.0, True),
        ("no", False),
        ("off", False),
        ("0", False),
        ("False", False),
        ("f", False),
        ("n", False),
        (0, False),
    ],
)
def test_to_bool(value, expected):
    assert to_bool(value) is expected


@pytest.mark.parametrize(
    "variables, message",
    [
        ({"ansible_port": "abc"}, "variable 'ansible_port' must be a port number"),
        ({"fleet_port": 0}, "variable 'fleet_port' must be a port number"),
        ({"ansible_port": 70000}, "must be a port number (1-65535), got 70000"),
        ({"ansible_port": True}, "must be a port number"),
        ({"ansible_port": "{{ p }}"}, "templates are not evaluated"),
        ({"ansible_become": "maybe"}, "variable 'ansible_become' must be a boolean"),
        ({"ansible_become": 2}, "must be a boolean"),
        ({"ansible_host": ["a"]}, "variable 'ansible_host' must be a non-empty string"),
        ({"ansible_host": ""}, "must be a non-empty string"),
        ({"ansible_user": 1.5}, "variable 'ansible_user' must be a non-empty string"),
        ({"ansible_python_interpreter": 3}, "must be a non-empty string"),
    ],
)
def test_type_errors_name_host_and_variable(variables, message):
    with pytest.raises(InventoryError) as info:
        connection_vars("web1", variables)
    assert "host 'web1'" in str(info.value)
    assert message in str(info.value)


def test_inventory_connection_uses_merged_vars(write):
    from fleet.inventory import load_inventory

    path = write(
        "hosts.ini",
        """
        [web]
        web1 ansible_host=10.0.0.1
        web2:2201
        [web:vars]
        ansible_user=deploy
        fleet_become=true
        """,
    )
    write("host_vars/web1.yml", "fleet_host: 10.0.0.99\n")
    inv = load_inventory(path)
    assert inv.connection("web1") == ConnectionVars(
        name="web1", host="10.0.0.99", user="deploy", become=True
    )
    assert inv.connection("web2").port == 2201
    assert inv.connection("web2").host == "web2"
    with pytest.raises(InventoryError, match="unknown host 'nope'"):
        inv.connection("nope")

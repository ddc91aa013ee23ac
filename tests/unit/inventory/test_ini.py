"""The INI inventory format (fleet.inventory.ini)."""

import pytest

from fleet.inventory import InventoryError
from fleet.inventory.ini import parse_value


@pytest.mark.parametrize(
    "text, expected",
    [
        ("42", 42),
        ("-3", -3),
        ("0x1f", 31),
        ("1_000", 1000),
        ("1.5", 1.5),
        ("1e3", 1000.0),
        ("True", True),
        ("False", False),
        ("None", None),
        ("yes", "yes"),  # not a Python literal: stays a string
        ("true", "true"),
        ("007", "007"),  # leading zeros are not a Python int
        ("'07'", "07"),
        ('"a b"', "a b"),
        ("[1, 'two']", [1, "two"]),
        ("(1, 2)", [1, 2]),  # tuples become lists
        ("{3, 1, 2}", [1, 2, 3]),  # sets too
        ("{'k': (1,)}", {"k": [1]}),
        ("1j", "1j"),  # complex numbers are kept as text
        ("...", "..."),
        ("1.2.3.4", "1.2.3.4"),
        ("http://x:80/", "http://x:80/"),
        ("{z:1}", "{z:1}"),
        ("", ""),
        ("a\\d", "a\\d"),
        ("'a\\d'", "a\\d"),  # no SyntaxWarning leaks out
    ],
)
def test_parse_value(text, expected):
    assert parse_value(text) == expected
    assert type(parse_value(text)) is type(expected)


def test_sections_and_membership(load):
    inv = load(
        "hosts.ini",
        """
        top1
        [web]
        web1
        web2
        [db]
        db1
        web1
        [prod:children]
        web
        db
        [empty]
        """,
    )
    assert inv.hosts == ["top1", "web1", "web2", "db1"]
    assert list(inv.groups) == ["all", "ungrouped", "web", "db", "prod", "empty"]
    assert inv.groups["web"].hosts == ["web1", "web2"]
    assert inv.groups["prod"].children == ["web", "db"]
    assert inv.groups["web"].parents == ["prod"]
    assert inv.groups["all"].children == ["ungrouped", "prod", "empty"]
    assert inv.groups["ungrouped"].hosts == ["top1"]
    assert inv.group_names("web1") == ["db", "prod", "web"]
    assert inv.group_names("top1") == ["ungrouped"]


def test_inline_host_vars_and_port(load):
    inv = load(
        "hosts.ini",
        """
        [web]
        web1:2222 ansible_host=10.0.0.1 label="a b" n=5 flag=True s='x' hashed=ab#cd ignored=1
        web1:3333 extra=1
        """,
    )
    # The port of a later line is ignored: it only applies when a host is created.
    assert inv.host("web1").vars == {
        "ansible_port": 2222,
        "ansible_host": "10.0.0.1",
        "label": "a b",
        "n": 5,
        "flag": True,
        "s": "x",
        "hashed": "ab",
        "extra": 1,
    }


def test_vars_sections_are_literal_evaluated(load):
    # ansible-core 2.19 evaluates :vars values as literals too (its docs say strings).
    inv = load(
        "hosts.ini",
        """
        [web]
        w
        [web:vars]
        port=8080 # comment
        spaced = hello world
        flag=True
        word=yes
        url=http://example.com:8080/x
        """,
    )
    assert inv.groups["web"].vars == {
        "port": 8080,
        "spaced": "hello world",
        "flag": True,
        "word": "yes",
        "url": "http://example.com:8080/x",
    }


def test_ranges_in_groups(load):
    inv = load(
        "hosts.ini",
        """
        [web]
        web[01:03].example.com x=1
        db-[a:b]:2200
        """,
    )
    assert inv.groups["web"].hosts == [
        "web01.example.com",
        "web02.example.com",
        "web03.example.com",
        "db-a",
        "db-b",
    ]
    assert inv.host("web02.example.com").vars == {"x": 1}
    assert inv.host("db-b").vars == {"ansible_port": 2200}


def test_forward_child_reference(load):
    inv = load(
        "hosts.ini",
        """
        [prod:children]
        web
        [staging:children]
        web
        [web]
        w1
        """,
    )
    assert inv.groups["web"].parents == ["prod", "staging"]


def test_vars_before_group_declaration(load):
    inv = load(
        "hosts.ini",
        """
        [web:vars]
        x=1
        [web]
        w1
        """,
    )
    assert inv.host_vars("w1") == {"x": 1}


def test_ungrouped_host_leaves_ungrouped_when_grouped_later(load):
    inv = load(
        "hosts.ini",
        """
        h1
        h2
        [web]
        h1
        """,
    )
    assert inv.groups["ungrouped"].hosts == ["h2"]
    assert inv.group_names("h1") == ["web"]


def test_all_section(load):
    inv = load("hosts.ini", "[all]\nh1\n[all:vars]\nx=1\n")
    assert inv.groups["all"].hosts == ["h1"]
    assert inv.groups["ungrouped"].hosts == ["h1"]
    assert inv.host_vars("h1") == {"x": 1}


def test_comments_and_blank_lines(load):
    inv = load(
        "hosts.ini",
        """
        # comment
        ; another

        [web]   # trailing comment on a section
        w1 # trailing comment on a host
        """,
    )
    assert inv.groups["web"].hosts == ["w1"]
    assert inv.host("w1").vars == {}


def test_non_utf8_comment_is_tolerated(tmp_path):
    from fleet.inventory import load_inventory

    path = tmp_path / "hosts.ini"
    path.write_bytes(b"# caf\xe9\n[web]\nw1\n")
    assert load_inventory(path).hosts == ["w1"]
    path.write_bytes(b"[web]\nw\xe91\n")
    with pytest.raises(InventoryError, match=r"hosts.ini:2: line is not valid UTF-8"):
        load_inventory(path)


@pytest.mark.parametrize(
    "text, line, message",
    [
        (
            "[web]\nweb[01:20.example.com\n",
            2,
            "unbalanced bracket in host range 'web[01:20.example.com'",
        ),
        ("[web]\nw1\n\n[web:foo]\n", 4, "section [web:foo] has unknown type 'foo'"),
        ("[web]\nw1 novalue\n", 2, "expected key=value host variable assignment, got 'novalue'"),
        ("[web:vars]\njust_a_word\n[web]\n", 2, "expected key=value in [web:vars]"),
        ("[web:children]\nnot a group\n", 2, "expected group name in [web:children]"),
        (
            "# x\n[web:children]\nmissing\n",
            3,
            "section [web:children] includes undefined group 'missing'",
        ),
        ("[g:vars]\nx=1\n", 1, "section [g:vars] not valid for undefined group 'g'"),
        ("[a:children]\nb\n[b:children]\na\n", 4, "creates a recursive dependency loop"),
        ("[a:children]\na\n", 2, "group 'a' cannot be a child of itself"),
        ("[web]\nw[5:1]\n", 2, "host range must have begin <= end in 'w[5:1]'"),
        ('[web]\nw1 x="open\n', 2, "error parsing host definition"),
        ("[we b]\n", 1, "invalid section entry '[we b]'"),
        ("[web]\nw1:\n", 2, "invalid host pattern 'w1:'"),
        ("---\n", 1, "'---' is normally a sign this is a YAML file"),
        (
            "[web:vars]\nansible_group_priority=high\n[web]\n",
            2,
            "ansible_group_priority of group 'web' must be an integer, got 'high'",
        ),
        ('[web]\n""\n', 2, "empty host name"),
    ],
)
def test_errors_name_file_and_line(load, text, line, message):
    with pytest.raises(InventoryError) as info:
        load("hosts.ini", text)
    err = info.value
    assert str(err).startswith(f"{err.path}:{line}: ")
    assert err.path.endswith("hosts.ini")
    assert err.line == line
    assert message in str(err)
    assert "\n" not in str(err)


def test_error_message_is_one_line_with_the_path_as_given(write, tmp_path, monkeypatch):
    from fleet.inventory import load_inventory

    write("hosts.ini", "# web tier\n\n[web]\nweb1\nweb2\n\nweb[01:20.example.com\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InventoryError) as info:
        load_inventory("hosts.ini")
    assert (
        str(info.value) == "hosts.ini:7: unbalanced bracket in host range 'web[01:20.example.com'"
    )

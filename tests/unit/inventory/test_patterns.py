"""Host patterns and --limit (fleet.inventory.patterns)."""

import pytest

from fleet.inventory import InventoryError
from fleet.inventory.patterns import split_pattern

INVENTORY = """
top1
[web]
web01.example.com
web02.example.com
web03.example.com
[db]
db1
web01.example.com
[prod:children]
web
db
[staging]
stage1
[empty]
"""


@pytest.fixture
def inv(load):
    return load("hosts.ini", INVENTORY)


@pytest.mark.parametrize(
    "pattern, parts",
    [
        ("web", ["web"]),
        ("web:db", ["web", "db"]),
        ("web,db", ["web", "db"]),
        (" web , db ,", ["web", "db"]),
        ("web:&prod:!db", ["web", "&prod", "!db"]),
        ("web[1:2]", ["web[1:2]"]),  # an address-like range is not split at ':'
        ("web[1:2]:db", ["web[1:2]", "db"]),
        ("fe80::1", ["fe80::1"]),
        ("~web\\d+", ["~web\\d+"]),
        (["web:db", "staging"], ["web", "db", "staging"]),
    ],
)
def test_split_pattern(pattern, parts):
    assert split_pattern(pattern) == parts


@pytest.mark.parametrize(
    "pattern, hosts",
    [
        # Breadth first: direct children of 'all' (ungrouped, prod, staging) come
        # before prod's children web and db.
        (
            "all",
            [
                "top1",
                "stage1",
                "web01.example.com",
                "web02.example.com",
                "web03.example.com",
                "db1",
            ],
        ),
        ("web", ["web01.example.com", "web02.example.com", "web03.example.com"]),
        ("db:web", ["db1", "web01.example.com", "web02.example.com", "web03.example.com"]),
        ("web,db", ["web01.example.com", "web02.example.com", "web03.example.com", "db1"]),
        ("web:&db", ["web01.example.com"]),
        ("web:!db", ["web02.example.com", "web03.example.com"]),
        ("!db:web", ["web02.example.com", "web03.example.com"]),  # ! applies last
        ("!prod", ["top1", "stage1"]),  # no plain part: 'all' is implied
        ("&prod:&db", ["web01.example.com", "db1"]),
        ("web0*.example.com", ["web01.example.com", "web02.example.com", "web03.example.com"]),
        ("web0[12]*", ["web01.example.com", "web02.example.com"]),
        ("~web0[23]", ["web02.example.com", "web03.example.com"]),
        ("~eb", []),  # regexes match at the start
        ("~.*eb01", ["web01.example.com"]),
        ("s*", ["stage1"]),  # glob on group 'staging' and host 'stage1'
        ("top1", ["top1"]),
        ("web[0]", ["web01.example.com"]),
        ("web[-1]", ["web03.example.com"]),
        ("web[1:2]", ["web02.example.com", "web03.example.com"]),
        ("web[1:]", ["web02.example.com", "web03.example.com"]),
        ("prod[2:3]", ["web03.example.com", "db1"]),
        ("empty", []),
        ("nothere", []),
        ("web:nothere", ["web01.example.com", "web02.example.com", "web03.example.com"]),
        ("ungrouped", ["top1"]),
        (
            "*",
            [
                "top1",
                "stage1",
                "web01.example.com",
                "web02.example.com",
                "web03.example.com",
                "db1",
            ],
        ),
    ],
)
def test_select(inv, pattern, hosts):
    assert inv.select(pattern) == hosts


@pytest.mark.parametrize(
    "pattern, limit, hosts",
    [
        ("all", "web", ["web01.example.com", "web02.example.com", "web03.example.com"]),
        ("web", "db", ["web01.example.com"]),
        ("prod", "!web", ["db1"]),
        ("all", "web01.example.com,stage1", ["stage1", "web01.example.com"]),
        ("web", "nothere", []),
        ("web", "", ["web01.example.com", "web02.example.com", "web03.example.com"]),
    ],
)
def test_limit(inv, pattern, limit, hosts):
    assert inv.select(pattern, limit=limit) == hosts


def test_limit_from_file(inv, tmp_path):
    retry = tmp_path / "site.retry"
    retry.write_text("web02.example.com\ndb1\n")
    assert inv.select("all", limit=f"@{retry}") == ["web02.example.com", "db1"]
    with pytest.raises(InventoryError, match="unable to find limit file"):
        inv.select("all", limit=f"@{tmp_path / 'missing.retry'}")


def test_unmatched(inv):
    assert inv.unmatched("web:db") == []
    assert inv.unmatched("web:nothere:&nogroup:!gone") == ["nothere", "nogroup", "gone"]
    assert inv.unmatched("empty") == []  # an empty group exists: no warning
    assert inv.unmatched("all", limit="nolimit") == ["nolimit"]
    assert inv.unmatched("web[5:6]") == []  # matched 'web', the slice is just empty


def test_bad_patterns(inv):
    with pytest.raises(InventoryError, match="invalid host pattern '~web\\('"):
        inv.select("~web(")
    with pytest.raises(
        InventoryError, match=r"no hosts matched the subscripted pattern 'web\[7\]'"
    ):
        inv.select("web[7]")

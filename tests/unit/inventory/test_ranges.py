"""Host ranges and host:port splitting (fleet.inventory.ranges)."""

import pytest

from fleet.inventory.ranges import (
    RangeError,
    expand_host_pattern,
    expand_host_range,
    is_address,
    split_host_port,
)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("plain", ["plain"]),
        ("web[1:3]", ["web1", "web2", "web3"]),
        ("web[01:03].example.com", ["web01.example.com", "web02.example.com", "web03.example.com"]),
        ("db-[a:c]", ["db-a", "db-b", "db-c"]),
        ("n[1:10:4]", ["n1", "n5", "n9"]),
        ("n[0:4:2]x", ["n0x", "n2x", "n4x"]),
        ("h[:2]", ["h0", "h1", "h2"]),  # empty begin is 0
        ("h[0:10:5]", ["h0", "h5", "h10"]),  # no leading zero: no padding
        ("h[008:010]", ["h008", "h009", "h010"]),
        ("x[y:B]", ["xy", "xz", "xA", "xB"]),  # letters run a..z then A..Z
        ("x[a:e:2]", ["xa", "xc", "xe"]),
        ("r[1:2]-[a:b]", ["r1-a", "r1-b", "r2-a", "r2-b"]),  # first range varies slowest
        ("[1:2]start", ["1start", "2start"]),
        ("end[7:7]", ["end7"]),
    ],
)
def test_expand(text, expected):
    assert expand_host_range(text) == expected


@pytest.mark.parametrize(
    "text, message",
    [
        ("web[01:20.example.com", "unbalanced bracket in host range 'web[01:20.example.com'"),
        ("web01:20].example.com", "unbalanced bracket"),
        ("web[[1:2]]", "unbalanced bracket"),
        ("web[1]", "must be begin:end or begin:end:step"),
        ("web[1:2:3:4]", "must be begin:end or begin:end:step"),
        ("web[1:]", "must specify end value"),
        ("web[01:100]", "equal-length begin and end"),
        ("web[5:1]", "begin <= end"),
        ("web[c:a]", "begin <= end"),
        ("web[a:5]", "invalid host range '[a:5]'"),
        ("web[aa:bb]", "invalid host range"),
        ("web[1:5:0]", "step must be a positive integer"),
        ("web[1:5:x]", "step must be a positive integer"),
    ],
)
def test_bad_ranges(text, message):
    with pytest.raises(RangeError) as info:
        expand_host_range(text)
    assert message in str(info.value)
    assert repr(text) in str(info.value)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("web1", ("web1", None)),
        ("web1:2222", ("web1", 2222)),
        ("10.0.0.1", ("10.0.0.1", None)),
        ("10.0.0.1:22", ("10.0.0.1", 22)),
        ("web[01:03]:2200", ("web[01:03]", 2200)),
        ("10.0.0.[1:3]:22", ("10.0.0.[1:3]", 22)),
        ("fe80::1", ("fe80::1", None)),  # bare IPv6: colons are not a port
        ("[fe80::1]:2222", ("fe80::1", 2222)),
        ("[web1]:22", ("web1", 22)),
        ("under_score:22", ("under_score", 22)),
        ("bad$name:22", ("bad$name:22", None)),  # not an address: taken literally
        ("trailing-:22", ("trailing-:22", None)),
    ],
)
def test_split_host_port(text, expected):
    assert split_host_port(text) == expected


def test_is_address():
    assert is_address("web1")
    assert is_address("web[1:3]")
    assert is_address("2001:db8::1")
    assert not is_address("web:db")
    assert not is_address("web*")
    assert not is_address("~web\\d")


def test_expand_host_pattern():
    assert expand_host_pattern("db[1:2].lan:5432") == (["db1.lan", "db2.lan"], 5432)
    assert expand_host_pattern("[2001:db8::1]:22") == (["2001:db8::1"], 22)

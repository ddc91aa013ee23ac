"""fleet.playbook.kv: Ansible's key=value shorthand and free-form arguments."""

from __future__ import annotations

import pytest

from fleet.playbook.kv import KVError, parse_free_form, parse_kv, split_args, unquote

KV_CASES = [
    ("path=/tmp/x state=directory", {"path": "/tmp/x", "state": "directory"}),
    ('msg="hello world"', {"msg": "hello world"}),
    ("msg='it is'", {"msg": "it is"}),
    ("msg={{ greeting }}", {"msg": "{{ greeting }}"}),
    ("msg={{ a | default('b c') }} x=1", {"msg": "{{ a | default('b c') }}", "x": "1"}),
    ('msg="hello {{ name }}"', {"msg": "hello {{ name }}"}),
    ("a=1   b=2\n c=3", {"a": "1", "b": "2", "c": "3"}),
    ("a=x=y", {"a": "x=y"}),
    ("a=", {"a": ""}),
    (r"a=line\nbreak", {"a": "line\nbreak"}),
    (r'a="quote \" inside"', {"a": 'quote " inside'}),
    ("a=1 a=2", {"a": "2"}),
    ("", {}),
]


@pytest.mark.parametrize("text, expected", KV_CASES, ids=[c[0] for c in KV_CASES])
def test_parse_kv(text, expected):
    assert parse_kv(text) == expected


@pytest.mark.parametrize(
    "text, message",
    [
        ("foo", "expected key=value, got 'foo'"),
        ("path=/x directory", "expected key=value, got 'directory'"),
        ('msg="open', "unbalanced quotes in 'msg=\"open'"),
        ("msg={{ x", "unbalanced Jinja braces in 'msg={{ x'"),
    ],
)
def test_parse_kv_errors(text, message):
    with pytest.raises(KVError) as caught:
        parse_kv(text)
    assert str(caught.value) == message


FREE_FORM_CASES = [
    ("echo hi", {"_raw_params": "echo hi"}),
    ("chdir=/tmp echo hi", {"chdir": "/tmp", "_raw_params": "echo hi"}),
    (
        'creates="/a b" removes=/c ls -l',
        {"creates": "/a b", "removes": "/c", "_raw_params": "ls -l"},
    ),
    ("echo chdir=/tmp", {"_raw_params": "echo chdir=/tmp"}),
    ("creates=/x", {"creates": "/x"}),
    ("echo it's   {{ x }}", {"_raw_params": "echo it's   {{ x }}"}),
    ('chdir=/tmp echo "open', {"chdir": "/tmp", "_raw_params": 'echo "open'}),
    ("FOO=bar env", {"_raw_params": "FOO=bar env"}),
    ("echo a\necho b\n", {"_raw_params": "echo a\necho b"}),
]


@pytest.mark.parametrize("text, expected", FREE_FORM_CASES, ids=[c[0] for c in FREE_FORM_CASES])
def test_parse_free_form(text, expected):
    assert parse_free_form(text) == expected


def test_split_args_keeps_quotes_and_jinja():
    assert split_args("a='b c' {{ d e }} {% f %}g") == ["a='b c'", "{{ d e }}", "{% f %}g"]


@pytest.mark.parametrize(
    "value, expected",
    [
        ('"a"', "a"),
        ("'a'", "a"),
        ('"a', '"a'),
        ('"', '"'),
        ("'a\"", "'a\""),
        ('"a\\"', '"a\\"'),
    ],
)
def test_unquote(value, expected):
    assert unquote(value) == expected

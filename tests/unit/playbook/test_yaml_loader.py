"""fleet.playbook.yaml_loader: origins on everything, one-line errors."""

from __future__ import annotations

import pytest

from fleet.playbook import Origin, PlaybookError
from fleet.playbook.yaml_loader import (
    OriginDict,
    OriginList,
    OriginStr,
    load_yaml_file,
    load_yaml_text,
    plain,
)
from fleet.templating import Unsafe

TEXT = """\
# comment
- name: first
  tasks:
    - debug:
        msg: hi
      when: true
- second
"""


def test_origins():
    data = load_yaml_text(TEXT, "site.yml")
    assert isinstance(data, OriginList) and data.origin == Origin("site.yml", 2)
    assert data.item_origins == [Origin("site.yml", 2), Origin("site.yml", 7)]
    play = data[0]
    assert isinstance(play, OriginDict) and play.origin == Origin("site.yml", 2)
    assert play.key_origins == {"name": Origin("site.yml", 2), "tasks": Origin("site.yml", 3)}
    task = play["tasks"][0]
    assert task.origin == Origin("site.yml", 4)
    assert task.key_origins["when"] == Origin("site.yml", 6)
    assert task["debug"].key_origins["msg"] == Origin("site.yml", 5)
    assert isinstance(data[1], OriginStr) and data[1].origin == Origin("site.yml", 7)
    assert str(Origin("site.yml", 7)) == "site.yml:7"


def test_plain_drops_origins():
    data = plain(load_yaml_text(TEXT, "site.yml"))
    assert type(data) is list and type(data[0]) is dict and type(data[1]) is str
    assert data[0]["tasks"][0] == {"debug": {"msg": "hi"}, "when": True}


def test_merge_keys_may_be_overridden():
    data = load_yaml_text("base: &b {a: 1, b: 2}\nuse:\n  <<: *b\n  b: 3\n", "f.yml")
    assert plain(data["use"]) == {"a": 1, "b": 3}


def test_unsafe_tag():
    data = load_yaml_text("a: !unsafe '{{ x }}'\n", "f.yml")
    assert type(data["a"]) is Unsafe and plain(data)["a"] == "{{ x }}"
    assert type(plain(data)["a"]) is Unsafe


@pytest.mark.parametrize(
    "text, message",
    [
        ("a: 1\nb: 2\na: 3\n", "f.yml:3: duplicate key 'a'"),
        (
            "- a: 1\n  b: [\n",
            "f.yml:3: invalid YAML: while parsing a flow node, expected the "
            "node content, but found '<stream end>' (column 1)",
        ),
        ("a: b: c\n", "f.yml:1: invalid YAML: mapping values are not allowed here (column 5)"),
        (
            "\n\n  - a\n - b\n",
            "f.yml:4: invalid YAML: expected '<document start>', but found "
            "'<block sequence start>' (column 2)",
        ),
        (
            "a: 'x\n",
            "f.yml:2: invalid YAML: while scanning a quoted scalar, found unexpected end "
            "of stream (column 1)",
        ),
        (
            "a: !vault |\n  $ANSIBLE_VAULT;1.1\n",
            "f.yml:1: !vault values are not supported by fleet",
        ),
        ("a: !unsafe [1]\n", "f.yml:1: !unsafe applies to strings only"),
        ("? [1, 2]\n: x\n", "f.yml:1: a mapping key must be a scalar"),
        (
            "a: 1\n---\nb: 2\n",
            "f.yml:2: invalid YAML: expected a single document in the stream, "
            "but found another document (column 1)",
        ),
        (
            "a: !custom x\n",
            "f.yml:1: invalid YAML: could not determine a constructor for the tag "
            "'!custom' (column 4)",
        ),
    ],
)
def test_errors_are_one_line_with_file_and_line(text, message):
    with pytest.raises(PlaybookError) as caught:
        load_yaml_text(text, "f.yml")
    assert str(caught.value) == message


def test_file_errors(tmp_path):
    with pytest.raises(PlaybookError) as caught:
        load_yaml_file(tmp_path / "nope.yml", "nope.yml")
    assert str(caught.value) == "nope.yml: file not found"
    binary = tmp_path / "bin.yml"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(PlaybookError) as caught:
        load_yaml_file(binary, "bin.yml")
    assert str(caught.value) == "bin.yml: not UTF-8 text"

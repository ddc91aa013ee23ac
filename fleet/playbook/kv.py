"""Ansible's ``key=value`` shorthand for task arguments.

``file: path=/tmp/x state=directory`` is ``{"path": "/tmp/x", "state": "directory"}``.
Words are split on whitespace outside quotes and outside Jinja ``{{ }}`` / ``{% %}``,
so ``msg="hello {{ name }}"`` stays one value. Values lose one pair of surrounding
quotes and have backslash escapes (``\\n``, ``\\t``, ``\\u00e9`` ...) decoded.

Free-form actions (command, shell) take the text as ``_raw_params``; ``creates=``,
``removes=``, ``chdir=`` (and ``executable=``, ``stdin=``) words at its start are
options, the rest is the command exactly as written.
"""

from __future__ import annotations

from typing import Iterator

from fleet.templating import decode_escapes

__all__ = ["KVError", "FREE_FORM_OPTIONS", "split_args", "parse_kv", "parse_free_form", "unquote"]

#: Options a free-form action reads from the start of its text.
FREE_FORM_OPTIONS = ("creates", "removes", "chdir", "executable", "stdin")

_OPEN = ("{{", "{%", "{#")
_CLOSE = ("}}", "%}", "#}")


class KVError(ValueError):
    """Text that is not valid ``key=value`` arguments (one line)."""


def _spans(text: str) -> Iterator[tuple[int, int]]:
    """(start, end) of each word of ``text``; KVError at the end for open quotes/braces."""
    i, n = 0, len(text)
    start = None
    quote = None
    depth = 0
    while i < n:
        char = text[i]
        if start is None:
            if char.isspace():
                i += 1
                continue
            start = i
        if quote:
            if char == "\\":
                i += 2
                continue
            if char == quote:
                quote = None
            i += 1
            continue
        pair = text[i : i + 2]
        if pair in _OPEN:
            depth += 1
            i += 2
            continue
        if depth and pair in _CLOSE:
            depth -= 1
            i += 2
            continue
        if char in "'\"":
            quote = char
        elif char.isspace() and depth == 0:
            yield start, i
            start = None
        i += 1
    if quote:
        raise KVError(f"unbalanced quotes in {text.strip()!r}")
    if depth:
        raise KVError(f"unbalanced Jinja braces in {text.strip()!r}")
    if start is not None:
        yield start, n


def split_args(text: str) -> list[str]:
    """The words of ``text`` (quotes and Jinja blocks kept intact)."""
    return [text[s:e] for s, e in _spans(text)]


def unquote(value: str) -> str:
    """``value`` without one pair of matching surrounding quotes."""
    if len(value) > 1 and value[0] == value[-1] and value[0] in "'\"" and value[-2] != "\\":
        return value[1:-1]
    return value


def _split_word(word: str) -> tuple[str, str] | None:
    pos = 0
    while True:
        pos = word.find("=", pos)
        if pos < 0:
            return None
        if pos > 0 and word[pos - 1] != "\\":
            return word[:pos].strip(), word[pos + 1 :]
        pos += 1


def parse_kv(text: str) -> dict:
    """``key=value`` words to a dict of strings; a word without ``=`` is a KVError."""
    options: dict = {}
    for word in split_args(text):
        pair = _split_word(decode_escapes(word))
        if pair is None:
            raise KVError(f"expected key=value, got {word!r}")
        key, value = pair
        options[key] = unquote(value.strip())
    return options


def parse_free_form(text: str, keys: tuple = FREE_FORM_OPTIONS) -> dict:
    """Free-form text to ``{"_raw_params": rest, <option>: value, ...}``.

    Leading ``key=value`` words whose key is in ``keys`` are options; the rest of the
    text, verbatim, is ``_raw_params`` (absent when nothing is left).
    """
    options: dict = {}
    rest = 0
    try:
        for start, end in _spans(text):
            pair = _split_word(decode_escapes(text[start:end]))
            if pair is None or pair[0] not in keys:
                rest = start
                break
            options[pair[0]] = unquote(pair[1].strip())
            rest = end
        else:
            rest = len(text)
    except KVError:
        pass  # open quotes in the command itself: the command's business, not ours
    raw = text[rest:].strip()
    if raw:
        options["_raw_params"] = raw
    return options

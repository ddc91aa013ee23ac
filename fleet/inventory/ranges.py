"""Host patterns in inventory files: ``name[:port]`` with ``[a:b(:step)]`` ranges.

Rules follow Ansible's inventory docs: a range is ``[begin:end]`` or
``[begin:end:step]``, inclusive at both ends; numeric bounds with a leading zero
keep their width (``[01:10]`` gives ``01 .. 10``); alphabetic bounds are single
letters taken in the order ``a..z`` then ``A..Z``; an empty begin means ``0``.
Several ranges in one name multiply out, the first one varying slowest.
"""

from __future__ import annotations

import ipaddress
import re
import string
from typing import List, Optional, Tuple

__all__ = ["RangeError", "expand_host_range", "split_host_port", "expand_host_pattern"]


class RangeError(ValueError):
    """A host range that cannot be expanded; the message names the pattern."""


# A range as it may appear inside a DNS-like name: one letter or digits each side.
_NAME_RANGE = r"\[(?:[a-z]:[a-z]|[0-9]+:[0-9]+)(?::[0-9]+)?\]"
# One dot-separated part: starts with a word char or a range, never ends in - or _.
_LABEL = rf"(?:\w|{_NAME_RANGE})(?:[\w-]|{_NAME_RANGE})*(?<![_-])"
_HOSTNAME_RE = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*$", re.IGNORECASE)
# Hex ranges may stand in for IPv6 groups; swapped for 0 before validating.
_HEX_RANGE_RE = re.compile(r"\[[0-9a-f]+:[0-9a-f]+(?::[0-9]+)?\]", re.IGNORECASE)

# "[anything]:port" (IPv6 needs the brackets to carry a port) and "host:port",
# where host may contain complete [..] range expressions but no other colon.
_BRACKETED_PORT_RE = re.compile(r"^\[(.+)\]:([0-9]+)$")
_HOST_PORT_RE = re.compile(r"^((?:[^:\[\]]|\[[^\]]*\])*):([0-9]+)$")


def _is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(_HEX_RANGE_RE.sub("0", text))
    except ValueError:
        return False
    return True


def is_address(text: str) -> bool:
    """True if ``text`` is a host name, IPv4 or IPv6 address (ranges allowed).

    A trailing ``:port`` (or ``[addr]:port``) is accepted. Host patterns that are
    addresses are never split on ``:`` (IPv6, ranges), which is why patterns.py
    asks this too.
    """
    return split_host_port(text, strict=True) is not None


def split_host_port(text: str, strict: bool = False) -> Optional[Tuple[str, Optional[int]]]:
    """Split ``host[:port]`` into (host, port or None).

    When the host part is not a valid name or address the text is taken as a
    literal host name without port (Ansible does the same), unless ``strict``,
    which returns None instead.
    """
    host, port = text, None
    m = _BRACKETED_PORT_RE.match(text) or _HOST_PORT_RE.match(text)
    if m:
        host, port = m.group(1), int(m.group(2))
    if _HOSTNAME_RE.match(host) or _is_ipv6(host):
        return host, port
    if strict:
        return None
    return text, None


def _expand_one(text: str, body: str) -> List[str]:
    """Expand the body of one ``[..]`` range; ``text`` is only for messages."""
    parts = body.split(":")
    if len(parts) not in (2, 3):
        raise RangeError(f"host range must be begin:end or begin:end:step in {text!r}")
    begin, end = parts[0] or "0", parts[1]
    if not end:
        raise RangeError(f"host range must specify end value in {text!r}")
    step = 1
    if len(parts) == 3:
        if not parts[2].isdigit() or int(parts[2]) == 0:
            raise RangeError(f"host range step must be a positive integer in {text!r}")
        step = int(parts[2])

    if begin.isdigit() and end.isdigit():
        width = 0
        if begin[0] == "0" and len(begin) > 1:
            # A leading zero asks for fixed width; both ends must agree on it.
            if len(begin) != len(end):
                raise RangeError(
                    f"host range must specify equal-length begin and end formats in {text!r}"
                )
            width = len(begin)
        lo, hi = int(begin), int(end)
        if lo > hi:
            raise RangeError(f"host range must have begin <= end in {text!r}")
        return [str(i).zfill(width) for i in range(lo, hi + 1, step)]

    letters = string.ascii_letters
    if len(begin) == 1 and len(end) == 1 and begin in letters and end in letters:
        lo, hi = letters.index(begin), letters.index(end)
        if lo > hi:
            raise RangeError(f"host range must have begin <= end in {text!r}")
        return list(letters[lo : hi + 1 : step])

    raise RangeError(f"invalid host range '[{body}]' in {text!r}")


def expand_host_range(text: str) -> List[str]:
    """Expand every ``[begin:end(:step)]`` in ``text``; no brackets gives ``[text]``.

    >>> expand_host_range("web[01:03].example.com")
    ['web01.example.com', 'web02.example.com', 'web03.example.com']
    """
    if "[" not in text and "]" not in text:
        return [text]
    # Split into literal pieces and lists of alternatives, then multiply out.
    pieces: List[List[str]] = []
    pos = 0
    while True:
        start = text.find("[", pos)
        close = text.find("]", pos)
        if start < 0:
            if close >= 0:
                raise RangeError(f"unbalanced bracket in host range {text!r}")
            pieces.append([text[pos:]])
            break
        if close < start:
            raise RangeError(f"unbalanced bracket in host range {text!r}")
        nested = text.find("[", start + 1)
        if nested != -1 and nested < close:
            raise RangeError(f"unbalanced bracket in host range {text!r}")
        pieces.append([text[pos:start]])
        pieces.append(_expand_one(text, text[start + 1 : close]))
        pos = close + 1

    names = [""]
    for alternatives in pieces:
        names = [done + alt for done in names for alt in alternatives]
    return names


def expand_host_pattern(text: str) -> Tuple[List[str], Optional[int]]:
    """Turn one inventory host entry into (host names, port or None)."""
    host, port = split_host_port(text)  # type: ignore[misc]
    return expand_host_range(host), port

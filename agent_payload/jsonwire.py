"""JSON for the wire, built on the interpreter's C accelerator (_json) directly.

The json package imports re (and with it enum) at start-up; on a host that starts the
payload once per connection that is milliseconds of CPU per host for nothing. The C
scanner and encoder json itself uses are enough for compact, strict JSON. Falls back
to the json package where _json is missing (other Python implementations).
"""

try:
    import _json
except ImportError:  # pragma: no cover - CPython always has it
    _json = None


class _DecodeContext:
    """The attributes _json's scanner reads from a json.JSONDecoder."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    memo = {}

    @staticmethod
    def parse_constant(name):
        return {"-Infinity": float("-inf"), "Infinity": float("inf"), "NaN": float("nan")}[name]


def _default(value):
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


if _json is not None:
    _scan = _json.make_scanner(_DecodeContext)
    _encode = _json.make_encoder(None, _default, _json.encode_basestring_ascii, None, ":", ",",
                                 False, False, True)

    def dumps(value):
        """Compact JSON text of ``value`` (ASCII, like json.dumps(separators=(',', ':')))."""
        return "".join(_encode(value, 0))

    def loads(text):
        """The value of JSON ``text``; ValueError when it is not exactly one JSON value."""
        start = len(text) - len(text.lstrip())
        try:
            value, end = _scan(text, start)
        except StopIteration:
            raise ValueError("not JSON") from None
        if text[end:].strip():
            raise ValueError(f"extra data after JSON at {end}")
        return value
else:  # pragma: no cover
    import json

    def dumps(value):
        return json.dumps(value, separators=(",", ":"))

    loads = json.loads

"""The wire format between the controller and the payload's serve mode.

One SSH channel carries frames in both directions. A frame is a 9-byte header
(body length: uint32, kind: uint8, request id: uint32, all big-endian) and a body:

- MSG:  a UTF-8 JSON object. Controller to host: ``{"op": "call", "module", "params"}``,
        ``{"op": "cancel"}``, ``{"op": "resize", "rows", "cols"}``, ``{"op": "forget"}``
        (id 0: a new command on a session kept between commands; answered ``{"ev":
        "forgot"}``). Host to controller:
        ``{"ev": "hello"}`` (id 0), ``{"ev": "progress", ...}``, ``{"ev": "result",
        "result": {...}}``, ``{"ev": "error", "msg": ...}``.
- DATA: raw bytes of a request's stream (file content going up, a pty's or a log's
        bytes coming down); no base64, no JSON.
- EOF:  the sender's side of that request's stream is finished.

The request id ties frames to a request, so several requests are in flight on one
channel at once and each can be cancelled by id. This module is shared verbatim by
the controller (which imports it from the package) and the host.
"""

import struct

from agent_payload import jsonwire

HEADER = struct.Struct(">IBI")
MSG = 1
DATA = 2
EOF = 3
KINDS = (MSG, DATA, EOF)
# Large enough for a layer chunk, small enough that one frame never stalls others long.
MAX_BODY = 4 * 1024 * 1024


class ProtocolError(Exception):
    """The peer sent something that is not a valid frame."""


def header(kind, req_id, length):
    """Return the header of a frame whose body is ``length`` bytes."""
    if length > MAX_BODY:
        raise ProtocolError(f"frame body of {length} bytes exceeds {MAX_BODY}")
    return HEADER.pack(length, kind, req_id)


def encode(kind, req_id, body=b""):
    """Return the bytes of one frame."""
    return header(kind, req_id, len(body)) + body


def encode_msg(req_id, obj):
    """Return the bytes of one MSG frame carrying ``obj`` as JSON."""
    return encode(MSG, req_id, jsonwire.dumps(obj).encode())


def decode_msg(body):
    """Parse a MSG body; raise ProtocolError when it is not a JSON object."""
    try:
        obj = jsonwire.loads(body.decode())
    except (UnicodeDecodeError, ValueError) as exc:
        raise ProtocolError(f"bad message: {exc}") from None
    if not isinstance(obj, dict):
        raise ProtocolError("bad message: not an object")
    return obj


# The most one read asks for. An unbuffered read(n) allocates n bytes before it learns
# how many arrived (a pipe holds 64 KiB), and above 128 KiB glibc maps fresh memory for
# every such buffer: asking for a whole 1 MiB frame at once cost the host more in page
# faults than the copy itself.
READ_SIZE = 64 * 1024


def read_exact(read, n):
    """Read exactly n bytes with ``read``; return None on a clean EOF before the first byte."""
    chunks = []
    remaining = n
    while remaining:
        chunk = read(min(remaining, READ_SIZE))
        if not chunk:
            if remaining == n:
                return None
            raise ProtocolError("stream ended inside a frame")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def read_frame(read):
    """Read one frame with ``read(n)``; return (kind, req_id, body) or None at EOF."""
    header = read_exact(read, HEADER.size)
    if header is None:
        return None
    length, kind, req_id = HEADER.unpack(header)
    if kind not in KINDS or length > MAX_BODY:
        raise ProtocolError(f"bad frame header kind={kind} length={length}")
    body = read_exact(read, length) if length else b""
    if body is None:
        raise ProtocolError("stream ended inside a frame")
    return kind, req_id, body

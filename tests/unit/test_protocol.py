"""Unit tests for agent_payload.protocol: frames, messages and their failures."""

import io

import pytest

from agent_payload import protocol
from agent_payload.protocol import DATA, EOF, HEADER, MAX_BODY, MSG, ProtocolError


def reader(data):
    """A ``read(n)`` over bytes, as the serve loop and the session use it."""
    return io.BytesIO(data).read


def trickle(data):
    """A ``read(n)`` that hands out one byte at a time (a slow channel)."""
    stream = io.BytesIO(data)
    return lambda n: stream.read(min(n, 1))


@pytest.mark.parametrize("kind, req_id, body", [
    (MSG, 1, b'{"op":"call"}'),
    (DATA, 7, b"\x00\x01\xffbinary"),
    (DATA, 2**32 - 1, b"x" * 1000),
    (EOF, 3, b""),
    (DATA, 0, b""),
    (DATA, 9, b"y" * MAX_BODY),
])
def test_encode_read_frame_round_trip(kind, req_id, body):
    frame = protocol.encode(kind, req_id, body)
    assert len(frame) == HEADER.size + len(body)
    assert protocol.read_frame(reader(frame)) == (kind, req_id, body)


def test_header_layout_is_length_kind_id_big_endian():
    assert protocol.encode(DATA, 0x01020304, b"ab") == b"\x00\x00\x00\x02\x02\x01\x02\x03\x04ab"


def test_read_frame_survives_short_reads():
    frames = protocol.encode_msg(1, {"a": 1}) + protocol.encode(DATA, 1, b"xyz")
    read = trickle(frames + protocol.encode(EOF, 1))
    assert protocol.read_frame(read) == (MSG, 1, b'{"a":1}')
    assert protocol.read_frame(read) == (DATA, 1, b"xyz")
    assert protocol.read_frame(read) == (EOF, 1, b"")
    assert protocol.read_frame(read) is None


@pytest.mark.parametrize("obj", [
    {},
    {"op": "call", "module": "ping", "params": {"data": "héllo ☃"}},
    {"ev": "result", "result": {"changed": False, "nested": [1, 2.5, None, True]}},
])
def test_msg_round_trip(obj):
    kind, req_id, body = protocol.read_frame(reader(protocol.encode_msg(42, obj)))
    assert (kind, req_id) == (MSG, 42)
    assert protocol.decode_msg(body) == obj


def test_read_frame_at_clean_eof_returns_none():
    assert protocol.read_frame(reader(b"")) is None


def test_several_frames_then_eof():
    data = b"".join(protocol.encode(DATA, i, b"%d" % i) for i in range(5))
    read = reader(data)
    got = [protocol.read_frame(read) for _ in range(5)]
    assert got == [(DATA, i, b"%d" % i) for i in range(5)]
    assert protocol.read_frame(read) is None


@pytest.mark.parametrize("cut", [1, 4, HEADER.size - 1])
def test_truncated_header_raises(cut):
    frame = protocol.encode(DATA, 1, b"hello")
    with pytest.raises(ProtocolError, match="ended inside a frame"):
        protocol.read_frame(reader(frame[:cut]))


@pytest.mark.parametrize("cut", [HEADER.size, HEADER.size + 1, HEADER.size + 4])
def test_truncated_body_raises(cut):
    frame = protocol.encode(DATA, 1, b"hello")
    with pytest.raises(ProtocolError, match="ended inside a frame"):
        protocol.read_frame(reader(frame[:cut]))


def test_encode_rejects_oversize_body():
    with pytest.raises(ProtocolError, match="exceeds"):
        protocol.encode(DATA, 1, b"x" * (MAX_BODY + 1))


def test_read_frame_rejects_oversize_length():
    header = HEADER.pack(MAX_BODY + 1, DATA, 1)
    with pytest.raises(ProtocolError, match="bad frame header"):
        protocol.read_frame(reader(header + b"x" * 16))


@pytest.mark.parametrize("kind", [0, 4, 255])
def test_read_frame_rejects_unknown_kind(kind):
    with pytest.raises(ProtocolError, match=f"kind={kind}"):
        protocol.read_frame(reader(HEADER.pack(0, kind, 1)))


@pytest.mark.parametrize("body", [b"[1, 2]", b'"text"', b"3", b"null", b"true"])
def test_decode_msg_rejects_non_objects(body):
    with pytest.raises(ProtocolError, match="not an object"):
        protocol.decode_msg(body)


@pytest.mark.parametrize("body", [b"{", b"", b"\xff\xfe", b"{'single': 1}"])
def test_decode_msg_rejects_invalid_json(body):
    with pytest.raises(ProtocolError, match="bad message"):
        protocol.decode_msg(body)


def test_read_exact_returns_none_only_before_first_byte():
    assert protocol.read_exact(reader(b""), 3) is None
    assert protocol.read_exact(reader(b"abc"), 3) == b"abc"
    with pytest.raises(ProtocolError):
        protocol.read_exact(reader(b"ab"), 3)


def test_read_exact_asks_for_at_most_read_size_at_a_time():
    data = bytes(range(256)) * 1000
    asked = []
    stream = io.BytesIO(data)

    def read(n):
        asked.append(n)
        return stream.read(n)

    assert protocol.read_exact(read, len(data)) == data
    assert max(asked) == protocol.READ_SIZE and len(asked) == -(-len(data) // protocol.READ_SIZE)

"""Tests of agent_payload.oci.tarstream against archives written by tarfile (and by hand)."""

import io
import os
import tarfile

import pytest

from agent_payload.oci import tarstream
from agent_payload.oci.tarstream import TarError, TarReader

MTIME = 1704067200


def _info(name, kind=tarfile.REGTYPE, size=0, **attrs):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = size
    info.mtime = MTIME
    info.mode = 0o644
    for key, value in attrs.items():
        setattr(info, key, value)
    return info


def _tar(members, fmt=tarfile.PAX_FORMAT, pax_headers=None):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt,
                      pax_headers=pax_headers or {}) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def _chunks(raw, size):
    parts = [raw[i:i + size] for i in range(0, len(raw), size)]
    return lambda: parts.pop(0) if parts else b""


def _read_all(raw, chunk=7):
    """[(entry, content)] of every entry, the stream handed over in small pieces."""
    reader = TarReader(_chunks(raw, chunk))
    out = []
    while True:
        entry = reader.next_entry()
        if entry is None:
            return out
        read, write = os.pipe()
        try:
            reader.copy_content(write)
            os.close(write)
            write = None
            content = os.read(read, 1 << 20)
        finally:
            os.close(read)
            if write is not None:
                os.close(write)
        out.append((entry, content))


@pytest.mark.parametrize("fmt", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
@pytest.mark.parametrize("chunk", [1, 511, 512, 4096, 1 << 20])
def test_entries_and_content_in_any_chunking(fmt, chunk):
    members = [
        (_info("etc", tarfile.DIRTYPE, mode=0o755), None),
        (_info("etc/hosts", size=11, uid=1000, gid=100, mode=0o4755), b"127.0.0.1\n\n"),
        (_info("etc/link", tarfile.SYMTYPE, linkname="hosts"), None),
        (_info("etc/hard", tarfile.LNKTYPE, linkname="etc/hosts"), None),
        (_info("dev/null", tarfile.CHRTYPE, devmajor=1, devminor=3), None),
        (_info("fifo", tarfile.FIFOTYPE), None),
        (_info("big", size=5000), os.urandom(5000)),
    ]
    got = _read_all(_tar(members, fmt), chunk)
    assert [e.name for e, _ in got] == ["etc", "etc/hosts", "etc/link", "etc/hard",
                                        "dev/null", "fifo", "big"]
    assert [e.type for e, _ in got] == [
        tarstream.DIRECTORY, tarstream.REGULAR, tarstream.SYMLINK, tarstream.HARDLINK,
        tarstream.CHARDEV, tarstream.FIFO, tarstream.REGULAR]
    hosts = got[1][0]
    assert (hosts.uid, hosts.gid, hosts.mode, hosts.size) == (1000, 100, 0o4755, 11)
    assert hosts.mtime_ns == MTIME * 1_000_000_000
    assert got[1][1] == b"127.0.0.1\n\n" and got[6][1] == members[6][1]
    assert got[2][0].linkname == "hosts" and got[3][0].linkname == "etc/hosts"
    assert (got[4][0].devmajor, got[4][0].devminor) == (1, 3)


@pytest.mark.parametrize("fmt", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_long_names_and_link_names(fmt):
    name, target = "d/" + "n" * 150 + "/file", "t" * 180
    got = _read_all(_tar([(_info(name, size=3), b"abc"),
                          (_info("l", tarfile.SYMTYPE, linkname=target), None)], fmt))
    assert (got[0][0].name, got[0][1]) == (name, b"abc")
    assert got[1][0].linkname == target


def test_ustar_prefix_joins_the_name():
    name = "p" * 120 + "/file"
    got = _read_all(_tar([(_info(name, size=1), b"x")], tarfile.USTAR_FORMAT))
    assert got[0][0].name == name


def test_pax_fields_override_the_header():
    info = _info("short", size=2)
    info.pax_headers = {"path": "long/ünïcode-name", "mtime": "1704067200.123456789",
                        "uid": "70000", "SCHILY.xattr.user.k": "v\x00w"}
    got = _read_all(_tar([(info, b"hi")]))
    entry = got[0][0]
    assert entry.name == "long/ünïcode-name"
    assert entry.mtime_ns == 1704067200123456789
    assert entry.uid == 70000
    assert entry.xattrs == {"user.k": b"v\x00w"}


def test_global_pax_header_applies_to_later_entries():
    raw = _tar([(_info("a", size=1), b"a"), (_info("b", size=1), b"b")],
               pax_headers={"SCHILY.xattr.user.g": "1"})
    assert [e.xattrs for e, _ in _read_all(raw)] == [{"user.g": b"1"}] * 2


def test_base256_numbers():
    info = _info("f", size=1, uid=2 ** 40)  # too big for octal: GNU writes base-256
    got = _read_all(_tar([(info, b"x")], tarfile.GNU_FORMAT))
    assert got[0][0].uid == 2 ** 40


def test_old_style_directory_and_trailing_slashes():
    raw = _tar([(_info("olddir/", tarfile.AREGTYPE), None),
                (_info("newdir/", tarfile.DIRTYPE), None)], tarfile.USTAR_FORMAT)
    got = _read_all(raw)
    assert [(e.name, e.type) for e, _ in got] == [("olddir", tarstream.DIRECTORY),
                                                 ("newdir", tarstream.DIRECTORY)]


def test_unread_content_is_skipped():
    raw = _tar([(_info("a", size=700), b"a" * 700), (_info("b", size=1), b"b")])
    reader = TarReader(_chunks(raw, 100))
    assert reader.next_entry().name == "a"
    assert reader.next_entry().name == "b"
    assert reader.next_entry() is None
    assert reader.next_entry() is None


def test_bad_checksum():
    raw = bytearray(_tar([(_info("a", size=1), b"a")], tarfile.USTAR_FORMAT))
    raw[0] ^= 0x01
    with pytest.raises(TarError, match="checksum"):
        _read_all(bytes(raw))


@pytest.mark.parametrize("cut", [100, 512 + 1, 1024 - 1])
def test_truncated_stream(cut):
    raw = _tar([(_info("a", size=600), b"a" * 600)], tarfile.USTAR_FORMAT)
    with pytest.raises(TarError, match="ends inside"):
        _read_all(raw[:cut])


def test_sparse_entries_are_refused():
    raw = bytearray(_tar([(_info("s", size=1), b"s")], tarfile.GNU_FORMAT))
    raw[156:157] = b"S"
    raw[148:156] = b"%06o\0 " % (sum(raw[:148]) + sum(raw[156:512]) + 8 * 0x20)
    with pytest.raises(TarError, match="sparse"):
        _read_all(bytes(raw))


def test_oversized_extended_header_is_refused(monkeypatch):
    monkeypatch.setattr(tarstream, "MAX_EXTENDED", 100)
    info = _info("f", size=1)
    info.pax_headers = {"comment": "c" * 200}
    with pytest.raises(TarError, match="pax header of"):
        _read_all(_tar([(info, b"x")]))


def test_empty_stream_has_no_entries():
    assert _read_all(b"") == []
    assert _read_all(bytes(1024)) == []

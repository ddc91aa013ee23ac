"""Tests of agent_payload.oci.unpack: entry types, metadata, whiteouts, confinement."""

import gzip
import hashlib
import io
import os
import shutil
import stat
import subprocess
import tarfile

import pytest

from agent_payload.oci.unpack import UnpackError, chain_id, unpack_layer

DIGEST = "sha256:" + "ab" * 32
MTIME = 1704067200
ROOT = os.geteuid() == 0


def _info(name, kind=tarfile.REGTYPE, mode=0o644, uid=0, gid=0, linkname="", pax=None):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.uid, info.gid = uid, gid
    info.mtime = MTIME
    info.linkname = linkname
    if pax:
        info.pax_headers = dict(pax)
    return info


def make_tar(entries):
    """entries: (TarInfo, data bytes or None) pairs -> uncompressed PAX tar bytes."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in entries:
            if data is not None:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    return buf.getvalue()


def f(name, data=b"x", **kw):
    return (_info(name, **kw), data)


def d(name, mode=0o755, **kw):
    return (_info(name, tarfile.DIRTYPE, mode=mode, **kw), None)


def sym(name, target, **kw):
    return (_info(name, tarfile.SYMTYPE, mode=0o777, linkname=target, **kw), None)


def hard(name, target, **kw):
    return (_info(name, tarfile.LNKTYPE, linkname=target, **kw), None)


def unpack(raw, dest, compression="none"):
    data = gzip.compress(raw) if compression == "gzip" else raw
    return unpack_layer(io.BytesIO(data), str(dest), compression, DIGEST)


@pytest.fixture
def dest(tmp_path):
    path = tmp_path / "layer"
    path.mkdir()
    (tmp_path / "sentinel").mkdir()
    return path


def _trusted_xattrs_ok(path):
    try:
        os.setxattr(str(path), "trusted.fleet-test", b"1")
        os.removexattr(str(path), "trusted.fleet-test")
        return True
    except OSError:
        return False


def _user_xattrs_ok(path):
    try:
        os.setxattr(str(path), "user.fleet-test", b"1")
        return True
    except OSError:
        return False


@pytest.mark.parametrize("compression", ["none", "gzip"])
def test_entry_types_and_metadata(dest, compression):
    raw = make_tar([
        d("etc"),
        f("etc/hello.txt", b"hello\n", mode=0o640, uid=1000, gid=1000),
        d("bin", mode=0o750),
        f("bin/suid", b"#!/bin/sh\n", mode=0o4755),
        f("bin/sgid", b"#!/bin/sh\n", mode=0o2755, gid=1000),
        hard("etc/hard.txt", "etc/hello.txt", uid=1000, gid=1000),
        sym("etc/link", "hello.txt", uid=1000, gid=1000),
        sym("etc/abs-link", "/etc/shadow"),
        (_info("etc/fifo", tarfile.FIFOTYPE, mode=0o600), None),
        d("tmp", mode=0o1777),
        f("./dotted/file", b"implicit parent\n"),
    ])
    stats = unpack(raw, dest, compression)
    assert stats["diff_id"] == "sha256:" + hashlib.sha256(raw).hexdigest()
    assert stats["bytes"] == len(b"hello\n") + 2 * len(b"#!/bin/sh\n") + len(b"implicit parent\n")
    assert stats["files"] == 11
    st = os.lstat(dest / "etc/hello.txt")
    assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o640
    assert (dest / "etc/hello.txt").read_bytes() == b"hello\n"
    assert st.st_mtime == MTIME
    assert stat.S_IMODE(os.lstat(dest / "bin/suid").st_mode) == 0o4755
    assert stat.S_IMODE(os.lstat(dest / "bin/sgid").st_mode) == 0o2755
    assert stat.S_IMODE(os.lstat(dest / "bin").st_mode) == 0o750
    assert stat.S_IMODE(os.lstat(dest / "tmp").st_mode) == 0o1777
    assert os.lstat(dest / "bin").st_mtime == MTIME
    assert os.lstat(dest / "etc").st_mtime == MTIME
    hard_st = os.lstat(dest / "etc/hard.txt")
    assert (hard_st.st_ino, hard_st.st_nlink) == (st.st_ino, 2)
    assert os.readlink(dest / "etc/link") == "hello.txt"
    assert os.readlink(dest / "etc/abs-link") == "/etc/shadow"
    assert os.lstat(dest / "etc/link").st_mtime == MTIME
    assert stat.S_ISFIFO(os.lstat(dest / "etc/fifo").st_mode)
    assert (dest / "dotted/file").read_bytes() == b"implicit parent\n"
    if ROOT:
        assert (st.st_uid, st.st_gid) == (1000, 1000)
        assert (os.lstat(dest / "etc/link").st_uid, os.lstat(dest / "etc/link").st_gid) == (
            1000, 1000)
        assert os.lstat(dest / "bin/suid").st_uid == 0
        assert os.lstat(dest / "bin/sgid").st_gid == 1000
        assert stats["warnings"] == []


@pytest.mark.skipif(not ROOT, reason="ownership needs root")
def test_setuid_survives_owner_change(dest):
    raw = make_tar([f("tool", b"t", mode=0o4755, uid=1000, gid=1000)])
    unpack(raw, dest)
    st = os.lstat(dest / "tool")
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (1000, 0o4755)


def test_pax_xattrs(dest):
    if not _user_xattrs_ok(dest):
        pytest.skip("filesystem refuses user xattrs")
    raw = make_tar([f("x.txt", b"x", pax={"SCHILY.xattr.user.test": "value-1"}),
                    d("dir", pax={"SCHILY.xattr.user.test": "dirval"})])
    stats = unpack(raw, dest)
    assert os.getxattr(dest / "x.txt", "user.test") == b"value-1"
    assert os.getxattr(dest / "dir", "user.test") == b"dirval"
    assert stats["warnings"] == []


def test_refused_xattr_is_a_warning(dest, monkeypatch):
    def refuse(*_a, **_k):
        raise OSError(95, "Operation not supported")

    monkeypatch.setattr(os, "setxattr", refuse)
    raw = make_tar([f("x.txt", b"x", pax={"SCHILY.xattr.user.test": "v"})])
    stats = unpack(raw, dest)
    assert (dest / "x.txt").read_bytes() == b"x"
    assert len(stats["warnings"]) == 1
    assert "'x.txt'" in stats["warnings"][0] and "user.test" in stats["warnings"][0]


@pytest.mark.skipif(not ROOT, reason="device nodes need root")
def test_devices(dest):
    chr_info = _info("dev/null", tarfile.CHRTYPE, mode=0o666)
    chr_info.devmajor, chr_info.devminor = 1, 3
    blk_info = _info("dev/loop9", tarfile.BLKTYPE, mode=0o660)
    blk_info.devmajor, blk_info.devminor = 7, 9
    unpack(make_tar([d("dev"), (chr_info, None), (blk_info, None)]), dest)
    st = os.lstat(dest / "dev/null")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(1, 3)
    assert stat.S_IMODE(st.st_mode) == 0o666
    st = os.lstat(dest / "dev/loop9")
    assert stat.S_ISBLK(st.st_mode) and st.st_rdev == os.makedev(7, 9)


@pytest.mark.skipif(not ROOT, reason="whiteouts are device nodes: need root")
def test_whiteouts(dest):
    raw = make_tar([
        d("etc"), f("etc/.wh.gone.conf", b""),
        d("opt"), d("opt/old"), f("opt/old/.wh..wh..opq", b""),
        f("opt/old/new.txt", b"new"),
        f(".wh.top", b""),
        f("etc/.wh..wh.plnk", b""),
    ])
    unpack(raw, dest)
    for path in ("etc/gone.conf", "top"):
        st = os.lstat(dest / path)
        assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(0, 0)
    names = set(os.listdir(dest)) | set(os.listdir(dest / "etc")) | set(
        os.listdir(dest / "opt/old"))
    assert not [n for n in names if n.startswith(".wh.")]
    assert (dest / "opt/old/new.txt").read_bytes() == b"new"
    if _trusted_xattrs_ok(dest):
        assert os.getxattr(dest / "opt/old", "trusted.overlay.opaque") == b"y"
        with pytest.raises(OSError):
            os.getxattr(dest / "opt", "trusted.overlay.opaque")


def test_same_layer_replacement(dest):
    raw = make_tar([
        d("a"), f("a/inner", b"1"), d("a/sub"), f("a/sub/deep", b"2"),
        f("a", b"now a file"),
        f("b", b"file first"), d("b", mode=0o700),
        sym("c", "target"), f("c", b"regular now"),
        f("e", b"old"), f("e", b"new", mode=0o600),
    ])
    unpack(raw, dest)
    assert (dest / "a").read_bytes() == b"now a file"
    assert stat.S_ISDIR(os.lstat(dest / "b").st_mode)
    assert stat.S_IMODE(os.lstat(dest / "b").st_mode) == 0o700
    assert (dest / "c").read_bytes() == b"regular now" and not os.path.islink(dest / "c")
    assert (dest / "e").read_bytes() == b"new"
    assert stat.S_IMODE(os.lstat(dest / "e").st_mode) == 0o600


def test_existing_directory_gets_new_metadata(dest):
    unpack(make_tar([d("dir", mode=0o755), f("dir/x", b"x"), d("dir", mode=0o711)]), dest)
    assert stat.S_IMODE(os.lstat(dest / "dir").st_mode) == 0o711
    assert (dest / "dir/x").read_bytes() == b"x"


def test_root_entry_sets_dest_metadata(dest):
    os.chmod(dest, 0o700)
    unpack(make_tar([d("./", mode=0o755), f("x", b"x")]), dest)
    assert stat.S_IMODE(os.lstat(dest).st_mode) == 0o755
    assert os.lstat(dest).st_mtime == MTIME


HOSTILE = [
    ("dotdot", [f("../escape", b"x")], "'../escape': path leaves the layer"),
    ("absolute", [f("/abs", b"x")], "'/abs': path leaves the layer"),
    ("dotdot-inside", [f("a/../../b", b"x")], "'a/../../b': path leaves the layer"),
    ("through-abs-symlink", [sym("link", "/etc"), f("link/passwd", b"x")],
     "'link/passwd': path leaves the layer"),
    ("through-rel-symlink", [sym("up", "../sentinel"), f("up/owned", b"x")],
     "'up/owned': path leaves the layer"),
    ("hardlink-out", [hard("h", "../../etc/passwd")],
     "'h': hardlink target '../../etc/passwd' leaves the layer"),
    ("hardlink-abs", [hard("h", "/etc/passwd")],
     "'h': hardlink target '/etc/passwd' leaves the layer"),
    ("hardlink-through-symlink", [sym("s", "/etc"), hard("h", "s/passwd")],
     "'h': path leaves the layer"),
    ("dir-through-symlink", [sym("s", "../sentinel"), d("s/newdir")],
     "'s/newdir': path leaves the layer"),
    ("whiteout-through-symlink", [sym("s", "../sentinel"), f("s/.wh.x", b"")],
     "'s/.wh.x': path leaves the layer"),
]


@pytest.mark.parametrize("entries,message", [(e, m) for _, e, m in HOSTILE],
                         ids=[i for i, _, _ in HOSTILE])
def test_hostile_entries_refused(dest, entries, message):
    sentinel = dest.parent / "sentinel"
    with pytest.raises(UnpackError) as err:
        unpack(make_tar(entries), dest)
    text = str(err.value)
    assert text.startswith(f"layer {DIGEST} entry ")
    assert message in text
    assert "\n" not in text
    assert os.listdir(sentinel) == []
    assert sorted(os.listdir(dest.parent)) == ["layer", "sentinel"]


def test_hardlink_to_missing_target(dest):
    with pytest.raises(UnpackError, match="'h': hardlink target 'nope' does not exist"):
        unpack(make_tar([hard("h", "nope")]), dest)


def test_corrupt_stream(dest):
    raw = make_tar([f("a", os.urandom(50000))])
    comp = gzip.compress(raw)
    with pytest.raises(UnpackError, match=f"layer {DIGEST}"):
        unpack_layer(io.BytesIO(comp[:len(comp) // 2]), str(dest), "gzip", DIGEST)
    with pytest.raises(UnpackError, match=f"layer {DIGEST}"):
        unpack_layer(io.BytesIO(raw[:20000]), str(dest), "none", DIGEST)
    with pytest.raises(UnpackError, match="not a valid gzip-compressed tar stream"):
        unpack_layer(io.BytesIO(b"not gzip at all" * 10), str(dest), "gzip", DIGEST)


def test_unknown_compression(dest):
    with pytest.raises(UnpackError, match="unknown compression"):
        unpack_layer(io.BytesIO(b""), str(dest), "lz4", DIGEST)


@pytest.mark.skipif(shutil.which("zstd") is None, reason="needs zstd")
def test_zstd(dest):
    raw = make_tar([d("z"), f("z/file", b"zstd content" * 1000)])
    comp = subprocess.run(["zstd", "-c", "-q"], input=raw, capture_output=True,
                          check=True).stdout
    stats = unpack_layer(io.BytesIO(comp), str(dest), "zstd", DIGEST)
    assert stats["diff_id"] == "sha256:" + hashlib.sha256(raw).hexdigest()
    assert (dest / "z/file").read_bytes() == b"zstd content" * 1000


@pytest.mark.skipif(shutil.which("zstd") is None, reason="needs zstd")
def test_zstd_corrupt(dest):
    with pytest.raises(UnpackError, match=f"layer {DIGEST}: zstd -dc failed: "):
        unpack_layer(io.BytesIO(b"\x28\xb5\x2f\xfdgarbage" * 50), str(dest), "zstd", DIGEST)
    with pytest.raises(UnpackError, match=f"layer {DIGEST}: zstd -dc failed: "):
        unpack_layer(io.BytesIO(b"not zstd at all"), str(dest), "zstd", DIGEST)


def test_zstd_missing(dest, monkeypatch):
    from agent_payload import tools
    monkeypatch.setattr(tools, "which", lambda _name: None)
    with pytest.raises(UnpackError, match=f"zstd layer {DIGEST} needs the zstd program"):
        unpack_layer(io.BytesIO(b""), str(dest), "zstd", DIGEST)


def test_diff_id_includes_trailing_padding(dest):
    raw = make_tar([f("a", b"a")]) + b"\0" * 4096
    assert unpack(raw, dest)["diff_id"] == "sha256:" + hashlib.sha256(raw).hexdigest()


def test_chain_id():
    a, b, c = ("sha256:" + h * 64 for h in "abc")
    assert chain_id([a]) == a
    ab = "sha256:" + hashlib.sha256(f"{a} {b}".encode()).hexdigest()
    assert chain_id([a, b]) == ab
    assert chain_id([a, b, c]) == "sha256:" + hashlib.sha256(f"{ab} {c}".encode()).hexdigest()
    with pytest.raises(ValueError):
        chain_id([])


def test_gzip_members_and_zero_padding(dest):
    raw = make_tar([f("a", b"a" * 3000), f("b", b"b")])
    data = gzip.compress(raw[:1500]) + gzip.compress(raw[1500:]) + bytes(700)
    stats = unpack_layer(io.BytesIO(data), str(dest), "gzip", DIGEST)
    assert stats["diff_id"] == "sha256:" + hashlib.sha256(raw).hexdigest()
    assert (dest / "a").read_bytes() == b"a" * 3000


@pytest.mark.parametrize("mangle", [lambda gz: gz[:-12], lambda gz: gz[:40],
                                    lambda gz: gz[:-8] + b"\0\0\0\0" + gz[-4:]],
                         ids=["truncated", "cut-early", "bad-crc"])
def test_damaged_gzip_is_refused(dest, mangle):
    raw = make_tar([f("a", os.urandom(4000))])
    with pytest.raises(UnpackError, match=f"layer {DIGEST}: not a valid gzip-compressed tar"):
        unpack_layer(io.BytesIO(mangle(gzip.compress(raw))), str(dest), "gzip", DIGEST)


def test_a_refused_entry_stops_the_reading_thread(dest):
    # Many chunks still to come when the entry is refused: the reader must not hang.
    raw = make_tar([f("../evil", b"x")] + [f(f"f{i}", os.urandom(300_000)) for i in range(40)])
    with pytest.raises(UnpackError, match="path leaves the layer"):
        unpack(raw, dest, "gzip")


def test_highly_compressed_content_comes_out_whole(dest):
    zeros = bytes(5 * 1024 * 1024 + 123)
    raw = make_tar([f("zeros", zeros), f("after", b"after")])
    data = gzip.compress(raw, compresslevel=9)
    stats = unpack_layer(io.BytesIO(data), str(dest), "gzip", DIGEST)
    assert stats["diff_id"] == "sha256:" + hashlib.sha256(raw).hexdigest()
    assert (dest / "zeros").stat().st_size == len(zeros)
    assert (dest / "after").read_bytes() == b"after"

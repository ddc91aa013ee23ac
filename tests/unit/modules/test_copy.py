"""copy module, run in-process through serve.call_module; the content comes from the fake
context's input stream as the controller would send it."""

import hashlib
import json
import os
import stat
import sys

import pytest

from agent_payload import serve
from agent_payload.modules import copy as copy_module
from agent_payload.modules._fileattrs import current_umask
from tests.unit.modules.conftest import FakeCtx, call, chunked, copy_params, needs_root, snapshot

TEXT = b"line one\nline two\n"


def run_copy(params, data, **ctx_args):
    """One copy task; the context streams ``data`` when asked. Returns (result, ctx)."""
    return call("copy", params, chunks=chunked(data), **ctx_args)


def mode_of(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


def temp_files(directory):
    return [name for name in os.listdir(directory) if name.startswith(".fleet-copy-")]


def test_new_file_then_nothing_to_do(tmp_path):
    dest = tmp_path / "f.txt"
    params = copy_params(dest, TEXT)
    first, ctx = run_copy(params, TEXT)
    assert first["changed"] is True and first["failed"] is False
    assert ctx.content_requests == [{"need_content": True, "dest": str(dest),
                                     "size": len(TEXT)}]
    assert dest.read_bytes() == TEXT
    assert mode_of(dest) == 0o666 & ~current_umask()
    assert first["checksum"] == hashlib.sha1(TEXT).hexdigest()
    assert first["sha256"] == hashlib.sha256(TEXT).hexdigest()
    assert (first["dest"], first["size"], first["state"]) == (str(dest), len(TEXT), "file")
    assert {"mode", "owner", "group", "uid", "gid"} <= set(first)
    second, ctx = run_copy(params, TEXT)
    assert second["changed"] is False and ctx.events == [] and ctx.reads == 0
    assert second["checksum"] == first["checksum"] and second["mode"] == first["mode"]


@pytest.mark.parametrize("existing", [None, b"old\n"])
def test_empty_content(tmp_path, existing):
    dest = tmp_path / "empty"
    if existing is not None:
        dest.write_bytes(existing)
    first, ctx = run_copy(copy_params(dest, b""), b"")
    assert first["changed"] is True and len(ctx.content_requests) == 1
    assert dest.read_bytes() == b"" and first["size"] == 0
    second, ctx = run_copy(copy_params(dest, b""), b"")
    assert second["changed"] is False and ctx.reads == 0
    inline, _ = call("copy", {"dest": str(dest), "content": ""})
    assert inline["changed"] is False


def test_large_random_file_is_streamed(tmp_path):
    data = os.urandom(3 * 1024 * 1024 + 17)
    dest = tmp_path / "big.bin"
    first, ctx = run_copy(copy_params(dest, data), data)
    assert first["changed"] is True and ctx.reads == len(chunked(data)) + 1
    assert hashlib.sha256(dest.read_bytes()).digest() == hashlib.sha256(data).digest()
    second, ctx = run_copy(copy_params(dest, data), data)
    assert second["changed"] is False and ctx.reads == 0


@pytest.mark.parametrize("mode, expected", [
    ("0640", 0o640), ("600", 0o600), (0o755, 0o755), (420, 0o644), ("u=rw,go=r", 0o644),
    ("u+x", (0o666 & ~0o022) | 0o100),
])
def test_modes_and_idempotency(tmp_path, monkeypatch, mode, expected):
    monkeypatch.setattr(copy_module, "current_umask", lambda: 0o022)
    dest = tmp_path / "f"
    params = copy_params(dest, TEXT, mode=mode)
    first, _ = run_copy(params, TEXT)
    assert mode_of(dest) == expected and first["mode"] == f"0{expected:03o}"
    second, ctx = run_copy(params, TEXT)
    assert second["changed"] is False and ctx.reads == 0


def test_same_content_only_fixes_attributes(tmp_path):
    dest = tmp_path / "f"
    dest.write_bytes(TEXT)
    os.chmod(dest, 0o644)
    params = copy_params(dest, TEXT, mode="0600")
    first, ctx = run_copy(params, TEXT, diff_mode=True)
    assert first["changed"] is True and ctx.reads == 0 and ctx.events == []
    assert first["diff"] == {"before": {"mode": "0644"}, "after": {"mode": "0600"}}
    assert mode_of(dest) == 0o600
    second, _ = run_copy(params, TEXT)
    assert second["changed"] is False


def test_different_content_replaces_and_keeps_the_old_mode(tmp_path):
    dest = tmp_path / "f"
    dest.write_bytes(b"old\n")
    os.chmod(dest, 0o640)
    result, ctx = run_copy(copy_params(dest, TEXT), TEXT)
    assert result["changed"] is True and len(ctx.content_requests) == 1
    assert dest.read_bytes() == TEXT and mode_of(dest) == 0o640
    assert temp_files(tmp_path) == []


def test_backup(tmp_path):
    dest = tmp_path / "f"
    dest.write_bytes(b"old\n")
    params = copy_params(dest, TEXT, backup=True)
    first, _ = run_copy(params, TEXT)
    backup = first["backup_file"]
    assert backup.startswith(str(dest) + ".") and backup.endswith("~")
    with open(backup, "rb") as handle:
        assert handle.read() == b"old\n"
    second, _ = run_copy(params, TEXT)
    assert second["changed"] is False and "backup_file" not in second


@pytest.mark.parametrize("existing", [None, b"old\n", TEXT])
def test_check_mode_changes_nothing_and_asks_for_nothing(tmp_path, existing):
    dest = tmp_path / "f"
    if existing is not None:
        dest.write_bytes(existing)
        os.chmod(dest, 0o644)
    before = snapshot(tmp_path)
    result, ctx = run_copy(copy_params(dest, TEXT, mode="0600"), TEXT, check_mode=True)
    assert result["changed"] is True and result["failed"] is False
    assert ctx.events == [] and ctx.reads == 0
    assert snapshot(tmp_path) == before


def test_check_mode_when_nothing_would_change(tmp_path):
    dest = tmp_path / "f"
    run_copy(copy_params(dest, TEXT), TEXT)
    result, ctx = run_copy(copy_params(dest, TEXT), TEXT, check_mode=True)
    assert result["changed"] is False and ctx.reads == 0


# (old content or None, new content, expected diff keys/values)
DIFFS = [
    (None, TEXT, {"before": "", "after": TEXT.decode()}),
    (b"old\n", TEXT, {"before": "old\n", "after": TEXT.decode()}),
    (b"old\n", b"\0\1binary", {"before": "old\n", "src_binary": 1}),
    (b"\0old", TEXT, {"dst_binary": 1, "after": TEXT.decode()}),
    (b"x" * (70 * 1024), TEXT, {"dst_larger": 64 * 1024, "after": TEXT.decode()}),
    (b"old\n", b"y" * (70 * 1024), {"before": "old\n", "src_larger": 64 * 1024}),
    ("é\n".encode("latin-1"), "é\n".encode(), {"dst_binary": 1, "after": "é\n"}),
]


@pytest.mark.parametrize("old, new, expected", DIFFS)
def test_content_diff(tmp_path, old, new, expected):
    dest = tmp_path / "f"
    if old is not None:
        dest.write_bytes(old)
    result, _ = run_copy(copy_params(dest, new), new, diff_mode=True)
    diff = result["diff"]
    assert diff["before_header"] == diff["after_header"] == str(dest)
    for key, value in expected.items():
        assert diff[key] == value, key
    assert isinstance(diff["before"], str) and isinstance(diff["after"], str)
    assert len(diff["before"]) < 1000 or "before" in expected


def test_check_mode_diff_has_no_new_content(tmp_path):
    dest = tmp_path / "f"
    dest.write_bytes(b"old\n")
    result, ctx = run_copy(copy_params(dest, TEXT), TEXT, check_mode=True, diff_mode=True)
    assert ctx.reads == 0
    assert result["diff"]["before"] == "old\n"
    assert "not transferred in check mode" in result["diff"]["after"]


def test_content_and_mode_diff_together(tmp_path):
    dest = tmp_path / "f"
    dest.write_bytes(b"old\n")
    os.chmod(dest, 0o644)
    result, _ = run_copy(copy_params(dest, TEXT, mode="0600"), TEXT, diff_mode=True)
    content, attrs = result["diff"]
    assert content["after"] == TEXT.decode()
    assert attrs == {"before": {"mode": "0644"}, "after": {"mode": "0600"}}


def test_inline_content_for_direct_use(tmp_path):
    dest = tmp_path / "f"
    params = {"dest": str(dest), "content": "hello\n"}
    first, ctx = call("copy", params)
    assert first["changed"] is True and ctx.events == [] and dest.read_text() == "hello\n"
    second, _ = call("copy", params)
    assert second["changed"] is False


def test_inline_structured_content_becomes_json(tmp_path):
    dest = tmp_path / "f.json"
    call("copy", {"dest": str(dest), "content": {"a": [1, 2]}})
    assert json.loads(dest.read_text()) == {"a": [1, 2]}


@pytest.mark.parametrize("dest_suffix", ["", "/"])
def test_dest_directory_takes_the_basename(tmp_path, dest_suffix):
    (tmp_path / "dir").mkdir()
    params = copy_params(str(tmp_path / "dir") + dest_suffix, TEXT, _basename="app.conf")
    first, _ = run_copy(params, TEXT)
    assert first["dest"] == str(tmp_path / "dir" / "app.conf")
    assert (tmp_path / "dir" / "app.conf").read_bytes() == TEXT
    second, _ = run_copy(params, TEXT)
    assert second["changed"] is False


def test_dest_with_slash_creates_directories(tmp_path):
    params = copy_params(f"{tmp_path}/a/b/", TEXT, _basename="f", directory_mode="0750")
    checked, ctx = run_copy(params, TEXT, check_mode=True)
    assert checked["changed"] is True and not (tmp_path / "a").exists() and ctx.reads == 0
    first, _ = run_copy(params, TEXT)
    assert (tmp_path / "a" / "b" / "f").read_bytes() == TEXT
    assert mode_of(tmp_path / "a") == 0o750 == mode_of(tmp_path / "a" / "b")
    second, _ = run_copy(params, TEXT)
    assert first["changed"] is True and second["changed"] is False


def test_force_no_leaves_an_existing_file_alone(tmp_path):
    dest = tmp_path / "f"
    dest.write_bytes(b"old\n")
    result, ctx = run_copy(copy_params(dest, TEXT, force=False), TEXT)
    assert result["changed"] is False and result["msg"] == "file already exists"
    assert ctx.reads == 0 and dest.read_bytes() == b"old\n"
    new = tmp_path / "g"
    params = copy_params(new, TEXT, force="no")
    first, _ = run_copy(params, TEXT)
    second, _ = run_copy(params, TEXT)
    assert first["changed"] is True and second["changed"] is False


@pytest.mark.parametrize("follow", [True, False])
def test_follow(tmp_path, follow):
    target = tmp_path / "target"
    target.write_bytes(b"old\n")
    link = tmp_path / "link"
    link.symlink_to("target")
    params = copy_params(link, TEXT, follow=follow)
    first, _ = run_copy(params, TEXT)
    second, _ = run_copy(params, TEXT)
    assert first["changed"] is True and second["changed"] is False
    assert link.is_symlink() is follow
    assert target.read_bytes() == (TEXT if follow else b"old\n")
    assert link.read_bytes() == TEXT


def test_validate(tmp_path):
    dest = tmp_path / "f"
    check = (f"{sys.executable} -c \"import sys; "
             "sys.exit(0 if open(sys.argv[1]).read().startswith('line') else 1)\" %s")
    result, _ = run_copy(copy_params(dest, TEXT, validate=check), TEXT)
    assert result["changed"] is True and dest.read_bytes() == TEXT
    bad = b"nope\n"
    failed, _ = run_copy(copy_params(dest, bad, validate=check), bad)
    assert failed["failed"] is True and failed["msg"].startswith(f"failed to validate {dest}")
    assert dest.read_bytes() == TEXT and temp_files(tmp_path) == []


def _setup_errors(t):
    (t / "f").write_bytes(b"old\n")
    (t / "d").mkdir()
    (t / "fifo").parent.mkdir(exist_ok=True)
    os.mkfifo(t / "fifo")


# (params(tmp), content sent, message fragment formatted with t=tmp)
ERRORS = [
    (lambda t: copy_params(t / "nodir" / "f", TEXT), TEXT,
     "Destination directory {t}/nodir does not exist"),
    (lambda t: copy_params(t / "f", TEXT), b"line one\nline TWO\n",
     "checksum mismatch for {t}/f"),
    (lambda t: copy_params(t / "f", TEXT), TEXT[:-1], "content for {t}/f is 17 bytes, expected 18"),
    (lambda t: copy_params(t / "f", TEXT), TEXT + b"more",
     "content for {t}/f is larger than the announced 18 bytes"),
    (lambda t: copy_params(t / "f", TEXT, mode="rw-r--r--"), TEXT, "mode 'rw-r--r--' for {t}/f"),
    (lambda t: copy_params(t / "f", TEXT, owner="fleet-no-such-user"), TEXT,
     "chown failed on {t}/f: failed to look up user fleet-no-such-user"),
    (lambda t: copy_params(t / "f", TEXT, group="fleet-no-such-group"), TEXT,
     "chgrp failed on {t}/f: failed to look up group fleet-no-such-group"),
    (lambda t: copy_params(t / "d", TEXT), TEXT, "dest {t}/d is a directory"),
    (lambda t: copy_params(t / "d", TEXT, _basename="../x"), TEXT, "'../x' for {t}/d"),
    (lambda t: copy_params(t / "fifo", TEXT), TEXT, "dest {t}/fifo exists and is not a regular"),
    (lambda t: copy_params(t / "f", TEXT, checksum="0" * 40), TEXT,
     "Copied file does not match the expected checksum for {t}/f"),
    (lambda t: copy_params(t / "f", TEXT, validate="true"), TEXT, "validate must contain %s"),
    (lambda t: dict(copy_params(t / "f", TEXT), _digests={"sha1": "abc"}), TEXT,
     "_digests for {t}/f: must map blake2b, sha1 and sha256"),
    (lambda t: {"dest": str(t / "f")}, TEXT, "copy to {t}/f needs content"),
    (lambda t: {"content": "x"}, TEXT, "missing required parameter 'dest'"),
]


@pytest.mark.parametrize("params, sent, message", ERRORS)
def test_errors_leave_dest_and_no_temp_file(tmp_path, params, sent, message):
    _setup_errors(tmp_path)
    before = snapshot(tmp_path, dir_times=False)
    result, _ = run_copy(params(tmp_path), sent)
    assert result["failed"] is True and result["changed"] is False
    assert message.format(t=tmp_path) in result["msg"]
    assert "\n" not in result["msg"]
    assert snapshot(tmp_path, dir_times=False) == before
    assert temp_files(tmp_path) == []


@pytest.mark.parametrize("extra", [{"mode": "0999"}, {"validate": "true"},
                                   {"directory_mode": "x"}])
def test_bad_options_fail_before_asking_for_content(tmp_path, extra):
    result, ctx = run_copy(copy_params(tmp_path / "f", TEXT, **extra), TEXT)
    assert result["failed"] is True and ctx.reads == 0 and ctx.events == []


def test_unknown_user_in_check_mode_warns(tmp_path):
    dest = tmp_path / "f"
    dest.write_bytes(TEXT)
    result, _ = run_copy(copy_params(dest, TEXT, owner="fleet-no-such-user"), TEXT,
                         check_mode=True)
    assert result["changed"] is True and "fleet-no-such-user" in result["warnings"][0]


def test_cancel_while_streaming_removes_the_temp_file(tmp_path):
    dest = tmp_path / "f"
    data = os.urandom(300 * 1024)

    def cancel_on_third_read(ctx):
        if ctx.reads == 3:
            ctx.cancel_event.set()

    ctx = FakeCtx(chunks=chunked(data), on_read=cancel_on_third_read)
    with pytest.raises(serve.Cancelled):
        serve.call_module("copy", copy_params(dest, data), ctx)
    assert os.listdir(tmp_path) == []


@needs_root
def test_owner_and_group(tmp_path):
    dest = tmp_path / "f"
    params = copy_params(dest, TEXT, owner="nobody", group="65534", mode="0640")
    first, _ = run_copy(params, TEXT)
    second, _ = run_copy(params, TEXT)
    st = os.stat(dest)
    assert (st.st_uid, st.st_gid, mode_of(dest)) == (65534, 65534, 0o640)
    assert (first["uid"], first["gid"], first["owner"]) == (65534, 65534, "nobody")
    assert first["changed"] is True and second["changed"] is False


@needs_root
def test_replacing_keeps_the_old_owner(tmp_path):
    dest = tmp_path / "f"
    dest.write_bytes(b"old\n")
    os.chown(dest, 65534, 65534)
    run_copy(copy_params(dest, TEXT), TEXT)
    assert (os.stat(dest).st_uid, os.stat(dest).st_gid) == (65534, 65534)

"""The real bootstrap and payload in a local subprocess (no SSH), and the zipapp itself."""

import hashlib
import io
import os
import shlex
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import agent_payload
from agent_payload import protocol
from fleet.transport import payload as payload_mod
from fleet.transport.payload import (
    BOOTSTRAP,
    HASH_LEN,
    NEED_MARKER,
    SUDO_PROMPT,
    Payload,
    build_zip,
    current_payload,
)

WAIT = 10


@pytest.fixture(scope="module")
def payload():
    return current_payload()


def start(home, digest, argv=None):
    """Start the bootstrap as ssh would, with a bare environment and HOME=home."""
    argv = argv or [sys.executable, "-I", "-S", "-c", BOOTSTRAP, digest]
    return subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=home,
                            env={"HOME": str(home), "PATH": os.environ.get("PATH", "/usr/bin")})


def read_msg(proc):
    frame = protocol.read_frame(proc.stdout.read)
    assert frame is not None, proc.stderr.read().decode()
    kind, req_id, body = frame
    assert kind == protocol.MSG
    return req_id, protocol.decode_msg(body)


def send(proc, frame):
    proc.stdin.write(frame)
    proc.stdin.flush()


def finish(proc):
    """Close stdin and return (exit status, stderr text)."""
    try:
        proc.stdin.close()
    except BrokenPipeError:
        pass
    try:
        err = proc.stderr.read().decode()
        proc.stdout.read()
        return proc.wait(WAIT), err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def upload(proc, payload):
    assert proc.stdout.read(len(NEED_MARKER)) == NEED_MARKER
    send(proc, payload.upload_frame())


def cache_dir(home, payload):
    return Path(home) / ".cache" / "fleet" / ("payload-" + payload.digest)


def test_first_start_uploads_then_serves_facts(tmp_path, payload):
    proc = start(tmp_path, payload.digest)
    try:
        upload(proc, payload)
        req_id, hello = read_msg(proc)
        assert req_id == 0 and hello["ev"] == "hello"
        assert hello["cache"] == "uploaded" and hello["version"] == payload.digest
        assert hello["pid"] == proc.pid
        send(proc, protocol.encode_msg(1, {"op": "call", "module": "facts"}))
        req_id, msg = read_msg(proc)
        assert req_id == 1 and msg["ev"] == "result", msg
        facts = msg["result"]["ansible_facts"]
        assert facts["hostname"] and facts["python_version"].count(".") == 2
        assert facts["fleet_cgroup_mode"] in ("v1", "v2", "hybrid", "none")
        assert facts["fleet_payload"] == {"version": payload.digest, "cache": "uploaded"}
    finally:
        status, err = finish(proc)
    assert status == 0, err
    assert cache_dir(tmp_path, payload).is_dir()
    assert (cache_dir(tmp_path, payload) / "agent_payload" / "serve.py").is_file()
    assert [p.name for p in (tmp_path / ".cache" / "fleet").iterdir()] == [
        "payload-" + payload.digest]  # no temp dir left beside it
    assert oct((tmp_path / ".cache" / "fleet").stat().st_mode & 0o777) == "0o700"


def test_second_start_uses_the_cache(tmp_path, payload):
    first = start(tmp_path, payload.digest)
    try:
        upload(first, payload)
        assert read_msg(first)[1]["cache"] == "uploaded"
    finally:
        assert finish(first)[0] == 0
    second = start(tmp_path, payload.digest)
    try:
        # No NEED marker: the first bytes are already the hello frame.
        req_id, hello = read_msg(second)
        assert (req_id, hello["ev"], hello["cache"]) == (0, "hello", "cached")
        send(second, protocol.encode_msg(7, {"op": "call", "module": "ping"}))
        assert read_msg(second) == (7, {"ev": "result", "result": {
            "changed": False, "failed": False, "ping": "pong"}})
    finally:
        status, err = finish(second)
    assert status == 0, err


def test_module_crash_in_the_real_payload_keeps_it_serving(tmp_path, payload):
    proc = start(tmp_path, payload.digest)
    try:
        upload(proc, payload)
        read_msg(proc)
        send(proc, protocol.encode_msg(2, {"op": "call", "module": "ping", "params": {
            "data": "crash"}}))
        req_id, msg = read_msg(proc)
        assert req_id == 2 and msg["ev"] == "error" and msg["msg"] == "RuntimeError: boom"
        send(proc, protocol.encode_msg(3, {"op": "call", "module": "ping"}))
        assert read_msg(proc)[0] == 3
    finally:
        status, err = finish(proc)
    assert status == 0, err


def test_corrupted_upload_is_refused_and_leaves_no_cache(tmp_path, payload):
    proc = start(tmp_path, payload.digest)
    bad = bytearray(payload.upload_frame())
    bad[-10] ^= 0xFF
    try:
        upload(proc, Payload(bytes(bad[12:]), payload.digest))
        assert proc.stdout.read() == b""
    finally:
        status, err = finish(proc)
    assert status != 0
    assert "hash mismatch" in err
    assert not cache_dir(tmp_path, payload).exists()
    assert not any((tmp_path / ".cache" / "fleet").glob("payload-*"))


def test_upload_cut_short_fails_cleanly(tmp_path, payload):
    proc = start(tmp_path, payload.digest)
    try:
        assert proc.stdout.read(len(NEED_MARKER)) == NEED_MARKER
        send(proc, payload.upload_frame()[:1000])
    finally:
        status, err = finish(proc)
    assert status != 0
    assert "upload cut short" in err
    assert not cache_dir(tmp_path, payload).exists()


def test_command_runs_through_a_shell(tmp_path, payload):
    """Payload.command() survives the remote shell: BOOTSTRAP has quotes and newlines."""
    proc = start(tmp_path, payload.digest, ["sh", "-c", payload.command(sys.executable)])
    try:
        upload(proc, payload)
        assert read_msg(proc)[1]["ev"] == "hello"
    finally:
        status, err = finish(proc)
    assert status == 0, err


def test_build_zip_is_deterministic(payload):
    root = Path(agent_payload.__file__).parent
    assert build_zip(root) == build_zip(root)
    assert payload.digest == hashlib.sha256(payload.data).hexdigest()[:HASH_LEN]


def test_build_zip_ignores_mtimes_and_bytecode(tmp_path):
    root = Path(agent_payload.__file__).parent
    copy = tmp_path / "agent_payload"
    shutil.copytree(root, copy, ignore=shutil.ignore_patterns("__pycache__"))
    for path in copy.rglob("*.py"):
        os.utime(path, (1_000_000_000, 1_000_000_000))
    (copy / "__pycache__").mkdir(exist_ok=True)
    (copy / "__pycache__" / "stale.py").write_text("junk = 1\n")
    assert build_zip(copy) == build_zip(root)


def test_zip_contents(payload):
    archive = zipfile.ZipFile(io.BytesIO(payload.data))
    names = archive.namelist()
    assert names[0] == "__main__.py"
    assert "agent_payload/serve.py" in names
    assert "agent_payload/protocol.py" in names
    assert "agent_payload/modules/ping.py" in names
    assert not any("__pycache__" in name or name.endswith(".pyc") for name in names)
    assert all(info.date_time == (1980, 1, 1, 0, 0, 0) for info in archive.infolist())
    root = Path(agent_payload.__file__).parent
    assert archive.read("agent_payload/serve.py") == (root / "serve.py").read_bytes()
    assert b"from agent_payload.serve import main" in archive.read("__main__.py")


def test_upload_frame_is_a_12_digit_length_then_the_zip(payload):
    frame = payload.upload_frame()
    assert frame[:12] == b"%012d" % len(payload.data)
    assert frame[12:] == payload.data


def test_current_payload_is_built_once():
    assert current_payload() is current_payload()


DIGEST = "0123456789abcdef"


@pytest.mark.parametrize("kwargs, prefix", [
    ({}, []),
    ({"become": True}, ["sudo", "-H", "-u", "root", "-n", "--"]),
    ({"become": True, "become_user": "app"}, ["sudo", "-H", "-u", "app", "-n", "--"]),
    ({"become": True, "become_password": True},
     ["sudo", "-H", "-u", "root", "-S", "-p", SUDO_PROMPT, "--"]),
    ({"become": False, "become_password": True}, []),
])
def test_command_line(kwargs, prefix):
    p = Payload(b"zip", DIGEST)
    line = p.command("/usr/bin/python3", **kwargs)
    assert shlex.split(line) == prefix + ["/usr/bin/python3", "-I", "-S", "-c", BOOTSTRAP,
                                          DIGEST]


def test_command_quotes_an_odd_interpreter_path():
    line = Payload(b"", DIGEST).command("/opt/my python/bin/python3; rm -rf /")
    assert shlex.split(line)[0] == "/opt/my python/bin/python3; rm -rf /"


def test_bootstrap_is_small_and_needs_no_site():
    assert len(BOOTSTRAP) < 1500
    compile(BOOTSTRAP, "<bootstrap>", "exec")
    assert "b'FLEET-NEED\\n'" in BOOTSTRAP
    assert payload_mod.NEED_MARKER == b"FLEET-NEED\n"


def test_threads_asking_for_the_payload_at_once_build_it_once(monkeypatch):
    import threading
    import time
    built = []
    real = payload_mod.build_zip

    def slow_build(root):
        built.append(root)
        time.sleep(0.05)  # long enough for every thread to ask meanwhile
        return real(root)

    monkeypatch.setattr(payload_mod, "build_zip", slow_build)
    payload_mod._build_current.cache_clear()
    try:
        got = []
        threads = [threading.Thread(target=lambda: got.append(payload_mod.current_payload()))
                   for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        payload_mod._build_current.cache_clear()  # later tests build the real one again
    assert len(built) == 1 and len({p.digest for p in got}) == 1 and len(got) == 8

"""The command, shell, file and copy modules on lab hosts, through a real Session.

copy is driven the way the controller drives it: answer the ``need_content`` progress
event by streaming the bytes on the request, then EOF. Every path on the hosts is a
unique /tmp/fleet-test-... directory, removed at the end.
"""

import hashlib
import os
import time
import uuid

import pytest

from agent_payload import digests
from fleet.transport.session import Session
from tests.integration.conftest import LAB_MARKS
from tests.integration.helpers import lab_targets, ssh_run

pytestmark = LAB_MARKS

CHUNK = 256 * 1024
WAIT = 60  # seconds; only reached when something is broken


@pytest.fixture(scope="module")
def sessions(lab, lab_inventory):
    opened = [Session.open(target) for target in lab_targets(lab_inventory)]
    yield opened
    for session in opened:
        session.close()


@pytest.fixture
def remote_dir(lab, sessions):
    """A fresh directory name under /tmp on every lab host, removed afterwards."""
    config, state = lab
    path = f"/tmp/fleet-test-modules-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    yield path
    for session in sessions:
        result = session.call("file", {"path": path, "state": "absent"}, timeout=WAIT)
        if result.get("failed"):
            ssh_run(config, session.target.host, f"rm -rf {path}", check=False)


def copy(session, params, data, check=False, diff=False):
    """Run copy, streaming ``data`` when the host asks; return (result, requests seen)."""
    request = session.start("copy", params, check=check, diff=diff)
    asked = []
    for kind, value in request.events(timeout=WAIT):
        if kind == "progress" and value.get("need_content"):
            asked.append(value)
            for start in range(0, len(data), CHUNK):
                request.send_data(data[start:start + CHUNK])
            request.send_eof()
    return request.result, asked


def copy_params(dest, data, **extra):
    return dict(dest=dest, _digests=digests.of_bytes(data), _size=len(data), **extra)


def remote(session, *argv):
    result = session.call("command", {"argv": list(argv)}, timeout=WAIT)
    assert result["rc"] == 0, result
    return result["stdout"]


def test_copy_streams_a_large_file_once(sessions, remote_dir):
    session = sessions[0]
    data = os.urandom(1024 * 1024)
    session.call("file", {"path": remote_dir, "state": "directory"}, timeout=WAIT)
    dest = f"{remote_dir}/random.bin"
    params = copy_params(dest, data, mode="0640")

    first, asked = copy(session, params, data)
    assert first["changed"] is True and first["failed"] is False, first
    assert [a["size"] for a in asked] == [len(data)]
    assert first["sha256"] == hashlib.sha256(data).hexdigest()
    assert first["checksum"] == hashlib.sha1(data).hexdigest()
    assert remote(session, "sha256sum", dest).split()[0] == first["sha256"]
    assert remote(session, "stat", "-c", "%a %s", dest) == f"640 {len(data)}"

    second, asked = copy(session, params, data)
    assert second["changed"] is False and asked == []

    other = os.urandom(1024)
    checked, asked = copy(session, copy_params(dest, other), other, check=True, diff=True)
    assert checked["changed"] is True and asked == []
    assert checked["diff"]["dst_larger"] and "not transferred" in checked["diff"]["after"]
    assert remote(session, "sha256sum", dest).split()[0] == first["sha256"]


def test_copy_refuses_corrupt_content(sessions, remote_dir):
    session = sessions[0]
    session.call("file", {"path": remote_dir, "state": "directory"}, timeout=WAIT)
    dest = f"{remote_dir}/conf"
    good = b"key = value\n"
    copy(session, copy_params(dest, good), good)
    announced, evil = b"key = other\n", b"key = evil!\n"
    result, asked = copy(session, copy_params(dest, announced), evil)
    assert result["failed"] is True and len(asked) == 1
    assert result["msg"].startswith(f"checksum mismatch for {dest}")
    assert remote(session, "cat", dest) == "key = value"
    assert remote(session, "ls", "-A", remote_dir) == "conf"


def test_file_modes_and_links(sessions, remote_dir):
    session = sessions[0]
    nested = f"{remote_dir}/a/b"
    tasks = [
        {"path": nested, "state": "directory", "mode": "0750"},
        {"path": f"{nested}/f", "state": "touch", "mode": "u=rw,g=r,o=",
         "modification_time": "preserve", "access_time": "preserve"},
        {"path": f"{remote_dir}/link", "state": "link", "src": "a/b/f"},
        {"path": remote_dir, "state": "directory", "recurse": True, "mode": "g+w"},
    ]
    for params in tasks:
        first = session.call("file", params, timeout=WAIT)
        second = session.call("file", params, timeout=WAIT)
        assert first["changed"] is True and first["failed"] is False, first
        assert second["changed"] is False, (params, second)
    assert remote(session, "stat", "-c", "%a", f"{remote_dir}/a", nested, f"{nested}/f") \
        == "770\n770\n660"
    assert remote(session, "readlink", f"{remote_dir}/link") == "a/b/f"


def test_command_and_shell_on_every_host(sessions, remote_dir):
    for session in sessions:
        made = f"{remote_dir}-{session.target.name}"
        params = {"_raw_params": f"mkdir {made}", "creates": made}
        first = session.call("command", params, timeout=WAIT)
        second = session.call("command", params, timeout=WAIT)
        assert first["changed"] is True and first["rc"] == 0, first
        assert second["changed"] is False and second["stdout"] == f"skipped, since {made} exists"
        shell = session.call("shell", {"cmd": "echo $((6 * 7)) | tr 4 X; exit 5"},
                             timeout=WAIT)
        assert shell["failed"] is True and shell["msg"] == "non-zero return code"
        assert shell["rc"] == 5 and shell["stdout"] == "X2"
        session.call("file", {"path": made, "state": "absent"}, timeout=WAIT)


def test_cancelled_command_stops(sessions):
    session = sessions[0]
    started = time.monotonic()
    request = session.start("command", {"argv": ["sleep", "60"]})
    request.cancel()
    result = request.wait(timeout=WAIT)
    assert result == {"failed": True, "changed": False, "msg": "cancelled"}
    assert time.monotonic() - started < 10

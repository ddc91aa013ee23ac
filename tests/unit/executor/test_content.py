"""Content: what the controller ships for copy and template, hashed once per run."""

import hashlib
import os

from agent_payload import digests
from fleet.executor import content as content_module
from fleet.executor.content import Content


def test_a_small_file_is_read_once_and_sent_from_memory(tmp_path):
    path = tmp_path / "small.bin"
    data = os.urandom(300_000)
    path.write_bytes(data)
    content = Content(path=str(path))
    path.write_bytes(b"changed after hashing")  # what is sent is what was hashed
    assert b"".join(bytes(c) for c in content.chunks()) == data
    assert content.copy_params() == {"_digests": digests.of_bytes(data), "_size": len(data),
                                     "_basename": "small.bin"}


def test_a_large_file_is_streamed_from_disk_in_chunks(tmp_path, monkeypatch):
    monkeypatch.setattr(content_module, "KEEP_LIMIT", 100_000)
    monkeypatch.setattr(content_module, "CHUNK", 64 * 1024)
    path = tmp_path / "large.bin"
    data = os.urandom(300_000)
    path.write_bytes(data)
    content = Content(path=str(path))
    assert content.data is None
    chunks = list(content.chunks())
    assert max(len(c) for c in chunks) == 64 * 1024
    assert b"".join(chunks) == data
    assert content.digests["sha256"] == hashlib.sha256(data).hexdigest()


def test_content_in_memory_names_the_basename_it_is_given():
    content = Content(data=b"rendered")
    assert content.copy_params(basename="app.conf")["_basename"] == "app.conf"
    assert "_basename" not in content.copy_params()

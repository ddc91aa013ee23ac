"""copy's digests: the three the controller sends, and a host check that needs no OpenSSL."""

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent_payload import digests

ROOT = Path(__file__).resolve().parents[2]


def test_of_bytes_matches_hashlib():
    data = os.urandom(3000)
    assert digests.of_bytes(data) == {
        "blake2b": hashlib.blake2b(data, digest_size=32).hexdigest(),
        "sha1": hashlib.sha1(data).hexdigest(),
        "sha256": hashlib.sha256(data).hexdigest()}


def test_chunks_hash_like_the_whole():
    data = os.urandom(5000)
    whole = digests.Digests()
    whole.update(data)
    parts = digests.Digests()
    for start in range(0, len(data), 777):
        parts.update(data[start:start + 777])
    assert parts.hexdigests() == whole.hexdigests()
    compare = digests.comparer()
    compare.update(data)
    assert compare.hexdigest() == whole.hexdigests()["blake2b"]


@pytest.mark.parametrize("sent, problem", [
    (None, "must map blake2b, sha1 and sha256"),
    ({"blake2b": "0" * 64, "sha1": "0" * 40}, "must map blake2b, sha1 and sha256"),
    ({"blake2b": "0" * 64, "sha1": "0" * 40, "sha256": "0" * 63}, "sha256 is not"),
    ({"blake2b": "G" * 64, "sha1": "0" * 40, "sha256": "0" * 64}, "blake2b is not"),
    ({"blake2b": "0" * 64, "sha1": 1, "sha256": "0" * 64}, "sha1 is not"),
])
def test_malformed_digests_are_named(sent, problem):
    assert problem in digests.problem(sent)


def test_well_formed_digests_pass():
    assert digests.problem(digests.of_bytes(b"x")) is None


def test_a_copy_that_changes_nothing_never_starts_openssl(tmp_path):
    # hashlib's import (OpenSSL's start-up) cost a host more than the hashing itself.
    data = os.urandom(70000)
    dest = tmp_path / "same.bin"
    dest.write_bytes(data)
    script = f"""
import sys
sys.path.insert(0, {str(ROOT)!r})
from agent_payload import serve
class Ctx:
    check_mode = diff_mode = False
    def check_cancelled(self): pass
    def progress(self, **fields): raise AssertionError(fields)
params = {{"dest": {str(dest)!r}, "_digests": {digests.of_bytes(data)!r}, "_size": {len(data)}}}
result = serve.call_module("copy", params, Ctx())
assert result["changed"] is False and not result["failed"], result
print("_hashlib" in sys.modules, result["checksum"])
"""
    out = subprocess.run([sys.executable, "-I", "-S", "-c", script], capture_output=True,
                         text=True, check=True).stdout.split()
    assert out == ["False", hashlib.sha1(data).hexdigest()]

"""Digests without OpenSSL's start-up: copy's content digests, and short SHA-256 names.

For copy, one digest to compare on the host and two to report. The controller hashes a
file it ships once, in one pass, into all three: ``blake2b`` (BLAKE2b-256), which the
host compares with ``dest``; ``sha1`` (Ansible's ``checksum``) and ``sha256``, which the
host only reports. The host compares with BLAKE2b because CPython builds it in:
hashlib's import starts OpenSSL, which costs more CPU than hashing a MiB, and a copy that
changes nothing needs nothing else from it. BLAKE2b alone is also faster than the SHA-1
plus SHA-256 a host used to compute.
"""

try:
    from _blake2 import blake2b as _blake2b
except ImportError:  # a CPython built without the module: hashlib has it all the same
    from hashlib import blake2b as _blake2b

NAMES = ("blake2b", "sha1", "sha256")
_LENGTHS = {"blake2b": 64, "sha1": 40, "sha256": 64}


def comparer():
    """A fresh BLAKE2b-256 hash: what the host computes over ``dest`` or the stream."""
    return _blake2b(digest_size=32)


class Digests:
    """All three digests of content fed in chunks."""

    def __init__(self):
        import hashlib  # the controller's side, or inline content on a host

        self._hashes = {"blake2b": comparer(), "sha1": hashlib.sha1(),
                        "sha256": hashlib.sha256()}

    def update(self, chunk):
        for value in self._hashes.values():
            value.update(chunk)

    def hexdigests(self):
        """{"blake2b": hex, "sha1": hex, "sha256": hex}."""
        return {name: value.hexdigest() for name, value in self._hashes.items()}


def of_bytes(data):
    """The three digests of ``data``."""
    digests = Digests()
    digests.update(data)
    return digests.hexdigests()


def problem(digests):
    """Why ``digests`` (as the controller sends them) is malformed, or None."""
    if not isinstance(digests, dict) or set(digests) != set(NAMES):
        return "must map blake2b, sha1 and sha256 to hex digests"
    for name, value in digests.items():
        if (not isinstance(value, str) or len(value) != _LENGTHS[name]
                or value.strip("0123456789abcdef")):
            return f"{name} is not a lowercase hex {name} digest"
    return None


def sha256_hex(data):
    """The SHA-256 hex digest of small ``data`` (names, ids) from CPython's built-in
    implementation, which, unlike hashlib's, needs no OpenSSL start-up."""
    try:
        from _sha256 import sha256  # CPython up to 3.11
    except ImportError:
        try:
            from _sha2 import sha256  # 3.12 on
        except ImportError:
            from hashlib import sha256
    return sha256(data).hexdigest()

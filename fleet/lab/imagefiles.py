"""Small file and JSON helpers shared by the lab's image builders (seed_images.py,
demo_images.py): canonical JSON and digests for configs and manifests, and the state
files they keep."""

import hashlib
import json
import os


def canonical_json(obj) -> bytes:
    """JSON with sorted keys and no spaces: the same bytes (and digest) every time."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode("utf-8")


def digest_of(data: bytes) -> str:
    """The sha256 digest of ``data`` as OCI writes it."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def write_bytes(path: str, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)


def read_json(path: str, default):
    """A JSON file's value, or ``default`` when it is missing or unreadable."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return default


def write_json(path: str, data) -> None:
    """Write JSON readably, whole (a temp file and a rename)."""
    tmp = path + ".tmp"
    write_bytes(tmp, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode())
    os.replace(tmp, path)

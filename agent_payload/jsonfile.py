"""JSON files of the payload's state (records, networks, ports): read with a default,
written whole through a temporary file and a rename, so a reader never sees half a file.

Built on jsonwire: json.dump streams through json's pure-Python encoder, several times
slower than the C one behind jsonwire.dumps, and that was milliseconds per container.
"""

import os

from agent_payload import jsonwire


def read_json(path, default=None):
    """A JSON file's value, or ``default`` when it is missing or unreadable."""
    try:
        with open(path) as handle:
            return jsonwire.loads(handle.read())
    except (OSError, ValueError):
        return default


def write_json(path, value):
    """Write JSON atomically (temp file and rename)."""
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as handle:
        handle.write(jsonwire.dumps(value))
    os.rename(tmp, path)

"""File content the controller ships to hosts (copy's src or content, template output):
hashed once, streamed in chunks on request, never held whole for a file on disk."""

import os

from agent_payload import digests

CHUNK = 1024 * 1024


class Content:
    """Bytes from a controller file or from memory, with their size and digests."""

    def __init__(self, path=None, data=None):
        self.path = path
        self.data = data
        hashes = digests.Digests()
        if path is not None:
            size = 0
            with open(path, "rb") as handle:
                for chunk in iter(lambda: handle.read(CHUNK), b""):
                    hashes.update(chunk)
                    size += len(chunk)
            self.size = size
        else:
            hashes.update(data)
            self.size = len(data)
        self.digests = hashes.hexdigests()

    @property
    def basename(self):
        return os.path.basename(self.path) if self.path else None

    def copy_params(self, basename=None):
        """What the host's copy module needs to compare with and ask for this content."""
        params = {"_digests": self.digests, "_size": self.size}
        basename = basename or self.basename
        if basename:
            params["_basename"] = basename
        return params

    def chunks(self):
        """The content in chunks of at most CHUNK bytes."""
        if self.path is None:
            for start in range(0, len(self.data), CHUNK):
                yield self.data[start:start + CHUNK]
            return
        with open(self.path, "rb") as handle:
            yield from iter(lambda: handle.read(CHUNK), b"")

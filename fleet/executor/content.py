"""File content the controller ships to hosts (copy's src or content, template output):
hashed once, streamed in chunks on request. A file on disk is held in memory only when
it is small (then it is read once for every host); a larger one is read again for each
host that asks for it, never held whole."""

import os

from agent_payload import digests

CHUNK = 1024 * 1024
KEEP_LIMIT = 4 * 1024 * 1024  # bytes: files up to this size are read once per run


class Content:
    """Bytes from a controller file or from memory, with their size and digests."""

    def __init__(self, path=None, data=None):
        self.path = path
        self.data = data
        hashes = digests.Digests()
        if path is not None:
            size, kept = 0, []
            with open(path, "rb") as handle:
                for chunk in iter(lambda: handle.read(CHUNK), b""):
                    hashes.update(chunk)
                    size += len(chunk)
                    if size <= KEEP_LIMIT:
                        kept.append(chunk)
            self.size = size
            if size <= KEEP_LIMIT:
                self.data = b"".join(kept)
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
        if self.data is not None:
            view = memoryview(self.data)
            for start in range(0, len(view), CHUNK):
                yield view[start:start + CHUNK]
            return
        with open(self.path, "rb") as handle:
            yield from iter(lambda: handle.read(CHUNK), b"")

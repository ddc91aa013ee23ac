"""A fake request context for running payload modules in-process, and tree snapshots."""

import hashlib
import os
import threading

import pytest

from agent_payload import digests, serve


class FakeCtx:
    """What serve.Context offers a module: check/diff flags, recorded progress events,
    an input stream fed from a list of chunks, and a cancel flag."""

    def __init__(self, check_mode=False, diff_mode=False, chunks=(), on_read=None):
        self.check_mode = check_mode
        self.diff_mode = diff_mode
        self.events = []
        self.reads = 0
        self._chunks = list(chunks)
        self._on_read = on_read
        self.cancel_event = threading.Event()

    def progress(self, **fields):
        self.events.append(fields)

    def read_data(self, timeout=None):
        self.reads += 1
        if self._on_read is not None:
            self._on_read(self)
        if self.cancel_event.is_set():
            return b""
        return self._chunks.pop(0) if self._chunks else b""

    def cancelled(self):
        return self.cancel_event.is_set()

    def check_cancelled(self):
        if self.cancel_event.is_set():
            raise serve.Cancelled()

    @property
    def content_requests(self):
        return [event for event in self.events if event.get("need_content")]


def call(name, params, **ctx_args):
    """Run module ``name`` through serve.call_module (so its spec is checked); return
    (result, ctx)."""
    ctx = FakeCtx(**ctx_args)
    return serve.call_module(name, params, ctx), ctx


def chunked(data, size=64 * 1024):
    return [data[i:i + size] for i in range(0, len(data), size)]


def copy_params(dest, data, **extra):
    """copy's params as the controller sends them for ``data``."""
    params = {"dest": str(dest), "_digests": digests.of_bytes(data), "_size": len(data)}
    params.update(extra)
    return params


def snapshot(root, dir_times=True):
    """Everything under ``root``: path -> (mode, uid, gid, size, link target, content hash,
    mtime), to prove check mode left the disk alone. ``dir_times=False`` ignores the
    times of directories (a temp file created and removed changes them)."""
    found = {}
    for base, dirs, files in os.walk(root):
        for name in [""] + dirs + files:
            path = os.path.join(base, name) if name else base
            st = os.lstat(path)
            link = os.readlink(path) if os.path.islink(path) else None
            digest = None
            if os.path.isfile(path) and not link:
                with open(path, "rb") as handle:
                    digest = hashlib.sha256(handle.read()).hexdigest()
            mtime = st.st_mtime_ns if dir_times or not os.path.isdir(path) else None
            found[os.path.relpath(path, root)] = (st.st_mode, st.st_uid, st.st_gid,
                                                  st.st_size, link, digest, mtime)
    return found


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")

"""A small in-process OCI registry for unit tests: manifests and blobs over plain HTTP.

It serves ``/v2/<repo>/manifests/<tag or digest>`` and ``/v2/<repo>/blobs/<digest>``
(with ``Range: bytes=N-``), records every request's path and Range header, and can cut
a blob's body short once (a dropped connection) or ignore Range.
"""

import gzip
import hashlib
import http.server
import io
import json
import random
import tarfile
import threading

MT_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MT_CONFIG = "application/vnd.docker.container.image.v1+json"
MT_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"


def sha(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def layer_of(files):
    """(gzip blob, diff id) of a layer holding ``files`` {name: bytes}."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    tar_bytes = raw.getvalue()
    return gzip.compress(tar_bytes, mtime=0), sha(tar_bytes)


def noise(size, seed=0):
    """``size`` incompressible bytes, the same for the same seed."""
    return random.Random(seed).randbytes(size)


class FakeRegistry:
    """A registry on 127.0.0.1 (use as a context manager); ``address`` is host:port."""

    def __init__(self):
        self.manifests = {}  # (repo, tag or digest) -> manifest bytes
        self.blobs = {}  # digest -> bytes
        self.requests = []  # (path, Range header or None)
        self.cut = {}  # digest -> bytes to send of its next body before hanging up
        self.ignore_range = False
        self._server = None

    def __enter__(self):
        registry = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                registry._serve(self)

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, args=(0.02,), daemon=True).start()
        return self

    def __exit__(self, *exc):
        self._server.shutdown()
        self._server.server_close()

    @property
    def address(self):
        return f"127.0.0.1:{self._server.server_address[1]}"

    def blob_requests(self, digest):
        """The Range header (or None) of each request for blob ``digest``, in order."""
        return [r for path, r in self.requests if path.endswith("/blobs/" + digest)]

    def add_image(self, repo, tag, layers):
        """Publish an image of ``layers`` [{name: bytes}] as ``repo:tag``; return a dict of
        its name, manifest digest, id, layer digests and layer blobs."""
        blobs, diff_ids = [], []
        for files in layers:
            blob, diff_id = layer_of(files)
            blobs.append(blob)
            diff_ids.append(diff_id)
        config = json.dumps({"architecture": "amd64", "os": "linux",
                             "config": {"Cmd": ["sh"]},
                             "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": MT_MANIFEST,
            "config": {"mediaType": MT_CONFIG, "digest": sha(config), "size": len(config)},
            "layers": [{"mediaType": MT_LAYER, "digest": sha(b), "size": len(b)}
                       for b in blobs]}).encode()
        self.blobs[sha(config)] = config
        for blob in blobs:
            self.blobs[sha(blob)] = blob
        self.manifests[(repo, tag)] = manifest
        self.manifests[(repo, sha(manifest))] = manifest
        return {"name": f"{self.address}/{repo}:{tag}", "manifest_digest": sha(manifest),
                "id": sha(config), "layers": [sha(b) for b in blobs], "blobs": blobs}

    def _serve(self, handler):
        path = handler.path
        ranged = handler.headers.get("Range")
        self.requests.append((path, ranged))
        repo, kind, name = "", "", ""
        if path.startswith("/v2/"):
            head, _, name = path[4:].rpartition("/")
            repo, _, kind = head.rpartition("/")
        if kind == "manifests" and (repo, name) in self.manifests:
            body = self.manifests[(repo, name)]
            handler.send_response(200)
            handler.send_header("Content-Type", MT_MANIFEST)
            handler.send_header("Docker-Content-Digest", sha(body))
            handler.send_header("Content-Length", str(len(body)))
            handler.end_headers()
            handler.wfile.write(body)
            return
        if kind != "blobs" or name not in self.blobs:
            handler.send_response(404)
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        blob = self.blobs[name]
        start = 0
        if ranged and not self.ignore_range:
            start = int(ranged.split("=")[1].rstrip("-"))
            handler.send_response(206)
            handler.send_header("Content-Range", f"bytes {start}-{len(blob) - 1}/{len(blob)}")
        else:
            handler.send_response(200)
        handler.send_header("Content-Length", str(len(blob) - start))
        handler.end_headers()
        body = blob[start:]
        if name in self.cut:
            body = body[:self.cut.pop(name)]  # then hang up, the rest untold
        handler.wfile.write(body)
        handler.wfile.flush()
        handler.close_connection = True

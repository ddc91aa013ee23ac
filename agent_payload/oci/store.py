"""The host's content store: verified blobs, unpacked layers and image records.

Layout under the root (default /var/lib/fleet, mode 0700)::

    blobs/sha256/<hex>               verified blobs (manifests, configs, compressed layers)
    layers/sha256/<chainid-hex>/     unpacked layers in overlayfs format (overlay lower
                                     dirs), named by chain id so identical stacks share
    images/<id-hex>.json             image records
    containers/<id>/config.json      container records (written by the container code;
                                     the store only reads them, see below)
    tmp/                             temporary area on the same filesystem
    tmp/blob-<hex>.partial           a blob's download so far, resumed by the next pull
    .lock                            flock, serializes pulls (and gc) on a host

Everything is written to a temporary name under ``tmp/`` (or next to its target) and
renamed into place, so a blob, layer dir or record that exists is complete. A blob's
download is kept across failures at ``tmp/blob-<hex>.partial`` (see ``blob_writer``) so an
interrupted pull resumes it; it becomes ``blobs/sha256/<hex>`` only by a rename after its
digest and size are verified, and it is removed when they do not match. ``gc`` removes
partial downloads too (a pull after it starts those blobs again).

Writers (pulls, ``save_image``, ``remove_image``, ``gc``) are expected to run inside
``with store.lock():``. The lock is not reentrant: take it once per process.

An image record is a dict with at least ``id`` ("sha256:<hex>", the config digest) and
``layers`` (the chain ids of its layers, bottom first). Other keys a puller sets:
``config`` (the image config), ``manifest_digest``, ``repo_tags``
(``10.231.7.1:5000/busybox:latest``), ``repo_digests`` (``repo@sha256:...``),
``diff_ids``, ``blobs`` (every blob digest the image uses: manifest, config, layers),
``size`` and ``created``. ``gc`` keeps the blobs named by ``id``, ``manifest_digest``,
``config_digest`` and ``blobs``, and the layers named by ``layers``.

A container record (``containers/<id>/config.json``) is a JSON object naming its image
by ``Image`` (the image id, "sha256:<hex>") and, optionally, itself by ``Name``. That is
the whole contract between containers and the store: a container uses its image, and
through the image's record the image's layers. So an image a container uses keeps its
record (``fleet rmi`` refuses, or with force only takes its names away) and ``gc`` keeps
its layers (``in_use``). Container code writes its record under ``lock()`` too.
"""

import errno
import fcntl
import os
import stat
import sys

from agent_payload import jsonwire, syscalls

# hashlib, json, shutil and tempfile are imported where a pull, a removal or a record
# write needs them: creating a container from a stored image needs none of them, and
# importing them cost every such payload a few milliseconds of CPU.

DEFAULT_ROOT = "/var/lib/fleet"


def _is_hex(text, shortest=64):
    """Whether ``text`` is lowercase hex of ``shortest`` to 64 digits (no re: its import,
    with enum's, cost every payload that only reads the store)."""
    return shortest <= len(text) <= 64 and not text.strip("0123456789abcdef")


class StoreError(Exception):
    """A store operation failed (one-line message)."""


class FileLock:
    """An exclusive flock on the file at ``path`` (made if missing), held for a ``with``
    body; ``value`` is what the ``with`` gives."""

    def __init__(self, path, value=None):
        self.path, self.value = path, value

    def __enter__(self):
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0),
                          0o600)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(self.fd)
            raise
        return self.value

    def __exit__(self, *exc):
        os.close(self.fd)  # releases the flock


def _unlink_quietly(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _hex(digest, what="digest"):
    """Return the hex part of a ``sha256:<64 hex>`` digest, or raise StoreError."""
    if not isinstance(digest, str) or not digest.startswith("sha256:") or \
            not _is_hex(digest[7:]):
        raise StoreError(f"invalid {what} {digest!r}: expected sha256:<64 hex digits>")
    return digest[7:]


def remove_tree(path, ignore_errors=False):
    """Remove a directory tree (or file), making unreadable directories removable first;
    with ``ignore_errors``, what still cannot be removed is left and the rest goes."""
    def onerror(func, failed, _exc):
        parent = os.path.dirname(failed)
        try:
            os.chmod(parent, 0o700)
            if os.path.isdir(failed) and not os.path.islink(failed):
                os.chmod(failed, 0o700)
        except OSError:
            pass
        try:
            func(failed)
        except OSError:
            if not ignore_errors:
                raise

    if os.path.isdir(path) and not os.path.islink(path):
        import shutil

        # onerror is deprecated from 3.12 on, onexc does not exist before it
        key = "onexc" if sys.version_info >= (3, 12) else "onerror"
        shutil.rmtree(path, **{key: onerror})
    elif os.path.lexists(path):
        try:
            os.unlink(path)
        except OSError:
            if not ignore_errors:
                raise


class BlobFile:
    """The file ``Store.blob_writer`` yields: a blob's download so far, hashed as it grows.

    Writes always append (the file is open with O_APPEND) and ``hash`` and ``size``
    always describe the whole file, so the store verifies it without reading it again.
    ``read``, ``seek`` and ``truncate`` let a resuming writer (RegistryClient.fetch_blob)
    read back what an earlier attempt left and ask for the rest, or start over.
    """

    def __init__(self, fileobj, name):
        import hashlib

        self._sha256 = hashlib.sha256
        self._f = fileobj
        self.name = name
        self.hash = self._sha256()
        self.size = 0
        self._rehash()  # what an earlier, interrupted download left

    def _rehash(self):
        """Hash the file's content from 0 to its end (and leave the position there)."""
        self.hash = self._sha256()
        self.size = 0
        self._f.seek(0)
        while True:
            chunk = self._f.read(1024 * 1024)
            if not chunk:
                break
            self.hash.update(chunk)
            self.size += len(chunk)

    def flush(self):
        """Flush the file's buffer."""
        self._f.flush()

    def read(self, size=-1):
        """Read from the current position (what an earlier download left)."""
        return self._f.read(size)

    def seek(self, offset, whence=0):
        """Move the read position; return it (writes append wherever it is)."""
        return self._f.seek(offset, whence)

    def tell(self):
        """The current read position."""
        return self._f.tell()

    def truncate(self, size=None):
        """Cut the file to ``size`` bytes (default: the position); return the new size."""
        size = self._f.tell() if size is None else size
        self._f.flush()
        self._f.truncate(size)
        self._rehash()
        return self.size

    def write(self, data):
        """Append bytes to the file, hashing them; returns the count."""
        self._f.write(data)
        self.hash.update(data)
        self.size += len(data)
        return len(data)


class Store:
    """A content store rooted at ``root`` (created with mode 0700 if missing)."""

    def __init__(self, root=DEFAULT_ROOT):
        self.root = os.path.abspath(root)
        self.blobs_dir = os.path.join(self.root, "blobs", "sha256")
        self.layers_dir = os.path.join(self.root, "layers", "sha256")
        self.images_dir = os.path.join(self.root, "images")
        self.tmp_dir = os.path.join(self.root, "tmp")
        # Not created here: it belongs to the container code, the store only reads it.
        self.containers_dir = os.path.join(self.root, "containers")
        os.makedirs(self.root, mode=0o700, exist_ok=True)
        os.chmod(self.root, 0o700)
        for path in (self.blobs_dir, self.layers_dir, self.images_dir, self.tmp_dir):
            os.makedirs(path, mode=0o700, exist_ok=True)

    # --- lock ---------------------------------------------------------------------------

    def lock(self):
        """Hold the store's exclusive flock (ROOT/.lock) for the ``with`` body."""
        return FileLock(os.path.join(self.root, ".lock"), self)

    # --- blobs --------------------------------------------------------------------------

    def blob_path(self, digest):
        """Return the path of blob ``digest`` (whether or not it is present)."""
        return os.path.join(self.blobs_dir, _hex(digest))

    def has_blob(self, digest):
        """True when blob ``digest`` is in the store."""
        return os.path.isfile(self.blob_path(digest))

    def partial_path(self, digest):
        """Return the path where the download of blob ``digest`` is kept until verified."""
        return os.path.join(self.tmp_dir, "blob-" + _hex(digest) + ".partial")

    def blob_writer(self, digest, size=None):
        """Yield a BlobFile to write blob ``digest`` into; verify and rename it on exit.

        The BlobFile is ``partial_path(digest)``, opened with what an earlier attempt left
        in it: a writer resumes from there (RegistryClient.fetch_blob does) or truncates
        it to start over. When the body raises (a download cut off, cancelled or
        refused) the partial file is kept for the next attempt, unless it is empty: a
        writer that finds its content bad truncates it (fetch_blob does on a digest or
        size mismatch). On a clean exit the content's sha256 (and ``size`` when given)
        must match, else the partial file is removed and StoreError raised; then it is
        renamed to ``blob_path(digest)``. Hold ``lock()``: two writers of one blob would
        share the file.
        """
        # contextlib here, not at the top: only pulls write blobs, and every container
        # create imports the store (contextlib brings collections and functools, ~1 ms)
        import contextlib

        return contextlib.contextmanager(self._write_blob)(digest, size)

    def _write_blob(self, digest, size):
        final = self.blob_path(digest)
        partial = self.partial_path(digest)
        # O_APPEND: whatever a writer does with the read position, data lands at the end,
        # so BlobFile's running hash is the file's.
        fd = os.open(partial, os.O_RDWR | os.O_CREAT | os.O_APPEND |
                     getattr(os, "O_CLOEXEC", 0), 0o600)
        try:
            f = os.fdopen(fd, "a+b")
        except BaseException:
            os.close(fd)
            raise
        with f:
            try:
                blob = BlobFile(f, partial)
                yield blob
            except BaseException:
                try:
                    f.flush()
                except OSError:
                    pass
                try:
                    if os.fstat(f.fileno()).st_size == 0:
                        os.unlink(partial)
                except OSError:
                    pass
                raise
            f.flush()
            os.fsync(f.fileno())
        try:
            got = "sha256:" + blob.hash.hexdigest()
            if got != digest:
                raise StoreError(f"blob {digest}: content has digest {got} "
                                 f"({blob.size} bytes), expected {digest}")
            if size is not None and blob.size != size:
                raise StoreError(f"blob {digest}: {blob.size} bytes, expected {size}")
            os.chmod(partial, 0o644)
            os.replace(partial, final)
        except BaseException:
            _unlink_quietly(partial)
            raise
        syscalls.fsync_dir(self.blobs_dir)

    # --- layers -------------------------------------------------------------------------

    def layer_path(self, chain_id):
        """Return the dir of the layer with ``chain_id`` (whether or not it is present)."""
        return os.path.join(self.layers_dir, _hex(chain_id, "chain id"))

    def has_layer(self, chain_id):
        """True when the layer with ``chain_id`` is unpacked (a present dir is complete)."""
        return os.path.isdir(self.layer_path(chain_id))

    def add_layer(self, chain_id, unpack_fn):
        """Unpack a layer with ``unpack_fn(tmp_dir)`` and rename it into place; return its dir.

        ``tmp_dir`` is a fresh mode-0755 directory under ROOT/tmp. When ``unpack_fn``
        raises, the temp dir is removed and the exception propagates. When the layer
        exists already (before, or created by another process meanwhile), ours is
        discarded.
        """
        final = self.layer_path(chain_id)
        if os.path.isdir(final):
            return final
        import tempfile

        tmp = tempfile.mkdtemp(prefix="layer-", dir=self.tmp_dir)
        try:
            os.chmod(tmp, 0o755)
            unpack_fn(tmp)
            # The content is on disk before the name makes it look complete.
            syscalls.syncfs(tmp)
            try:
                os.rename(tmp, final)
            except OSError as e:
                if e.errno in (errno.EEXIST, errno.ENOTEMPTY) and os.path.isdir(final):
                    remove_tree(tmp)
                    return final
                raise StoreError(f"layer {chain_id}: cannot move into place: "
                                 f"{e.strerror}") from None
            syscalls.fsync_dir(self.layers_dir)
            return final
        except BaseException:
            if os.path.lexists(tmp):
                remove_tree(tmp)
            raise

    def in_use(self, chain_id):
        """True when a container's image lists the layer ``chain_id`` (gc keeps it then).

        A container names its image by id and the image's record names its layers. An
        image record that is present but unreadable counts as using the layer: gc must
        not remove what a container may stand on.
        """
        for image_id in sorted({c["image"] for c in self.list_containers() if c["image"]}):
            try:
                record = self.load_image(image_id)
            except StoreError:
                if os.path.exists(self._image_file(image_id)):
                    return True
                continue
            if chain_id in (record.get("layers") or []):
                return True
        return False

    # --- containers (read only: the contract the container code writes to) -------------

    def list_containers(self):
        """Return ``[{"id", "name", "image"}]`` for every container record, sorted by id.

        ``id`` is the directory name under ROOT/containers, ``name`` the record's
        ``Name`` (without Docker's leading "/") or else the id, ``image`` its ``Image``
        when that is an image id ("sha256:<hex>"), else None. A directory without
        config.json (a container being created or removed) is skipped; a record that is
        not a JSON object raises StoreError, so nothing is removed from under it.
        """
        try:
            names = sorted(os.listdir(self.containers_dir))
        except FileNotFoundError:
            return []
        found = []
        for name in names:
            if name.startswith("."):
                continue
            path = os.path.join(self.containers_dir, name, "config.json")
            try:
                with open(path, "rb") as f:
                    record = jsonwire.loads(f.read().decode("utf-8"))
            except (FileNotFoundError, NotADirectoryError):
                continue
            except OSError as e:
                raise StoreError(f"container record {path}: {e.strerror}") from None
            except (ValueError, UnicodeDecodeError) as e:
                raise StoreError(f"container record {path} is not valid JSON: {e}") from None
            if not isinstance(record, dict):
                raise StoreError(f"container record {path} is not a JSON object")
            image = record.get("Image")
            try:
                _hex(image, "image id")
            except StoreError:
                image = None
            shown = record.get("Name")
            shown = shown.lstrip("/") if isinstance(shown, str) and shown.lstrip("/") else name
            found.append({"id": name, "name": shown, "image": image})
        return found

    def containers_using(self, image_id):
        """Return the names of the containers whose image is ``image_id``, sorted."""
        return sorted(c["name"] for c in self.list_containers() if c["image"] == image_id)

    # --- image records ------------------------------------------------------------------

    def _image_file(self, image_id):
        return os.path.join(self.images_dir, _hex(image_id, "image id") + ".json")

    def save_image(self, record):
        """Write an image record (temp + rename); its repo tags move off other images."""
        image_id = record.get("id")
        path = self._image_file(image_id)
        for chain in record.get("layers", []):
            _hex(chain, "chain id")
        tags = set(record.get("repo_tags") or [])
        if tags:
            for other in self.list_images():
                if other["id"] == image_id:
                    continue
                kept = [t for t in other.get("repo_tags") or [] if t not in tags]
                if kept != list(other.get("repo_tags") or []):
                    other["repo_tags"] = kept
                    self._write_record(self._image_file(other["id"]), other)
        self._write_record(path, record)

    def _write_record(self, path, record):
        import json
        import tempfile

        data = json.dumps(record, sort_keys=True, indent=1).encode("utf-8")
        fd, tmp = tempfile.mkstemp(prefix="image-", dir=self.tmp_dir)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, path)
            syscalls.fsync_dir(self.images_dir)
        except BaseException:
            _unlink_quietly(tmp)
            raise

    def load_image(self, image_id):
        """Return the record of image ``image_id`` ("sha256:<hex>"); StoreError if absent."""
        path = self._image_file(image_id)
        try:
            with open(path, "rb") as f:
                return jsonwire.loads(f.read().decode("utf-8"))
        except FileNotFoundError:
            raise StoreError(f"no image {image_id}") from None
        except ValueError as e:
            raise StoreError(f"image record {path} is not valid JSON: {e}") from None

    def list_images(self):
        """Return every image record, sorted by id."""
        records = []
        for name in sorted(os.listdir(self.images_dir)):
            if name.endswith(".json") and _is_hex(name[:-5]):
                try:
                    records.append(self.load_image("sha256:" + name[:-5]))
                except StoreError:
                    pass
        return records

    def find_image(self, name_or_digest):
        """Return the record matching a repo tag, repo digest, digest or id prefix, or None.

        ``repo:tag`` (``repo`` alone means ``repo:latest``) matches ``repo_tags``;
        ``repo@sha256:...`` matches ``repo_digests``; ``sha256:<hex>`` matches an id or a
        manifest digest; a hex prefix (optionally ``sha256:``-prefixed) matches an id when
        unique (StoreError when ambiguous).
        """
        ref = name_or_digest.strip()
        images = self.list_images()
        tags = {ref}
        last = ref.rsplit("/", 1)[-1]
        if "@" not in ref and ":" not in last:
            tags.add(ref + ":latest")
        for record in images:
            if tags & set(record.get("repo_tags") or []):
                return record
        if "@" in ref:
            for record in images:
                if ref in (record.get("repo_digests") or []):
                    return record
            return None
        if _is_hex(ref[7:]) and ref.startswith("sha256:"):
            for record in images:
                if ref in (record.get("id"), record.get("manifest_digest")):
                    return record
        prefix = ref[7:] if ref.startswith("sha256:") else ref
        if not _is_hex(prefix, shortest=1):
            return None
        found = [r for r in images if r.get("id", "")[7:].startswith(prefix)]
        if len(found) > 1:
            raise StoreError(f"image id prefix {ref!r} is ambiguous ({len(found)} images)")
        return found[0] if found else None

    def remove_image(self, image_id):
        """Remove an image record; True if it existed. Call ``gc()`` to free its content."""
        try:
            os.unlink(self._image_file(image_id))
        except FileNotFoundError:
            return False
        syscalls.fsync_dir(self.images_dir)
        return True

    # --- gc -----------------------------------------------------------------------------

    def gc(self):
        """Remove blobs and layers no image references, and stale temp entries.

        A layer no image record lists stays while ``in_use`` says a container needs it.
        Temp entries include partial downloads: a pull holds the lock, so none is being
        written, and one left by an interrupted pull would otherwise stay forever (the
        next pull of that blob starts from 0 instead of resuming).
        Run it holding ``lock()`` (temp entries belong to whoever holds the lock).
        Returns ``{"blobs": [digests], "layers": [chain ids], "tmp": [names]}``.
        """
        blobs, layers = set(), set()
        for record in self.list_images():
            for key in ("id", "manifest_digest", "config_digest"):
                if record.get(key):
                    blobs.add(record[key])
            blobs.update(record.get("blobs") or [])
            layers.update(record.get("layers") or [])
        removed = {"blobs": [], "layers": [], "tmp": []}
        for name in sorted(os.listdir(self.blobs_dir)):
            digest = "sha256:" + name
            if digest not in blobs:
                os.unlink(os.path.join(self.blobs_dir, name))
                removed["blobs"].append(digest)
        for name in sorted(os.listdir(self.layers_dir)):
            chain = "sha256:" + name
            if chain in layers or (_is_hex(name) and self.in_use(chain)):
                continue
            # vanish atomically first, then delete at leisure
            import tempfile

            doomed = tempfile.mkdtemp(prefix="gc-", dir=self.tmp_dir)
            os.rename(os.path.join(self.layers_dir, name), os.path.join(doomed, name))
            remove_tree(doomed)
            removed["layers"].append(chain)
        for name in sorted(os.listdir(self.tmp_dir)):
            path = os.path.join(self.tmp_dir, name)
            st = os.lstat(path)
            if stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode):
                remove_tree(path)
                removed["tmp"].append(name)
        return removed

"""Apply one OCI layer tar to a directory, confined to it, in overlayfs format.

``unpack_layer`` reads a layer as a stream (gzip, zstd through the host's ``zstd -dc``,
or plain tar), creates every entry itself (tarfile's extract filters strip setuid bits
and resolve paths on the host, so they are not used) and converts OCI whiteouts into
what overlayfs understands: ``DIR/.wh.NAME`` becomes a character device 0/0 named
``NAME`` and ``DIR/.wh..wh..opq`` becomes the xattr ``trusted.overlay.opaque=y`` on DIR.

Confinement: an entry whose name is absolute, contains ``..``, or whose parent inside
the layer dir is a symlink is refused, as is a hardlink whose target would be outside
the layer dir or reached through a symlink. Every directory on the way is opened with
O_NOFOLLOW and entries are created relative to that directory's descriptor, so nothing
outside the layer dir is ever followed or written.

On any error ``UnpackError`` is raised with a one-line message naming the layer digest
and the tar entry, and the layer dir is left half-written: the CALLER unpacks into a
fresh temporary directory and removes it on failure (``Store.add_layer`` does so).

``chain_id`` computes the OCI ChainID of a stack of layer DiffIDs.
"""

import errno
import gzip
import hashlib
import os
import shutil
import stat
import subprocess
import tarfile
import tempfile
import threading
import zlib

CHUNK = 1 << 20
WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"
XATTR_PAX_PREFIX = "SCHILY.xattr."
MAX_WARNINGS = 100

_O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


class UnpackError(Exception):
    """A layer could not be applied (one-line message naming the layer and the entry)."""


def chain_id(diff_ids):
    """Return the OCI ChainID of layers given their DiffIDs, bottom layer first.

    ChainID(L0) = DiffID(L0); ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln)).
    """
    diff_ids = list(diff_ids)
    if not diff_ids:
        raise ValueError("chain_id needs at least one diff id")
    current = diff_ids[0]
    for diff_id in diff_ids[1:]:
        current = "sha256:" + hashlib.sha256((current + " " + diff_id).encode()).hexdigest()
    return current


class _HashingReader:
    """A read-only stream that hashes (sha256) and counts every byte read through it."""

    def __init__(self, raw):
        self._raw = raw
        self.hash = hashlib.sha256()
        self.size = 0

    def read(self, n=-1):
        """Read up to ``n`` bytes, hashing them."""
        data = self._raw.read(n)
        if data:
            self.hash.update(data)
            self.size += len(data)
        return data

    def drain(self):
        """Read (and hash) what is left of the stream."""
        while self.read(CHUNK):
            pass


class _Zstd:
    """Decompress a stream through a ``zstd -dc`` subprocess fed by a thread."""

    def __init__(self, fileobj, layer):
        self._layer = layer
        self._err = tempfile.TemporaryFile()
        self._proc = subprocess.Popen(
            ["zstd", "-dc"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._err
        )
        self.stdout = self._proc.stdout
        self._feed_error = None
        self._thread = threading.Thread(target=self._feed, args=(fileobj,), daemon=True)
        self._thread.start()

    def _feed(self, fileobj):
        try:
            while True:
                data = fileobj.read(CHUNK)
                if not data:
                    break
                self._proc.stdin.write(data)
        except BrokenPipeError:
            pass
        except Exception as e:  # reported by finish()
            self._feed_error = e
        finally:
            try:
                self._proc.stdin.close()
            except OSError:
                pass

    def failure(self):
        """Return zstd's error when it has exited with a failure (waits up to 1 s), else None."""
        try:
            rc = self._proc.wait(timeout=1)
        except subprocess.TimeoutExpired:
            return None
        return self._stderr(rc) if rc != 0 else None

    def _stderr(self, rc):
        self._err.seek(0)
        lines = self._err.read(4096).decode("utf-8", "replace").strip().splitlines()
        return lines[-1] if lines else f"exit status {rc}"

    def finish(self):
        """Wait for zstd; raise UnpackError if it or the feeding failed."""
        rc = self._proc.wait()
        self._thread.join()
        if self._feed_error is not None:
            raise UnpackError(f"layer {self._layer}: reading the layer failed: "
                              f"{self._feed_error}")
        if rc != 0:
            raise UnpackError(f"layer {self._layer}: zstd -dc failed: {self._stderr(rc)}")

    def close(self):
        """Stop zstd (if still running) and release its pipes."""
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()
        self._thread.join(timeout=10)
        self.stdout.close()
        self._err.close()


def unpack_layer(fileobj, dest_dir, compression, layer_digest=""):
    """Apply the layer tar read from ``fileobj`` to ``dest_dir`` in overlayfs format.

    ``compression`` is "gzip", "zstd" or "none". Returns ``{"diff_id": "sha256:...",
    "files": entries applied, "bytes": regular file bytes written, "warnings": [...]}``;
    ``diff_id`` is the sha256 of the uncompressed tar, to check against the image
    config's rootfs.diff_ids. Raises UnpackError; on error ``dest_dir`` is half-written
    and the caller must remove it (unpack into a fresh temporary directory).
    """
    layer = layer_digest or "<unknown>"
    zstd = None
    if compression == "gzip":
        raw = gzip.GzipFile(fileobj=fileobj, mode="rb")
    elif compression == "none":
        raw = fileobj
    elif compression == "zstd":
        if shutil.which("zstd") is None:
            raise UnpackError(f"zstd layer {layer} needs the zstd program on the host")
        zstd = _Zstd(fileobj, layer)
        raw = zstd.stdout
    else:
        raise UnpackError(f"layer {layer}: unknown compression {compression!r}")
    reader = _HashingReader(raw)
    applier = _Applier(dest_dir, layer)
    try:
        try:
            with tarfile.open(fileobj=reader, mode="r|") as tar:
                applier.apply_all(tar)
            reader.drain()
        except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as e:
            failed = zstd.failure() if zstd is not None else None
            if failed:
                raise UnpackError(f"layer {layer}: zstd -dc failed: {failed}") from None
            where = f" after entry {applier.last!r}" if applier.last is not None else ""
            kind = "tar" if compression == "none" else f"{compression}-compressed tar"
            raise UnpackError(f"layer {layer}: not a valid {kind} stream{where}: "
                              f"{_one_line(e)}") from None
        except OSError as e:
            # read errors of the stream itself (entry errors are wrapped by the applier)
            raise UnpackError(f"layer {layer}: reading the layer failed: {_one_line(e)}"
                              ) from None
        if zstd is not None:
            zstd.finish()
    finally:
        if zstd is not None:
            zstd.close()
        applier.close()
    return {
        "diff_id": "sha256:" + reader.hash.hexdigest(),
        "files": applier.files,
        "bytes": applier.bytes,
        "warnings": applier.warnings,
    }


def _one_line(e):
    return " ".join(str(e).split()) or type(e).__name__


def _split(name):
    """Return the components of a tar name, or None when it leaves the layer."""
    while name.startswith("./"):
        name = name[2:]
    if name.startswith("/"):
        return None
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        return None
    return parts


class _Refused(Exception):
    """Internal: an entry is refused; the message is the part after the entry name."""


class _Applier:
    """Creates tar entries under a directory, relative to O_NOFOLLOW directory fds."""

    def __init__(self, dest_dir, layer):
        self.layer = layer
        self.root_fd = os.open(dest_dir, _O_DIR)
        self.files = 0
        self.bytes = 0
        self.warnings = []
        self.last = None
        self._dirs = {}  # tuple(parts) -> TarInfo, metadata applied at the end
        self._chown_failed = 0

    def close(self):
        """Release the layer dir's descriptor."""
        if self.root_fd >= 0:
            os.close(self.root_fd)
            self.root_fd = -1

    def _error(self, name, message):
        return UnpackError(f"layer {self.layer} entry {name!r}: {message}")

    def warn(self, message):
        """Record a warning (capped)."""
        if len(self.warnings) < MAX_WARNINGS:
            self.warnings.append(message)
        elif len(self.warnings) == MAX_WARNINGS:
            self.warnings.append("more warnings left out")

    def apply_all(self, tar):
        """Apply every entry of a stream-mode TarFile, then the directories' metadata."""
        while True:
            member = tar.next()
            if member is None:
                break
            self.last = member.name
            try:
                self.apply(tar, member)
            except _Refused as e:
                raise self._error(member.name, str(e)) from None
            except OSError as e:
                raise self._error(member.name, _os_message(e)) from None
            tar.members = []  # stream mode: do not keep every TarInfo in memory
        self.finish_dirs()
        if self._chown_failed:
            self.warn(f"ownership not applied to {self._chown_failed} entries "
                      "(not permitted: not root?)")

    # --- resolving paths ------------------------------------------------------------------

    def _open_parent(self, parts, create):
        """Return an fd of the directory holding ``parts[-1]`` (the caller closes it)."""
        fd = os.dup(self.root_fd)
        try:
            for i, part in enumerate(parts[:-1]):
                try:
                    st = os.lstat(part, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise _Refused(f"'{'/'.join(parts[:i + 1])}' does not exist") from None
                    os.mkdir(part, 0o755, dir_fd=fd)
                    st = os.lstat(part, dir_fd=fd)
                if stat.S_ISLNK(st.st_mode):
                    raise _Refused("path leaves the layer (through symlink "
                                   f"'{'/'.join(parts[:i + 1])}')")
                if not stat.S_ISDIR(st.st_mode):
                    raise _Refused(f"parent '{'/'.join(parts[:i + 1])}' is not a directory")
                try:
                    nfd = os.open(part, _O_DIR, dir_fd=fd)
                except OSError as e:
                    if e.errno == errno.ELOOP:
                        raise _Refused("path leaves the layer (through symlink "
                                       f"'{'/'.join(parts[:i + 1])}')") from None
                    raise
                os.close(fd)
                fd = nfd
            return fd
        except BaseException:
            os.close(fd)
            raise

    # --- entries --------------------------------------------------------------------------

    def apply(self, tar, member):
        """Apply one tar entry."""
        parts = _split(member.name)
        if parts is None:
            raise _Refused("path leaves the layer")
        if not parts:
            if member.isdir():
                self._dirs[()] = member
                self.files += 1
                return
            raise _Refused("not a valid path for a non-directory")
        leaf = parts[-1]
        if leaf.startswith(WHITEOUT_PREFIX):
            self._whiteout(parts)
            return
        parent = self._open_parent(parts, create=True)
        try:
            self._create(tar, member, parts, parent)
        finally:
            os.close(parent)
        self.files += 1

    def _whiteout(self, parts):
        leaf = parts[-1]
        parent = self._open_parent(parts, create=True)
        try:
            if leaf == OPAQUE_MARKER:
                try:
                    os.setxattr(parent, OPAQUE_XATTR, b"y")
                except OSError as e:
                    raise _Refused(f"cannot set {OPAQUE_XATTR} on the directory: "
                                   f"{_os_message(e)}") from None
                return
            if leaf.startswith(WHITEOUT_PREFIX + WHITEOUT_PREFIX):
                return  # other .wh..wh.* names are ignored
            name = leaf[len(WHITEOUT_PREFIX):]
            if name in ("", ".", ".."):
                raise _Refused("not a valid whiteout name")
            self._remove_existing(parent, name)
            try:
                os.mknod(name, stat.S_IFCHR | 0o600, os.makedev(0, 0), dir_fd=parent)
            except PermissionError:
                raise _Refused("cannot create the overlay whiteout (a 0/0 character device): "
                               "not permitted (needs root / CAP_MKNOD)") from None
            self._dirs.pop(tuple(parts[:-1]) + (name,), None)
            self.files += 1
        finally:
            os.close(parent)

    def _remove_existing(self, parent, name, keep_dir=False):
        """Remove ``name`` in ``parent`` if present; return its lstat (or None)."""
        try:
            st = os.lstat(name, dir_fd=parent)
        except FileNotFoundError:
            return None
        if stat.S_ISDIR(st.st_mode):
            if not keep_dir:
                _rmtree_at(parent, name)
        else:
            os.unlink(name, dir_fd=parent)
        return st

    def _create(self, tar, member, parts, parent):
        leaf = parts[-1]
        key = tuple(parts)
        mode = member.mode & 0o7777
        if member.isdir():
            old = self._remove_existing(parent, leaf, keep_dir=True)
            if old is None or not stat.S_ISDIR(old.st_mode):
                os.mkdir(leaf, 0o700, dir_fd=parent)
                if old is not None and _is_whiteout(old):
                    # deleted and re-created in this layer: hide the lower dir's content
                    self._set_xattr(member.name, parent, leaf, OPAQUE_XATTR, b"y")
            self._set_xattrs(member, parent, leaf)
            self._dirs[key] = member
            return
        self._dirs.pop(key, None)
        if member.islnk():
            self._hardlink(member, parent, leaf)
            return
        self._remove_existing(parent, leaf)
        if member.isreg():
            self._regular(tar, member, parent, leaf, mode)
        elif member.issym():
            os.symlink(member.linkname, leaf, dir_fd=parent)
            self._chown(parent, leaf, member)
        elif member.isfifo():
            os.mkfifo(leaf, 0o600, dir_fd=parent)
            self._chown(parent, leaf, member)
            os.chmod(leaf, mode, dir_fd=parent)
        elif member.ischr() or member.isblk():
            kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK
            try:
                os.mknod(leaf, kind | 0o600, os.makedev(member.devmajor, member.devminor),
                         dir_fd=parent)
            except PermissionError:
                raise _Refused("cannot create the device node: not permitted "
                               "(needs root / CAP_MKNOD)") from None
            self._chown(parent, leaf, member)
            os.chmod(leaf, mode, dir_fd=parent)
        else:
            raise _Refused(f"unsupported tar entry type {member.type!r}")
        self._set_xattrs(member, parent, leaf)
        _utime(parent, leaf, member.mtime)

    def _regular(self, tar, member, parent, leaf, mode):
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
        fd = os.open(leaf, flags, 0o600, dir_fd=parent)
        try:
            src = tar.extractfile(member)
            written = 0
            if src is not None:
                while True:
                    data = src.read(CHUNK)
                    if not data:
                        break
                    view = memoryview(data)
                    while view:
                        n = os.write(fd, view)
                        view = view[n:]
                    written += len(data)
            if written != member.size:
                raise _Refused(f"short content ({written} of {member.size} bytes)")
            self.bytes += written
            try:
                os.fchown(fd, member.uid, member.gid)
            except PermissionError:
                self._chown_failed += 1
            os.fchmod(fd, mode)  # after chown, which clears setuid/setgid
        finally:
            os.close(fd)

    def _hardlink(self, member, parent, leaf):
        target = _split(member.linkname)
        if target is None or not target:
            raise _Refused(f"hardlink target {member.linkname!r} leaves the layer")
        tparent = self._open_parent(target, create=False)
        try:
            try:
                tst = os.lstat(target[-1], dir_fd=tparent)
            except FileNotFoundError:
                raise _Refused(f"hardlink target {member.linkname!r} does not exist") from None
            if stat.S_ISDIR(tst.st_mode):
                raise _Refused(f"hardlink target {member.linkname!r} is a directory")
            try:
                cur = os.lstat(leaf, dir_fd=parent)
            except FileNotFoundError:
                cur = None
            if cur is not None and (cur.st_dev, cur.st_ino) == (tst.st_dev, tst.st_ino):
                return
            self._remove_existing(parent, leaf)
            os.link(target[-1], leaf, src_dir_fd=tparent, dst_dir_fd=parent,
                    follow_symlinks=False)
        finally:
            os.close(tparent)

    # --- metadata -------------------------------------------------------------------------

    def _chown(self, parent, leaf, member):
        try:
            os.chown(leaf, member.uid, member.gid, dir_fd=parent, follow_symlinks=False)
        except PermissionError:
            self._chown_failed += 1

    def _set_xattrs(self, member, parent, leaf):
        for key, value in sorted(member.pax_headers.items()):
            if key.startswith(XATTR_PAX_PREFIX):
                attr = key[len(XATTR_PAX_PREFIX):]
                if not isinstance(value, bytes):
                    value = value.encode("utf-8", "surrogateescape")
                self._set_xattr(member.name, parent, leaf, attr, value)

    def _set_xattr(self, name, parent, leaf, attr, value):
        path = f"/proc/self/fd/{parent}/{leaf}"
        try:
            os.setxattr(path, attr, value, follow_symlinks=False)
        except OSError as e:
            self.warn(f"layer {self.layer} entry {name!r}: xattr {attr} not set: "
                      f"{_os_message(e)}")

    def finish_dirs(self):
        """Apply owners, modes and mtimes of directories, deepest first."""
        for key in sorted(self._dirs, key=len, reverse=True):
            member = self._dirs[key]
            parts = list(key)
            try:
                if parts:
                    parent = self._open_parent(parts, create=False)
                    try:
                        fd = os.open(parts[-1], _O_DIR, dir_fd=parent)
                    finally:
                        os.close(parent)
                else:
                    fd = os.dup(self.root_fd)
            except (_Refused, OSError):
                continue  # replaced later in this layer by something else
            try:
                try:
                    os.fchown(fd, member.uid, member.gid)
                except PermissionError:
                    self._chown_failed += 1
                os.fchmod(fd, member.mode & 0o7777)
                ns = int(member.mtime * 1_000_000_000)
                os.utime(fd, ns=(ns, ns))
            except OSError as e:
                raise self._error(member.name, _os_message(e)) from None
            finally:
                os.close(fd)


def _is_whiteout(st):
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(0, 0)


def _utime(parent, leaf, mtime):
    ns = int(mtime * 1_000_000_000)
    os.utime(leaf, ns=(ns, ns), dir_fd=parent, follow_symlinks=False)


def _rmtree_at(parent, name):
    """Remove directory ``name`` under fd ``parent`` recursively, never following links."""
    fd = os.open(name, _O_DIR, dir_fd=parent)
    try:
        with os.scandir(fd) as it:
            entries = [(e.name, e.is_dir(follow_symlinks=False)) for e in it]
        for child, is_dir in entries:
            if is_dir:
                _rmtree_at(fd, child)
            else:
                os.unlink(child, dir_fd=fd)
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=parent)


def _os_message(e):
    text = e.strerror or str(e)
    return " ".join(text.split())

"""Apply one OCI layer tar to a directory, confined to it, in overlayfs format.

``unpack_layer`` reads a layer as a stream (gzip, zstd through the host's ``zstd -dc``,
or plain tar), decompressing and hashing it in a second thread, parses it with
tarstream, creates every entry itself (tarfile's extract filters strip setuid bits and
resolve paths on the host, so they are not used) and converts OCI whiteouts into
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
import hashlib
import os
import queue
import stat
import subprocess
import tempfile
import threading
import zlib

from agent_payload import tools
from agent_payload.oci import tarstream
from agent_payload.oci.tarstream import TarError, TarReader

CHUNK = 1 << 20
QUEUE_CHUNKS = 8  # uncompressed chunks between the reading and the unpacking thread
WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"
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


class _SourceError(Exception):
    """Internal: reading or decompressing the layer failed (``cause`` says how)."""

    def __init__(self, cause):
        super().__init__(str(cause))
        self.cause = cause


class _Inflater:
    """Reads the layer in a thread of its own, decompresses it and hashes the result.

    The unpacking thread takes the uncompressed chunks from a short queue. zlib and
    hashlib release the GIL, so decompressing and hashing (the diff id) run on another
    core while the entries are created, as GNU tar runs gzip beside itself.
    """

    def __init__(self, source, compression):
        self.hash = hashlib.sha256()
        self._queue = queue.Queue(maxsize=QUEUE_CHUNKS)
        self._stop = False
        self._ended = False
        self._error = None
        self._chunks = {"gzip": _gunzip, "none": _plain}.get(compression, _plain)(source)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        try:
            for chunk in self._chunks:
                self.hash.update(chunk)
                self._queue.put(chunk)
                if self._stop:
                    return
            self._queue.put(b"")
        except BaseException as e:  # handed to the unpacking thread
            self._error = e
            self._queue.put(None)

    def next_chunk(self):
        """The next uncompressed bytes, b"" at the end; _SourceError when reading failed."""
        if self._ended:
            return b""
        chunk = self._queue.get()
        if chunk is None:
            self._queue.put(None)  # every later call fails the same way
            raise _SourceError(self._error)
        self._ended = not chunk
        return chunk

    def drain(self):
        """Read (and so hash) the rest of the stream: the diff id covers all of it."""
        while self.next_chunk():
            pass

    def close(self):
        """Stop the reading thread (it may be blocked handing over a chunk)."""
        self._stop = True
        while self._thread.is_alive():
            try:
                self._queue.get(timeout=0.05)
            except queue.Empty:
                pass
        self._thread.join()


def _plain(source):
    while True:
        data = source.read(CHUNK)
        if not data:
            return
        yield data


def _gunzip(source):
    """Uncompressed chunks of a gzip stream (several members allowed, zero padding after)."""
    inflate, members = None, 0
    for data in _plain(source):
        more = True
        while more:
            if inflate is None:
                data = data.lstrip(b"\0")  # padding between or after members
                if not data:
                    break
                inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
            # Bounded output: a small, crafted blob must not inflate into memory at once.
            out = inflate.decompress(data, CHUNK)
            if out:
                yield out
            if inflate.eof:
                data, inflate, members = inflate.unused_data, None, members + 1
                more = bool(data)
            else:
                data = inflate.unconsumed_tail
                # A full chunk out: zlib may hold more output though all input went in.
                more = bool(data) or len(out) == CHUNK
    if inflate is not None or not members:
        raise EOFError("the gzip stream is truncated")


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

    def stop(self):
        """Kill zstd if it still runs."""
        if self._proc.poll() is None:
            self._proc.kill()

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
    source = fileobj
    if compression == "zstd":
        if tools.which("zstd") is None:
            raise UnpackError(f"zstd layer {layer} needs the zstd program on the host")
        zstd = _Zstd(fileobj, layer)
        source = zstd.stdout
    elif compression not in ("gzip", "none"):
        raise UnpackError(f"layer {layer}: unknown compression {compression!r}")
    inflater = _Inflater(source, "gzip" if compression == "gzip" else "none")
    applier = _Applier(dest_dir, layer)
    try:
        try:
            applier.apply_all(TarReader(inflater.next_chunk))
            inflater.drain()
        except (TarError, _SourceError) as e:
            cause = e.cause if isinstance(e, _SourceError) else e
            failed = zstd.failure() if zstd is not None else None
            if failed:
                raise UnpackError(f"layer {layer}: zstd -dc failed: {failed}") from None
            if isinstance(cause, OSError):
                raise UnpackError(f"layer {layer}: reading the layer failed: "
                                  f"{_one_line(cause)}") from None
            where = f" after entry {applier.last!r}" if applier.last is not None else ""
            kind = "tar" if compression == "none" else f"{compression}-compressed tar"
            raise UnpackError(f"layer {layer}: not a valid {kind} stream{where}: "
                              f"{_one_line(cause)}") from None
        if zstd is not None:
            zstd.finish()
    finally:
        if zstd is not None:
            zstd.stop()  # so a reading thread waiting for zstd's output sees its end
        inflater.close()
        if zstd is not None:
            zstd.close()
        applier.close()
    return {
        "diff_id": "sha256:" + inflater.hash.hexdigest(),
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
    """Creates tar entries under a directory, relative to O_NOFOLLOW directory fds.

    The descriptors of the current entry's parent directories are kept open from one
    entry to the next (a layer lists a directory's files together), so most entries
    cost no path walk. Only ancestors of the entry being applied are held, and applying
    an entry only replaces or removes its own leaf, so a held descriptor always names a
    directory still inside the layer.
    """

    def __init__(self, dest_dir, layer):
        self.layer = layer
        self.root_fd = os.open(dest_dir, _O_DIR)
        self.files = 0
        self.bytes = 0
        self.warnings = []
        self.last = None
        self._dirs = {}  # tuple(parts) -> Entry, metadata applied at the end
        self._chown_failed = 0
        self._held = []  # [(component, fd)] from the layer root down to the last parent
        self._ids = (os.geteuid(), os.getegid())

    def close(self):
        """Release the layer dir's descriptors."""
        self._hold_prefix(0)
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

    def apply_all(self, reader):
        """Apply every entry of a TarReader, then the directories' metadata."""
        while True:
            entry = reader.next_entry()
            if entry is None:
                break
            self.last = entry.name
            try:
                self.apply(reader, entry)
            except _Refused as e:
                raise self._error(entry.name, str(e)) from None
            except OSError as e:
                raise self._error(entry.name, _os_message(e)) from None
        self._hold_prefix(0)
        self.finish_dirs()
        if self._chown_failed:
            self.warn(f"ownership not applied to {self._chown_failed} entries "
                      "(not permitted: not root?)")

    # --- resolving paths ------------------------------------------------------------------

    def _hold_prefix(self, keep):
        while len(self._held) > keep:
            os.close(self._held.pop()[1])

    def _parent(self, parts):
        """The (held, not to be closed) fd of the directory holding ``parts[-1]``,
        creating missing directories on the way."""
        wanted = parts[:-1]
        keep = 0
        while (keep < len(self._held) and keep < len(wanted)
               and self._held[keep][0] == wanted[keep]):
            keep += 1
        self._hold_prefix(keep)
        fd = self._held[-1][1] if self._held else self.root_fd
        for i in range(keep, len(wanted)):
            fd = _open_dir(fd, wanted, i, create=True)
            self._held.append((wanted[i], fd))
        return fd

    def _open_parent(self, parts, create=False):
        """An fd of the directory holding ``parts[-1]`` that the caller closes."""
        fd = os.dup(self.root_fd)
        try:
            for i in range(len(parts) - 1):
                nfd = _open_dir(fd, parts, i, create)
                os.close(fd)
                fd = nfd
            return fd
        except BaseException:
            os.close(fd)
            raise

    # --- entries --------------------------------------------------------------------------

    def apply(self, reader, entry):
        """Apply one tar entry."""
        parts = _split(entry.name)
        if parts is None:
            raise _Refused("path leaves the layer")
        if not parts:
            if entry.type == tarstream.DIRECTORY:
                self._dirs[()] = entry
                self.files += 1
                return
            raise _Refused("not a valid path for a non-directory")
        parent = self._parent(parts)
        if parts[-1].startswith(WHITEOUT_PREFIX):
            self._whiteout(parts, parent)
        else:
            self._create(reader, entry, parts, parent)
        self.files += 1

    def _whiteout(self, parts, parent):
        leaf = parts[-1]
        if leaf == OPAQUE_MARKER:
            try:
                os.setxattr(parent, OPAQUE_XATTR, b"y")
            except OSError as e:
                raise _Refused(f"cannot set {OPAQUE_XATTR} on the directory: "
                               f"{_os_message(e)}") from None
            self.files -= 1  # a marker, not an entry of the layer's tree
            return
        if leaf.startswith(WHITEOUT_PREFIX + WHITEOUT_PREFIX):
            self.files -= 1
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

    def _replacing(self, make, parent, leaf):
        """Run ``make()``, which creates ``leaf``; if the name is taken (an earlier entry of
        this layer), remove that first. Trying first saves a stat per entry."""
        try:
            return make()
        except FileExistsError:
            self._remove_existing(parent, leaf)
            return make()

    def _create(self, reader, entry, parts, parent):
        leaf = parts[-1]
        key = tuple(parts)
        kind = entry.type
        mode = entry.mode & 0o7777
        if kind == tarstream.DIRECTORY:
            self._directory(entry, parent, leaf)
            self._dirs[key] = entry
            return
        self._dirs.pop(key, None)
        if kind == tarstream.HARDLINK:
            self._hardlink(entry, parent, leaf)
            return
        if kind == tarstream.REGULAR:
            self._regular(reader, entry, parent, leaf, mode)
            return
        if kind == tarstream.SYMLINK:
            self._replacing(lambda: os.symlink(entry.linkname, leaf, dir_fd=parent),
                            parent, leaf)
            self._chown(parent, leaf, entry)
        elif kind == tarstream.FIFO:
            self._replacing(lambda: os.mkfifo(leaf, 0o600, dir_fd=parent), parent, leaf)
            self._chown(parent, leaf, entry)
            os.chmod(leaf, mode, dir_fd=parent)
        elif kind in (tarstream.CHARDEV, tarstream.BLOCKDEV):
            node = stat.S_IFCHR if kind == tarstream.CHARDEV else stat.S_IFBLK
            device = os.makedev(entry.devmajor, entry.devminor)
            try:
                self._replacing(lambda: os.mknod(leaf, node | 0o600, device, dir_fd=parent),
                                parent, leaf)
            except PermissionError:
                raise _Refused("cannot create the device node: not permitted "
                               "(needs root / CAP_MKNOD)") from None
            self._chown(parent, leaf, entry)
            os.chmod(leaf, mode, dir_fd=parent)
        else:
            raise _Refused(f"unsupported tar entry type {entry.typeflag!r}")
        self._set_xattrs(entry, parent, leaf)
        os.utime(leaf, ns=(entry.mtime_ns, entry.mtime_ns), dir_fd=parent,
                 follow_symlinks=False)

    def _directory(self, entry, parent, leaf):
        try:
            os.mkdir(leaf, 0o700, dir_fd=parent)
        except FileExistsError:
            old = os.lstat(leaf, dir_fd=parent)
            if not stat.S_ISDIR(old.st_mode):
                self._remove_existing(parent, leaf)
                os.mkdir(leaf, 0o700, dir_fd=parent)
                if _is_whiteout(old):
                    # deleted and re-created in this layer: hide the lower dir's content
                    self._set_xattr(entry.name, parent, leaf, OPAQUE_XATTR, b"y")
        self._set_xattrs(entry, parent, leaf)

    def _regular(self, reader, entry, parent, leaf, mode):
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
        fd = self._replacing(lambda: os.open(leaf, flags, 0o600, dir_fd=parent), parent, leaf)
        try:
            written = reader.copy_content(fd)
            if written != entry.size:
                raise _Refused(f"short content ({written} of {entry.size} bytes)")
            self.bytes += written
            if (entry.uid, entry.gid) != self._ids:  # a new file is ours already
                try:
                    os.fchown(fd, entry.uid, entry.gid)
                except PermissionError:
                    self._chown_failed += 1
            os.fchmod(fd, mode)  # after chown, which clears setuid/setgid
            for attr, value in sorted(entry.xattrs.items()):
                self._set_xattr(entry.name, fd, None, attr, value)
            os.utime(fd, ns=(entry.mtime_ns, entry.mtime_ns))
        finally:
            os.close(fd)

    def _hardlink(self, entry, parent, leaf):
        target = _split(entry.linkname)
        if target is None or not target:
            raise _Refused(f"hardlink target {entry.linkname!r} leaves the layer")
        tparent = self._open_parent(target)
        try:
            try:
                tst = os.lstat(target[-1], dir_fd=tparent)
            except FileNotFoundError:
                raise _Refused(f"hardlink target {entry.linkname!r} does not exist") from None
            if stat.S_ISDIR(tst.st_mode):
                raise _Refused(f"hardlink target {entry.linkname!r} is a directory")
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

    def _chown(self, parent, leaf, entry):
        if (entry.uid, entry.gid) == self._ids:
            return
        try:
            os.chown(leaf, entry.uid, entry.gid, dir_fd=parent, follow_symlinks=False)
        except PermissionError:
            self._chown_failed += 1

    def _set_xattrs(self, entry, parent, leaf):
        for attr, value in sorted(entry.xattrs.items()):
            self._set_xattr(entry.name, parent, leaf, attr, value)

    def _set_xattr(self, name, parent, leaf, attr, value):
        """Set an xattr on ``leaf`` in dir fd ``parent`` (or, leaf None, on fd ``parent``)."""
        try:
            if leaf is None:
                os.setxattr(parent, attr, value)
            else:
                os.setxattr(f"/proc/self/fd/{parent}/{leaf}", attr, value,
                            follow_symlinks=False)
        except OSError as e:
            self.warn(f"layer {self.layer} entry {name!r}: xattr {attr} not set: "
                      f"{_os_message(e)}")

    def finish_dirs(self):
        """Apply owners, modes and mtimes of directories, deepest first."""
        for key in sorted(self._dirs, key=len, reverse=True):
            entry = self._dirs[key]
            parts = list(key)
            try:
                if parts:
                    parent = self._open_parent(parts)
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
                    os.fchown(fd, entry.uid, entry.gid)
                except PermissionError:
                    self._chown_failed += 1
                os.fchmod(fd, entry.mode & 0o7777)
                os.utime(fd, ns=(entry.mtime_ns, entry.mtime_ns))
            except OSError as e:
                raise self._error(entry.name, _os_message(e)) from None
            finally:
                os.close(fd)


def _open_dir(fd, parts, i, create):
    """Open directory ``parts[i]`` in dir fd ``fd`` without following a symlink."""
    part = parts[i]
    try:
        return os.open(part, _O_DIR, dir_fd=fd)
    except FileNotFoundError:
        if not create:
            raise _Refused(f"'{'/'.join(parts[:i + 1])}' does not exist") from None
        os.mkdir(part, 0o755, dir_fd=fd)
        return os.open(part, _O_DIR, dir_fd=fd)
    except OSError as e:
        if e.errno not in (errno.ENOTDIR, errno.ELOOP):
            raise
        if stat.S_ISLNK(os.lstat(part, dir_fd=fd).st_mode):
            raise _Refused("path leaves the layer (through symlink "
                           f"'{'/'.join(parts[:i + 1])}')") from None
        raise _Refused(f"parent '{'/'.join(parts[:i + 1])}' is not a directory") from None


def _is_whiteout(st):
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(0, 0)


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

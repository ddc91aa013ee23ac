"""A lean reader of tar streams, for unpacking layers: headers parsed straight from bytes.

tarfile builds each TarInfo through several layers of Python and, in stream mode, reads
through buffering classes of its own; unpacking a layer of a few thousand files spent
most of its time there. This reader knows the formats layer tars use: POSIX ustar, pax
extended headers (per entry and global), GNU long names and long link names, GNU
base-256 numbers. Sparse entries are refused. Like Go's archive/tar (which writes
Docker's layers), entries of the header-only types (links, directories, devices, fifos)
carry no content whatever their size field says.

``TarReader(next_chunk)`` reads from ``next_chunk()``, a function returning the next
bytes of the uncompressed stream (b"" at its end). ``next_entry()`` returns an ``Entry``
or None at the end of the archive; the caller may copy the entry's content to a file
descriptor with ``copy_content(fd)``; whatever it does not read is skipped.
"""

import os

BLOCK = 512
ZERO_BLOCK = bytes(BLOCK)
# Extended headers (pax records, GNU long names) are held in memory: a crafted layer
# must not make the host allocate gigabytes for one.
MAX_EXTENDED = 8 * 1024 * 1024

REGULAR, DIRECTORY, SYMLINK, HARDLINK, CHARDEV, BLOCKDEV, FIFO = (
    "regular", "directory", "symlink", "hardlink", "chardev", "blockdev", "fifo")
_TYPES = {b"0": REGULAR, b"\0": REGULAR, b"7": REGULAR, b"1": HARDLINK, b"2": SYMLINK,
          b"3": CHARDEV, b"4": BLOCKDEV, b"5": DIRECTORY, b"6": FIFO}
_HEADER_ONLY = (HARDLINK, SYMLINK, CHARDEV, BLOCKDEV, DIRECTORY, FIFO)
XATTR_PREFIXES = ("SCHILY.xattr.",)


class TarError(Exception):
    """The stream is not a valid tar archive (or uses a feature layers must not)."""


class Entry:
    """One archive member: what its headers say, after pax and GNU extensions."""

    __slots__ = ("name", "type", "mode", "uid", "gid", "size", "mtime_ns", "linkname",
                 "devmajor", "devminor", "xattrs", "typeflag")

    def __repr__(self):
        return f"Entry({self.name!r}, {self.type})"


def _text(field):
    """A NUL-terminated header string, decoded as tarfile does (UTF-8, raw bytes kept)."""
    return field.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def _number(field, what):
    """An octal (ustar) or base-256 (GNU) header number."""
    if field[:1] and field[0] & 0x80:
        if field[0] == 0xFF:  # a negative number, two's complement
            return int.from_bytes(field, "big", signed=True)
        return int.from_bytes(bytes([field[0] & 0x7F]) + field[1:], "big")
    text = field.split(b"\0", 1)[0].strip(b" ")
    if not text:
        return 0
    try:
        return int(text, 8)
    except ValueError:
        raise TarError(f"bad {what} field {bytes(field)!r}") from None


def _checksum_ok(block):
    stored = _number(block[148:156], "checksum")
    # The checksum is the sum of the header bytes, its own field counted as spaces;
    # some old writers summed signed chars.
    unsigned = sum(block) - sum(block[148:156]) + 8 * 0x20
    if stored == unsigned:
        return True
    high = sum(1 for byte in block[:148] + block[156:] if byte > 0x7F)
    return stored == unsigned - 256 * high


def _pax_records(data):
    """{key: value bytes} of a pax extended header's "LEN key=value\\n" records."""
    records = {}
    pos = 0
    while pos < len(data):
        if data[pos] == 0:  # padding after the last record
            break
        space = data.find(b" ", pos)
        try:
            length = int(data[pos:space]) if space > pos else 0
        except ValueError:
            length = 0
        end = pos + length
        if length <= 0 or end > len(data) or data[end - 1:end] != b"\n":
            raise TarError("bad pax extended header record")
        key, sep, value = data[space + 1:end - 1].partition(b"=")
        if not sep:
            raise TarError("bad pax extended header record")
        records[key.decode("utf-8", "surrogateescape")] = value
        pos = end
    return records


def _time_ns(text):
    """A pax time ("1700000000.123456789", maybe negative) in nanoseconds, exactly."""
    negative = text.startswith("-")
    whole, _, fraction = text.lstrip("-").partition(".")
    if not whole.isdigit() or (fraction and not fraction.isdigit()):
        raise TarError(f"bad pax mtime {text!r}")
    ns = int(whole) * 1_000_000_000 + int((fraction + "000000000")[:9])
    return -ns if negative else ns


class TarReader:
    """Entries of a tar stream read from ``next_chunk()``."""

    def __init__(self, next_chunk):
        self._next_chunk = next_chunk
        self._buf = b""
        self._pos = 0
        self._remaining = 0  # content bytes of the current entry not read yet
        self._padding = 0  # zero bytes after that content, up to the next block
        self._globals = {}
        self._ended = False

    # --- bytes ----------------------------------------------------------------------------

    def _fill(self):
        """Make unread bytes available; False at the end of the stream."""
        while self._pos >= len(self._buf):
            chunk = self._next_chunk()
            if not chunk:
                return False
            self._buf, self._pos = chunk, 0
        return True

    def _read(self, n):
        """Exactly ``n`` bytes; b"" when the stream ends right here; TarError if inside."""
        end = self._pos + n
        if end <= len(self._buf):
            data = self._buf[self._pos:end]
            self._pos = end
            return data
        parts = []
        while n:
            if not self._fill():
                if parts:
                    raise TarError("the stream ends inside a header or entry")
                return b""
            take = self._buf[self._pos:self._pos + n]
            self._pos += len(take)
            n -= len(take)
            parts.append(take)
        return b"".join(parts)

    def _skip(self, n):
        while n:
            if not self._fill():
                raise TarError("the stream ends inside an entry")
            take = min(n, len(self._buf) - self._pos)
            self._pos += take
            n -= take

    def copy_content(self, fd):
        """Write the current entry's unread content to ``fd``; return the bytes written."""
        written = 0
        while self._remaining:
            if not self._fill():
                raise TarError("the stream ends inside an entry")
            take = min(self._remaining, len(self._buf) - self._pos)
            view = memoryview(self._buf)[self._pos:self._pos + take]
            while view:
                view = view[os.write(fd, view):]
            self._pos += take
            self._remaining -= take
            written += take
        return written

    # --- headers --------------------------------------------------------------------------

    def _extended_data(self, size, what):
        if size > MAX_EXTENDED:
            raise TarError(f"{what} of {size} bytes (more than {MAX_EXTENDED})")
        data = self._read(size) if size else b""
        if len(data) != size:
            raise TarError("the stream ends inside an extended header")
        self._skip(-size % BLOCK)
        return data

    def next_entry(self):
        """The next member, or None at the end of the archive."""
        self._skip(self._remaining + self._padding)
        self._remaining = self._padding = 0
        if self._ended:
            return None
        pax = {}
        long_name = long_link = None
        while True:
            block = self._read(BLOCK)
            if not block or block == ZERO_BLOCK:
                self._ended = True  # the rest (a second zero block, padding) is not read
                if pax or long_name is not None or long_link is not None:
                    raise TarError("the archive ends after an extended header")
                return None
            if not _checksum_ok(block):
                raise TarError("bad header checksum")
            flag = block[156:157]
            size = _number(block[124:136], "size")
            if size < 0:
                raise TarError("negative size")
            if flag == b"x":
                pax.update(_pax_records(self._extended_data(size, "pax header")))
            elif flag == b"g":
                self._globals.update(_pax_records(self._extended_data(size, "pax header")))
            elif flag == b"L":
                long_name = _text(self._extended_data(size, "GNU long name"))
            elif flag == b"K":
                long_link = _text(self._extended_data(size, "GNU long link name"))
            elif flag == b"S":
                raise TarError("sparse files are not supported in layers")
            else:
                entry = self._entry(block, flag, size, dict(self._globals, **pax),
                                    long_name, long_link)
                data = 0 if entry.type in _HEADER_ONLY else entry.size
                self._remaining, self._padding = data, -data % BLOCK
                return entry

    def _entry(self, block, flag, size, pax, long_name, long_link):
        entry = Entry()
        name = _text(block[0:100])
        if block[257:263] == b"ustar\0":  # POSIX: the name may continue in the prefix
            prefix = _text(block[345:500])
            if prefix:
                name = prefix + "/" + name
        if long_name is not None:
            name = long_name
        linkname = long_link if long_link is not None else _text(block[157:257])
        entry.typeflag = flag.decode("latin-1")
        entry.type = _TYPES.get(flag, "other")
        entry.mode = _number(block[100:108], "mode")
        entry.uid = _number(block[108:116], "uid")
        entry.gid = _number(block[116:124], "gid")
        entry.size = size
        entry.mtime_ns = _number(block[136:148], "mtime") * 1_000_000_000
        entry.devmajor = _number(block[329:337], "devmajor")
        entry.devminor = _number(block[337:345], "devminor")
        entry.xattrs = {}
        for key, value in pax.items():
            if not value and key in ("path", "linkpath", "size", "uid", "gid", "mtime"):
                continue  # an empty value takes a global one back
            if key == "path":
                name = value.decode("utf-8", "surrogateescape")
            elif key == "linkpath":
                linkname = value.decode("utf-8", "surrogateescape")
            elif key in ("size", "uid", "gid"):
                try:
                    setattr(entry, key, int(value))
                except ValueError:
                    raise TarError(f"bad pax {key} {value!r}") from None
            elif key == "mtime":
                entry.mtime_ns = _time_ns(value.decode("ascii", "replace"))
            elif key.startswith("GNU.sparse."):
                raise TarError("sparse files are not supported in layers")
            elif key.startswith(XATTR_PREFIXES):
                entry.xattrs[key.split(".", 2)[2]] = value
        if entry.type == REGULAR and flag == b"\0" and name.endswith("/"):
            entry.type = DIRECTORY  # old tars wrote directories as files named DIR/
        if entry.type == DIRECTORY:
            name = name.rstrip("/")
        if entry.size < 0:
            raise TarError("negative size")
        entry.name = name
        entry.linkname = linkname
        return entry

"""copy: put a file's content on the host, as Ansible's copy module does.

The content comes from the controller: ``src`` names a file there and ``content`` is
literal text, and both are read by the controller, never on the host. The controller
sends what it has as ``_digests`` (its BLAKE2b-256, SHA-1 and SHA-256, hex; see
digests.py) and ``_size`` (bytes), plus ``_basename`` (the name of ``src``) when there
is one. The host compares that with ``dest`` and asks for the bytes only when they
differ:

1. ``dest`` already holds content with that size and BLAKE2b digest (hashed in chunks):
   only mode, owner and group are fixed; no content is asked for.
2. Otherwise, in check mode the task is changed and nothing is asked for.
3. Otherwise the host sends a progress event ``{"need_content": true, "dest", "size"}``
   and reads the bytes from the request's input stream up to its EOF, into a temp file
   next to ``dest`` (same filesystem), checking size and digest as they come. A mismatch
   fails the task and removes the temp file, leaving ``dest`` as it was. Else the temp
   file gets its mode, owner and group, is validated, fsynced, and renamed over
   ``dest``. Large files go through in chunks and are never held in memory.

Inline ``content`` without ``_digests`` is also accepted (direct use; small texts).

Options:
  src: the file on the controller (read there; accepted here for validation only).
  content: the text to write instead of a src file; a mapping or list becomes JSON.
  dest: the path on the host. Required. When it ends with "/" or is a directory the
      file goes inside it under ``_basename`` (a missing directory ending in "/" is
      created, with directory_mode, owner and group).
  mode: permissions of the file: octal (``"0644"``, ``"644"``, ``0o644``), an int, or
      symbolic (``u+x,g-w,o=r``, relative to the existing file's mode, or to
      0666 minus the umask for a new file). Without mode an existing file keeps its
      mode and a new one gets 0666 minus the umask. ``preserve`` must be turned into
      the source's mode by the controller.
  owner, group: user and group (names or ids) of the file; an existing file's are kept
      otherwise (as far as permissions allow).
  force: replace a dest whose content differs (default yes); with no, an existing dest
      is left alone entirely (alias: thirsty).
  backup: keep the old file as ``dest.PID.YYYY-MM-DD@HH:MM:SS~`` (result: backup_file).
  follow: when dest is a symlink, write to its target (default no: replace the link).
  directory_mode: mode of directories created for a dest ending in "/".
  validate: a command run on the temp file before it replaces dest, with %s standing
      for its path (``visudo -cf %s``); a non-zero exit fails the task.
  checksum: the SHA1 the content must have (Ansible's transfer check).
  local_follow: whether the controller follows symlinks in src (controller side).
  _digests, _size, _basename: sent by the controller (see above).

Check mode reports what would change and changes nothing. Diff mode, when the content
changes, returns ``diff: {before_header, after_header, before, after}`` with the text
of both when each is under 64 KiB of UTF-8 (otherwise a one-line summary and Ansible's
``dst_binary``/``dst_larger``/``src_binary``/``src_larger`` flags); in check mode the new
content is not transferred, so ``after`` is a summary. Attribute changes are a
``{before, after}`` diff of mode/owner/group; when both change, ``diff`` is a list of
the two.

Returns dest, checksum (sha1, as Ansible), sha256, size, mode, owner, group, uid, gid,
state and backup_file when a backup was made.
"""

import os
import stat
import time

from agent_payload import digests, jsonwire, syscalls
from agent_payload.modules._fileattrs import (
    Failure,
    apply_attrs,
    check_mode_value,
    create_temp_file,
    current_umask,
    expand,
    failed,
    missing_dirs,
    path_info,
    reason,
)
from agent_payload.threads import InputTimeout

ARGUMENT_SPEC = {
    "src": {"type": "path"},
    "content": {"type": "raw", "no_log": True},
    "dest": {"type": "path", "required": True},
    "mode": {"type": "raw"},
    "owner": {"type": "str"},
    "group": {"type": "str"},
    "force": {"type": "bool", "default": True, "aliases": ["thirsty"]},
    "backup": {"type": "bool", "default": False},
    "follow": {"type": "bool", "default": False},
    "directory_mode": {"type": "raw"},
    "validate": {"type": "str"},
    "checksum": {"type": "str"},
    "local_follow": {"type": "bool", "default": True},
    "_digests": {"type": "dict"},
    "_size": {"type": "int"},
    "_basename": {"type": "str"},
}

CHUNK = 1024 * 1024
DIFF_LIMIT = 64 * 1024  # bytes: larger content gets a summary in diffs
READ_POLL = 1.0  # seconds between looks at the cancel flag while waiting for content
IDLE_LIMIT = 300  # seconds without a chunk before giving up on the controller


class _Source:
    """What the content should be: its digests and size, and the bytes when inline."""

    def __init__(self, hexdigests, size, data=None):
        self.blake2b = hexdigests["blake2b"]
        self.sha1 = hexdigests["sha1"]
        self.sha256 = hexdigests["sha256"]
        self.size = size
        self.data = data


def _source(params):
    sent = params.get("_digests")
    if sent is not None:
        problem = digests.problem(sent)
        if problem:
            raise Failure(f"_digests for {params['dest']}: {problem}")
        size = params.get("_size")
        if size is not None and size < 0:
            raise Failure(f"_size for {params['dest']} is negative")
        return _Source(sent, size)
    content = params.get("content")
    if content is None:
        raise Failure(f"copy to {params['dest']} needs content (src is read by the "
                      "controller, which sends _checksum and _size)")
    if isinstance(content, (dict, list)):
        content = jsonwire.dumps(content)
    data = content if isinstance(content, bytes) else str(content).encode()
    return _Source(digests.of_bytes(data), len(data), data)


def _hash_file(path, ctx):
    """The comparison digest of a file, read in chunks; cancellable."""
    digest = digests.comparer()
    try:
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(CHUNK), b""):
                digest.update(chunk)
                ctx.check_cancelled()
    except OSError as exc:
        raise Failure(f"cannot read {path}: {reason(exc)}") from None
    return digest.hexdigest()


def _as_text(data):
    """The text of small UTF-8 bytes without NULs, else None."""
    if data is None or len(data) > DIFF_LIMIT or b"\0" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _summary(size, digest):
    return f"(binary or large content: {size} bytes, sha256 {digest})"


def _before(dest, path, st):
    """The ``before`` half of a content diff: dest's text, or a summary and a flag."""
    diff = {"before_header": dest, "after_header": dest}
    if st is None or not stat.S_ISREG(st.st_mode):
        diff["before"] = ""
    elif st.st_size > DIFF_LIMIT:
        diff["before"] = f"(large file: {st.st_size} bytes)"
        diff["dst_larger"] = DIFF_LIMIT
    else:
        try:
            with open(path, "rb") as handle:
                old = handle.read(DIFF_LIMIT + 1)
        except OSError:
            old = None
        text = _as_text(old)
        if text is None:
            diff["before"] = f"(binary file: {st.st_size} bytes)"
            diff["dst_binary"] = 1
        else:
            diff["before"] = text
    return diff


def _after(diff, source, data, check_mode):
    """Complete a content diff with the new content's text, or a summary and a flag."""
    text = _as_text(data)
    if text is not None:
        diff["after"] = text
    elif data is None and check_mode:
        diff["after"] = ("(content not transferred in check mode: "
                         f"{source.size} bytes, sha256 {source.sha256})")
    else:
        diff["after"] = _summary(source.size, source.sha256)
        if source.size is not None and source.size > DIFF_LIMIT:
            diff["src_larger"] = DIFF_LIMIT
        else:
            diff["src_binary"] = 1
    return diff


def _make_dirs(directory, mode, owner, group, warnings):
    """Create ``directory`` and its missing parents, each with the attributes asked for."""
    for path in missing_dirs(directory):
        try:
            os.mkdir(path)
        except FileExistsError:
            pass
        except OSError as exc:
            raise Failure(f"cannot create directory {path}: {reason(exc)}") from None
        apply_attrs(path, mode, owner, group, False, None, warnings)


def _chunks(ctx, source, dest):
    """The content: inline bytes, or the request's input stream after asking for it."""
    if source.data is not None:
        yield source.data
        return
    ctx.progress(need_content=True, dest=dest, size=source.size)
    idle = 0.0
    while True:
        ctx.check_cancelled()
        try:
            chunk = ctx.read_data(timeout=READ_POLL)
        except InputTimeout:
            idle += READ_POLL
            if idle >= IDLE_LIMIT:
                raise Failure(f"no content for {dest} from the controller "
                              f"within {IDLE_LIMIT}s") from None
            continue
        idle = 0.0
        if not chunk:
            ctx.check_cancelled()  # a cancel also ends the stream
            return
        yield chunk


def _receive(ctx, source, dest, fd, keep):
    """Write the content to ``fd``; return (its digest, size, bytes kept for a diff)."""
    digest = digests.comparer()
    size = 0
    kept = bytearray() if keep else None
    for chunk in _chunks(ctx, source, dest):
        size += len(chunk)
        if source.size is not None and size > source.size:
            raise Failure(f"content for {dest} is larger than the announced "
                          f"{source.size} bytes")
        digest.update(chunk)
        if kept is not None and len(kept) <= DIFF_LIMIT:
            kept += chunk[:DIFF_LIMIT + 1 - len(kept)]
        view = memoryview(chunk)
        while view:
            view = view[os.write(fd, view):]
    return digest.hexdigest(), size, None if kept is None else bytes(kept)


def _validate(ctx, validate, tmp, dest):
    import shlex  # only validate needs these; the payload keeps its start-up small

    from agent_payload.modules import command
    args = shlex.split(validate.replace("%s", shlex.quote(tmp)))
    outcome = command.execute({}, ctx, args)
    if outcome.get("rc") != 0:
        lines = (outcome.get("stderr") or outcome.get("stdout") or outcome.get("msg") or "")
        last = lines.strip().splitlines()[-1] if lines.strip() else f"rc {outcome.get('rc')}"
        raise Failure(f"failed to validate {dest}: {last}", exit_status=outcome.get("rc"),
                      stdout=outcome.get("stdout"), stderr=outcome.get("stderr"))


def _backup(target):
    """Copy ``target`` aside as Ansible names backups; return the backup's path."""
    backup = "{}.{}.{}".format(target, os.getpid(), time.strftime("%Y-%m-%d@%H:%M:%S~"))
    try:
        import shutil
        shutil.copy2(target, backup)
    except OSError as exc:
        raise Failure(f"cannot back up {target} to {backup}: {reason(exc)}") from None
    return backup


def _write(ctx, params, source, dest, target, st, attrs, result):
    """Stream the content into a temp file beside ``target`` and rename it over."""
    directory = os.path.dirname(target) or "."
    try:
        fd, tmp = create_temp_file(directory, ".fleet-copy-")
    except OSError as exc:
        raise Failure(f"cannot create a temp file in {directory}: {reason(exc)}") from None
    regular = st is not None and stat.S_ISREG(st.st_mode)
    try:
        try:
            digest, size, kept = _receive(ctx, source, dest, fd, ctx.diff_mode)
            if source.size is not None and size != source.size:
                raise Failure(f"content for {dest} is {size} bytes, "
                              f"expected {source.size}")
            if digest != source.blake2b:
                raise Failure(f"checksum mismatch for {dest}: expected blake2b "
                              f"{source.blake2b}, got {digest}")
            _check_sha1(params, source.sha1, dest)
            os.fchmod(fd, stat.S_IMODE(st.st_mode) if regular
                      else 0o666 & ~attrs["umask"])
            if regular:
                try:
                    os.fchown(fd, st.st_uid, st.st_gid)
                except PermissionError:
                    pass
            os.fsync(fd)
        finally:
            os.close(fd)
        attr_diff = {} if regular else None
        try:
            apply_attrs(tmp, attrs["mode"], params.get("owner"), params.get("group"), False,
                        attr_diff, attrs["warnings"], attrs["umask"])
        except Failure as exc:
            raise Failure(str(exc).replace(tmp, dest)) from None
        if params.get("validate"):
            _validate(ctx, params["validate"], tmp, dest)
        if params["backup"] and regular:
            result["backup_file"] = _backup(target)
        try:
            os.rename(tmp, target)
        except OSError as exc:
            raise Failure(f"cannot rename a temp file over {target}: {reason(exc)}") from None
        tmp = None
        try:
            syscalls.fsync_dir(directory)
        except OSError:
            pass  # the file is in place; a directory that refuses fsync changes nothing
    except OSError as exc:
        raise Failure(f"cannot write {dest}: {reason(exc)}") from None
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
    result.update(checksum=source.sha1, sha256=source.sha256, size=size)
    return kept, attr_diff


def _check_sha1(params, sha1, dest):
    wanted = params.get("checksum")
    if wanted and wanted.strip().lower() != sha1:
        raise Failure(f"Copied file does not match the expected checksum for {dest}. "
                      "Transfer failed.")


def _destination(params, ctx, dest, dir_mode, warnings):
    """(dest, whether a missing directory would be created) once _basename is applied."""
    if not (dest.endswith("/") or os.path.isdir(dest)):
        return dest, False
    base = params.get("_basename")
    if not base:
        raise Failure(f"dest {dest} is a directory: content needs a file name "
                      "(the controller sends _basename for a src)")
    if "/" in base or base in (".", ".."):
        raise Failure(f"_basename {base!r} for {dest} is not a file name")
    would_create = False
    if dest.endswith("/") and not os.path.lexists(dest.rstrip("/") or "/"):
        if ctx.check_mode:
            would_create = True
        else:
            _make_dirs(dest, dir_mode, params.get("owner"), params.get("group"), warnings)
    return os.path.join(dest, base), would_create


def run(params, ctx):
    """Make ``dest`` hold the content, asking the controller for it only if needed."""
    dest = expand(params["dest"])
    result = {"dest": dest}
    warnings = []
    try:
        source = _source(dict(params, dest=dest))
        attrs = {"mode": check_mode_value(params.get("mode"), dest),
                 "umask": current_umask(), "warnings": warnings}
        dir_mode = check_mode_value(params.get("directory_mode"), dest)
        if params.get("validate") is not None and "%s" not in params["validate"]:
            raise Failure(f"validate must contain %s: {params['validate']} (dest {dest})")
        dest, created = _destination(params, ctx, dest, dir_mode, warnings)
        result["dest"] = dest
        directory = os.path.dirname(dest) or "."
        if not created and not os.path.isdir(directory):
            raise Failure(f"Destination directory {directory} does not exist")
        target = dest
        if params["follow"] and os.path.islink(dest):
            target = os.path.realpath(dest)
        try:
            st = None if created else os.lstat(target)
        except FileNotFoundError:
            st = None
        except OSError as exc:
            raise Failure(f"cannot stat {target}: {reason(exc)}") from None
        if st is not None and stat.S_ISDIR(st.st_mode):
            raise Failure(f"dest {dest} is a directory")
        if st is not None and not (stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode)):
            raise Failure(f"dest {dest} exists and is not a regular file")
        if st is not None and not params["force"]:
            result.update(changed=False, msg="file already exists")
            return result
        same = (st is not None and stat.S_ISREG(st.st_mode)
                and (source.size is None or st.st_size == source.size))
        if same:
            same = _hash_file(target, ctx) == source.blake2b
        if same:
            _check_sha1(params, source.sha1, dest)
            diff = {}
            changed = apply_attrs(target, attrs["mode"], params.get("owner"),
                                  params.get("group"), ctx.check_mode, diff, warnings,
                                  attrs["umask"])
            result.update(changed=changed, checksum=source.sha1, sha256=source.sha256,
                          size=st.st_size)
            result.update(_public(path_info(target)))
            if ctx.diff_mode and diff:
                result["diff"] = diff
        else:
            diff = _before(dest, target, st) if ctx.diff_mode else None
            if ctx.check_mode:
                result.update(changed=True, sha256=source.sha256, size=source.size)
                if diff is not None:
                    result["diff"] = _after(diff, source, source.data, True)
            else:
                kept, attr_diff = _write(ctx, params, source, dest, target, st, attrs,
                                         result)
                result["changed"] = True
                result.update(_public(path_info(target)))
                if diff is not None:
                    _after(diff, source, kept, False)
                    result["diff"] = [diff, attr_diff] if attr_diff else diff
    except Failure as exc:
        return failed(exc, **result)
    if warnings:
        result["warnings"] = warnings
    return result


def _public(info):
    info["state"] = "file"
    return info

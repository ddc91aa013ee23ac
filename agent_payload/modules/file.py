"""file: files, directories, links and their attributes, as Ansible's file module does.

Options:
  path: the path to manage (aliases: dest, name). Required.
  state: what ``path`` should be:
      file: an existing regular file (never created; fails when absent) whose
          attributes are set;
      directory: a directory, created with its missing parents (each new one gets
          mode, owner and group);
      link: a symlink to ``src``; hard: a hard link to ``src``;
      touch: created when absent, its times set to now (so always changed, unless
          both times are ``preserve``);
      absent: removed (a directory with everything under it).
      Default: the current state when ``path`` exists, else directory with recurse,
      else file.
  mode: permissions: octal (``"0644"``, ``"644"``, ``0o644``), an int, or symbolic
      (``u+x,g-w,o=r``, ``a+X``, ``u=rw,go=r``); symbolic modes are relative to the
      current mode.
  owner: user name or uid. group: group name or gid.
  src: the link target (link: taken as is, relative to the link's directory when
      relative; hard: an existing path).
  recurse: with state=directory, set mode, owner, group (and times) on everything
      under path as well (symlinks themselves are lchown'ed; with follow their targets
      get the attributes too; linked directories are not descended).
  force: link: replace a file or an empty directory with the link, and create a link
      to a src that does not exist; hard: replace a file or another hard link.
  follow: when path is a symlink, set attributes on its target (default yes).
  modification_time, access_time: ``now``, ``preserve`` or a time in
      modification_time_format / access_time_format (default ``%Y%m%d%H%M.%S``).
      Default: preserve, except touch: now.

Check mode reports what would change and changes nothing. Diff mode returns
``diff: {before, after}`` with the path, the state when it changes, the attributes
that change (mode as ``0644``, owner and group as ids, times) and, when a directory is
removed, what it held.

Returns path (dest too for link, hard and touch), state, mode, owner, group, uid, gid,
size and, for links, src.
"""

import os
import time

from agent_payload.modules._fileattrs import (
    Failure,
    apply_attrs,
    check_mode_value,
    current_umask,
    expand,
    failed,
    missing_dirs,
    note,
    path_info,
    reason,
    state_of,
)

STATES = ["absent", "directory", "file", "hard", "link", "touch"]
TIME_FORMAT = "%Y%m%d%H%M.%S"

ARGUMENT_SPEC = {
    "path": {"type": "path", "required": True, "aliases": ["dest", "name"]},
    "state": {"type": "str", "choices": STATES},
    "mode": {"type": "raw"},
    "owner": {"type": "str"},
    "group": {"type": "str"},
    "src": {"type": "path"},
    "recurse": {"type": "bool", "default": False},
    "force": {"type": "bool", "default": False},
    "follow": {"type": "bool", "default": True},
    "modification_time": {"type": "str"},
    "modification_time_format": {"type": "str", "default": TIME_FORMAT},
    "access_time": {"type": "str"},
    "access_time_format": {"type": "str", "default": TIME_FORMAT},
}

NOW = "now"
# Entries listed in the diff of a removed directory, at most.
LISTING_LIMIT = 1000


def _time_value(text, fmt, state):
    """None (preserve), NOW, or seconds since the epoch."""
    if text is None:
        text = "now" if state == "touch" else "preserve"
    if text == "preserve":
        return None
    if text == "now":
        return NOW
    try:
        return time.mktime(time.strptime(text, fmt))
    except (ValueError, OverflowError) as exc:
        raise Failure(f"Error while obtaining timestamp for time {text} using format "
                      f"{fmt}: {exc}") from None


class _Job:
    """One file task: its options, check mode, the diff and warnings being collected."""

    def __init__(self, params, ctx, path, state):
        self.params = params
        self.check = ctx.check_mode
        self.follow = params["follow"]
        self.force = params["force"]
        self.mode = check_mode_value(params.get("mode"), path)
        self.owner = params.get("owner")
        self.group = params.get("group")
        self.mtime = _time_value(params.get("modification_time"),
                                 params["modification_time_format"], state)
        self.atime = _time_value(params.get("access_time"),
                                 params["access_time_format"], state)
        self.umask = current_umask()
        self.warnings = []
        self.diff = {"before": {"path": path}, "after": {"path": path}}

    def start_diff(self, prev, state):
        if prev != state:
            self.diff["before"]["state"] = prev
            self.diff["after"]["state"] = state

    def target(self, path):
        """``path``, or with follow the file a symlink at ``path`` points to."""
        if self.follow and os.path.islink(path):
            return os.path.realpath(path)
        return path

    def attrs(self, path, diff=True):
        """Set owner, group, mode and times on ``path``; True when changed."""
        changed = apply_attrs(path, self.mode, self.owner, self.group, self.check,
                              self.diff if diff else None, self.warnings, self.umask)
        return self.times(path, diff) or changed

    def times(self, path, diff=True):
        if self.mtime is None and self.atime is None:
            return False
        try:
            st = os.lstat(path)
        except OSError as exc:
            raise Failure(f"cannot stat {path}: {reason(exc)}") from None
        now = time.time()
        mtime = st.st_mtime if self.mtime is None else (now if self.mtime == NOW else self.mtime)
        atime = st.st_atime if self.atime is None else (now if self.atime == NOW else self.atime)
        if mtime == st.st_mtime and atime == st.st_atime:
            return False
        if diff:
            if mtime != st.st_mtime:
                note(self.diff, "mtime", st.st_mtime, mtime)
            if atime != st.st_atime:
                note(self.diff, "atime", st.st_atime, atime)
        if not self.check:
            try:
                os.utime(path, (atime, mtime), follow_symlinks=False)
            except OSError as exc:
                raise Failure(f"Error while updating modification or access time of "
                              f"{path}: {reason(exc)}") from None
        return True


def _listing(path):
    """Ansible's path_content of a directory about to be removed (capped)."""
    content = {"directories": [], "files": []}
    for root, dirs, files in os.walk(path):
        content["directories"] += [os.path.join(root, d) for d in dirs]
        content["files"] += [os.path.join(root, f) for f in files]
        if len(content["directories"]) + len(content["files"]) > LISTING_LIMIT:
            content["truncated"] = True
            break
    return content


def ensure_absent(job, path):
    prev = state_of(path)
    if prev == "absent":
        return {"changed": False}
    job.start_diff(prev, "absent")
    if prev == "directory":
        job.diff["before"]["path_content"] = _listing(path)
    if not job.check:
        try:
            if prev == "directory":
                import shutil
                shutil.rmtree(path)
            else:
                os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            where = getattr(exc, "filename", None) or path
            raise Failure(f"cannot remove {where}: {reason(exc)}") from None
    return {"changed": True}


def ensure_file(job, path):
    prev = state_of(path)
    target = path
    if prev == "link" and job.follow:
        target = os.path.realpath(path)
        prev = state_of(target)
    if prev not in ("file", "hard"):
        raise Failure(f"file ({path}) is {prev}, cannot continue", state=prev)
    return {"changed": job.attrs(target), "_info": target}


def ensure_directory(job, path):
    prev = state_of(path)
    target = path
    if prev == "link" and job.follow:
        target = os.path.realpath(path)
        prev = state_of(target)
    job.start_diff(prev, "directory")
    if prev == "absent":
        if job.check:
            return {"changed": True}
        for directory in missing_dirs(target):
            try:
                os.mkdir(directory)
            except FileExistsError:
                if not os.path.isdir(directory):
                    raise Failure(f"cannot create directory {directory}: "
                                  "it exists and is not a directory") from None
            except OSError as exc:
                raise Failure(f"cannot create directory {directory}: {reason(exc)}") from None
            apply_attrs(directory, job.mode, job.owner, job.group, False, None,
                        job.warnings, job.umask)
        job.attrs(target)
        return {"changed": True, "_info": target}
    if prev != "directory":
        raise Failure(f"{path} already exists as a {prev}")
    changed = job.attrs(target)
    if job.params["recurse"]:
        changed = _recurse(job, target) or changed
    return {"changed": changed, "_info": target}


def _recurse(job, top):
    """Attributes on everything under ``top``; True when anything changed."""
    changed = False
    for root, dirs, files in os.walk(top):
        for name in dirs + files:
            entry = os.path.join(root, name)
            changed = job.attrs(entry, diff=False) or changed
            if os.path.islink(entry) and job.follow and os.path.exists(entry):
                changed = job.attrs(os.path.realpath(entry), diff=False) or changed
    return changed


def _replace(path, make, prev):
    """Put what ``make(tmp)`` creates at ``path`` atomically (through a temp name)."""
    tmp = os.path.join(os.path.dirname(path), f".{os.getpid()}.{time.time():f}.fleet.tmp")
    try:
        if prev == "directory":
            os.rmdir(path)
        make(tmp)
        os.rename(tmp, path)
    except OSError as exc:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        raise Failure(f"Error while replacing {path}: {reason(exc)}") from None


def ensure_link(job, path, src):
    prev = state_of(path)
    if src is None and prev == "link" and job.follow:
        src = os.readlink(path)
    if prev == "directory":
        base = path
    else:
        base = os.path.dirname(path)
    if src is not None and not job.force and not os.path.exists(os.path.join(base, src)):
        raise Failure("src file does not exist, use 'force=yes' if you really want to create "
                      f"the link: {os.path.join(base, src)}", src=src)
    if prev == "directory":
        if not job.force:
            raise Failure(f"refusing to convert from directory to symlink for {path}")
        if os.listdir(path):
            raise Failure(f"the directory {path} is not empty, refusing to convert it")
    elif prev in ("file", "hard") and not job.force:
        raise Failure(f"refusing to convert from {prev} to symlink for {path}")
    job.start_diff(prev, "link")
    changed = False
    if prev != "link":
        if src is None:
            raise Failure(f"src is required for creating new symlinks ({path})")
        changed = True
    elif src is not None:
        old = os.readlink(path)
        if old != src:
            note(job.diff, "src", old, src)
            changed = True
    if changed and not job.check:
        if prev == "absent":
            try:
                os.symlink(src, path)
            except OSError as exc:
                raise Failure(f"Error while linking {path}: {reason(exc)}") from None
        else:
            _replace(path, lambda tmp: os.symlink(src, tmp), prev)
    result = {"changed": changed, "dest": path, "src": src}
    if job.check and not os.path.lexists(path):
        return result
    if job.follow and os.path.islink(path) and not os.path.exists(path):
        if job.mode is not None or job.owner is not None or job.group is not None:
            job.warnings.append(f"Cannot set fs attributes on a non-existent symlink target "
                                f"({path}); set follow to no to avoid this")
    else:
        changed = job.attrs(job.target(path)) or changed
    result.update(changed=changed, _info=path)
    return result


def ensure_hard(job, path, src):
    prev = state_of(path)
    if prev != "hard" and src is None:
        raise Failure(f"src is required for creating new hardlinks ({path})")
    if src is not None and not os.path.lexists(src):
        raise Failure(f"src {src} does not exist", src=src)
    job.start_diff(prev, "hard")
    changed = False
    if prev == "directory":
        raise Failure(f"Cannot link, directory exists at destination {path}")
    if prev == "link":
        note(job.diff, "src", os.readlink(path), src)
        changed = True
    elif prev in ("file", "hard") and src is not None:
        mine = os.lstat(path)
        theirs = os.stat(src, follow_symlinks=job.follow)
        if (mine.st_ino, mine.st_dev) != (theirs.st_ino, theirs.st_dev):
            if not job.force:
                raise Failure(f"Cannot link, {prev} exists at destination {path}")
            changed = True
    elif prev == "absent":
        changed = True
    if changed and not job.check:
        def make(tmp):
            os.link(src, tmp, follow_symlinks=job.follow)
        if prev == "absent":
            try:
                make(path)
            except OSError as exc:
                raise Failure(f"Error while linking {path}: {reason(exc)}") from None
        else:
            _replace(path, make, prev)
    result = {"changed": changed, "dest": path, "src": src}
    if job.check and not os.path.lexists(path):
        return result
    result.update(changed=job.attrs(path) or changed, _info=path)
    return result


def ensure_touch(job, path):
    prev = state_of(path)
    job.start_diff(prev, "touch")
    if prev == "absent":
        if job.check:
            return {"changed": True, "dest": path}
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except OSError as exc:
            raise Failure(f"Error, could not touch target {path}: {reason(exc)}") from None
    target = job.target(path)
    try:
        changed = job.attrs(target)  # times default to now: always a change
    except Failure:
        if prev == "absent":
            os.unlink(path)
        raise
    return {"changed": changed or prev == "absent", "dest": path, "_info": target}


def run(params, ctx):
    """Make ``path`` what ``state`` says, with the attributes asked for."""
    path = expand(params["path"])
    src = expand(params.get("src"))
    result = {"path": path}
    try:
        prev = state_of(path)
        state = params.get("state")
        if state is None:
            if prev != "absent":
                state = prev
            else:
                state = "directory" if params["recurse"] else "file"
        result["state"] = state
        if params["recurse"] and state != "directory":
            raise Failure(f"recurse option requires state to be 'directory' ({path})")
        if src is not None and state not in ("link", "hard"):
            raise Failure(f"src option requires state to be 'link' or 'hard' ({path})")
        job = _Job(params, ctx, path, state)
        if state == "absent":
            outcome = ensure_absent(job, path)
        elif state == "file":
            outcome = ensure_file(job, path)
        elif state == "directory":
            outcome = ensure_directory(job, path)
        elif state == "link":
            outcome = ensure_link(job, path, src)
        elif state == "hard":
            outcome = ensure_hard(job, path, src)
        else:
            outcome = ensure_touch(job, path)
    except Failure as exc:
        return failed(exc, **result)
    info_path = outcome.pop("_info", None)
    result.update(outcome)
    if info_path is not None:
        # A link reports itself; otherwise what got the attributes (a followed target).
        info = path_info(path if state == "link" else info_path)
        actual = info.pop("state", None)
        if state == "touch" and not ctx.check_mode:
            result["state"] = actual
        result.update(info)
    if job.warnings:
        result["warnings"] = job.warnings
    if ctx.diff_mode and result["changed"]:
        result["diff"] = job.diff
    return result


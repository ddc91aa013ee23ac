"""File attributes shared by the file and copy modules (not a module: no ARGUMENT_SPEC).

Modes as Ansible reads them: an int (``420``, or ``0o644`` written as YAML's ``0644``),
an octal string (``"0644"``, ``"644"``, ``"0o644"``) or a symbolic string
(``"u+x,g-w,o=r"``, with ``X``, ``s``, ``t`` and copying from ``u``/``g``/``o``).
Owners and groups are names or numeric ids. Every failure is a ``Failure`` whose text is
one line naming the path.
"""

import grp
import os
import pwd
import stat

PERM_BITS = 0o7777
_CLAUSE = r"^([ugoa]*)((?:[-+=][rwxXstugo]*)+)$"
_ACTION = r"([-+=])([rwxXstugo]*)"


def _regex():
    # Only symbolic modes need it; the payload keeps re out of its start-up.
    import re
    return re


def _is_octal(text):
    digits = text[2:] if text.startswith("0o") else text
    return bool(digits) and all(c in "01234567" for c in digits)


_CLASS_MASK = {"u": stat.S_IRWXU | stat.S_ISUID,
               "g": stat.S_IRWXG | stat.S_ISGID,
               "o": stat.S_IRWXO | stat.S_ISVTX}
_SHIFT = {"u": 6, "g": 3, "o": 0}


class Failure(Exception):
    """The module fails: str() is the one-line message, ``extra`` goes into the result."""

    def __init__(self, msg, **extra):
        super().__init__(msg)
        self.extra = extra


def failed(exc, **result):
    """The result dict for a Failure (``result`` holds keys already known)."""
    result.update(exc.extra)
    result.update(failed=True, msg=str(exc))
    result.setdefault("changed", False)
    return result


def reason(exc):
    """The short text of an OSError ("No such file or directory")."""
    return exc.strerror or str(exc)


def expand(path):
    """~ and $VARS expanded, as Ansible's ``path`` options are."""
    if path is None:
        return None
    return os.path.expanduser(os.path.expandvars(path))


def create_temp_file(directory, prefix):
    """(fd, path) of a new, empty file with mode 0600 in ``directory``, made as
    tempfile.mkstemp makes it, without importing tempfile (about 7 ms of imports)."""
    for _ in range(100):
        path = os.path.join(directory, prefix + os.urandom(6).hex())
        try:
            return os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600), path
        except FileExistsError:
            continue
    raise FileExistsError(17, "no unused temporary name", directory)


def current_umask():
    """The process umask, read without changing it (os.umask is not thread-safe)."""
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o022


def check_mode_value(value, path=""):
    """Validate a ``mode`` option; return an int, a symbolic string, or None.

    Raises Failure naming ``path`` when the value is neither octal nor symbolic.
    """
    if value is None:
        return None
    where = f" for {path}" if path else ""
    if isinstance(value, bool):
        raise Failure(f"mode {value!r}{where} must be in octal or symbolic form")
    if isinstance(value, int):
        if 0 <= value <= PERM_BITS:
            return value
        raise Failure(f"mode {value!r}{where} is out of range (only permission bits allowed)")
    text = str(value).strip()
    if _is_octal(text):
        mode = int(text[2:] if text.startswith("0o") else text, 8)
        if mode > PERM_BITS:
            raise Failure(f"mode {text!r}{where} is out of range (only permission bits allowed)")
        return mode
    if text and all(_regex().match(_CLAUSE, clause) for clause in text.split(",")):
        return text
    raise Failure(f"mode {text!r}{where} must be in octal or symbolic form")


def _class_bits(who, perms, mode, is_dir, use_umask, umask):
    """The bits ``perms`` stand for in class ``who`` (one of u, g, o)."""
    shift = _SHIFT[who]
    allowed = PERM_BITS & ~umask if use_umask else PERM_BITS
    bits = 0
    for perm in perms:
        if perm in "rwx":
            bit = {"r": 4, "w": 2, "x": 1}[perm] << shift
            bits |= bit & allowed
        elif perm == "X":
            if is_dir or mode & 0o111:
                bits |= 1 << shift
        elif perm == "s":
            bits |= {"u": stat.S_ISUID, "g": stat.S_ISGID, "o": 0}[who]
        elif perm == "t":
            bits |= stat.S_ISVTX if who == "o" else 0
        else:  # u, g, o: copy that class's current rwx bits
            source = (mode >> _SHIFT[perm]) & 0o7
            bits |= source << shift
    return bits


def resolve_mode(value, st_mode, umask=None):
    """The permission bits ``value`` (from check_mode_value) asks for, given the path's
    current ``st_mode`` (symbolic modes are relative to it)."""
    if isinstance(value, int):
        return value
    if umask is None:
        umask = current_umask()
    mode = stat.S_IMODE(st_mode)
    is_dir = stat.S_ISDIR(st_mode)
    for clause in value.split(","):
        match = _regex().match(_CLAUSE, clause)
        who, actions = match.group(1), match.group(2)
        use_umask = who == ""
        classes = "ugo" if (who == "" or "a" in who) else who
        for op, perms in _regex().findall(_ACTION, actions):
            for cls in classes:
                bits = _class_bits(cls, perms, mode, is_dir, use_umask, umask)
                if op == "=":
                    mode = (mode & ~_CLASS_MASK[cls]) | bits
                elif op == "+":
                    mode |= bits
                else:
                    mode &= ~bits
    return mode


def format_mode(mode):
    """'0644' as Ansible prints modes."""
    return f"0{mode:03o}"


def lookup_uid(owner):
    """The uid for a user name or numeric id; None when no such user exists."""
    try:
        return int(owner)
    except ValueError:
        pass
    try:
        return pwd.getpwnam(owner).pw_uid
    except KeyError:
        return None


def lookup_gid(group):
    """The gid for a group name or numeric id; None when no such group exists."""
    try:
        return int(group)
    except ValueError:
        pass
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        return None


def user_name(uid):
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def group_name(gid):
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def note(diff, key, before, after):
    """Record one changed attribute in an Ansible-style ``{before, after}`` diff."""
    if diff is not None:
        diff.setdefault("before", {})[key] = before
        diff.setdefault("after", {})[key] = after


def resolve_owner(owner, group, path, check_mode, warnings):
    """(uid or None, gid or None) for the options; unknown names fail, or in check mode
    only warn (an earlier task of the play may create them)."""
    ids = []
    for value, lookup, kind, verb in ((owner, lookup_uid, "user", "chown"),
                                      (group, lookup_gid, "group", "chgrp")):
        if value is None:
            ids.append(None)
            continue
        number = lookup(value)
        if number is None:
            message = f"{verb} failed on {path}: failed to look up {kind} {value}"
            if not check_mode:
                raise Failure(message)
            warnings.append(message + " (create it earlier in the real run)")
            number = -1
        ids.append(number)
    return ids[0], ids[1]


def apply_attrs(path, mode=None, owner=None, group=None, check_mode=False, diff=None,
                warnings=None, umask=None):
    """Give ``path`` (not following a final symlink) the owner, group and mode asked for.

    Returns True when something changed (in check mode: would change). The mode of a
    symlink itself is left alone: Linux has no lchmod.
    """
    warnings = [] if warnings is None else warnings
    try:
        st = os.lstat(path)
    except OSError as exc:
        raise Failure(f"cannot stat {path}: {reason(exc)}") from None
    changed = False
    uid, gid = resolve_owner(owner, group, path, check_mode, warnings)
    for number, current, key, args, verb in (
            (uid, st.st_uid, "owner", lambda n: (n, -1), "chown"),
            (gid, st.st_gid, "group", lambda n: (-1, n), "chgrp")):
        if number is None or number == current:
            continue
        changed = True
        if number == -1:  # unknown name, check mode
            continue
        note(diff, key, current, number)
        if not check_mode:
            try:
                os.lchown(path, *args(number))
            except OSError as exc:
                raise Failure(f"{verb} failed on {path}: {reason(exc)}") from None
    if mode is not None and not stat.S_ISLNK(st.st_mode):
        if changed and not check_mode:
            st = os.lstat(path)  # chown may have cleared setuid/setgid bits
        wanted = resolve_mode(mode, st.st_mode, umask)
        before = stat.S_IMODE(st.st_mode)
        if wanted != before:
            note(diff, "mode", format_mode(before), format_mode(wanted))
            changed = True
            if not check_mode:
                try:
                    os.chmod(path, wanted)
                except OSError as exc:
                    raise Failure(f"chmod failed on {path}: {reason(exc)}") from None
    return changed


def state_of(path):
    """Ansible's name for what is at ``path``: absent, link, directory, hard or file."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return "absent"
    except NotADirectoryError:
        return "absent"
    if stat.S_ISLNK(st.st_mode):
        return "link"
    if stat.S_ISDIR(st.st_mode):
        return "directory"
    if st.st_nlink > 1:
        return "hard"
    return "file"


def path_info(path):
    """uid, gid, owner, group, mode, state and size of ``path`` (nothing when absent),
    as Ansible adds them to a file result."""
    try:
        st = os.lstat(path)
    except OSError:
        return {}
    return {"uid": st.st_uid, "gid": st.st_gid, "owner": user_name(st.st_uid),
            "group": group_name(st.st_gid), "mode": format_mode(stat.S_IMODE(st.st_mode)),
            "state": state_of(path), "size": st.st_size}


def missing_dirs(path):
    """``path`` and those of its parents that do not exist, outermost first."""
    missing = []
    current = os.path.normpath(path)
    while not os.path.lexists(current):
        missing.append(current)
        parent = os.path.dirname(current)
        if not parent or parent == current:
            break
        current = parent
    return list(reversed(missing))

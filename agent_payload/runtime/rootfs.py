"""The container's filesystem, set up by its first process inside its own mount namespace.

Everything mounted here lives in that namespace only: when the container's last process
ends, the kernel takes every mount with it, so a crash leaves no mount on the host.

``setup(plan)``: mounts stop propagating to the host; the image's layers (lower dirs)
and the container's own upper dir form an overlayfs at ``plan["rootfs"]``; /proc, a
read-only /sys, a small /dev (device nodes, pts, shm, mqueue), the generated
/etc/hostname, /etc/hosts and /etc/resolv.conf, volumes and tmpfs mounts go on top;
pivot_root makes it the root and the host's tree is detached; then the masked and
read-only paths of runc, and a read-only root when asked.
"""

import errno
import os
import stat

from agent_payload import syscalls
from agent_payload.runtime.spec import MASKED_PATHS, READONLY_PATHS

S = syscalls
# (name, major, minor): the nodes runc creates in a container's /dev, each mode 0666
DEVICES = (("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8),
           ("urandom", 1, 9), ("tty", 5, 0))
DEV_LINKS = (("/proc/self/fd", "fd"), ("/proc/self/fd/0", "stdin"),
             ("/proc/self/fd/1", "stdout"), ("/proc/self/fd/2", "stderr"),
             ("/proc/kcore", "core"), ("pts/ptmx", "ptmx"))


def _inside(root, path):
    """``path`` (absolute, in the container) under the rootfs dir, refusing escapes."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise OSError(errno.EINVAL, f"path {path!r} leaves the container")
    return os.path.join(root, *parts)


def _mkdirs_no_follow(root, path):
    """Create the directory ``path`` inside the rootfs, refusing to pass through symlinks
    (an image could otherwise point /proc or a volume target at the host's files)."""
    current = root
    for part in [p for p in path.split("/") if p not in ("", ".")]:
        if part == "..":
            raise OSError(errno.EINVAL, f"path {path!r} leaves the container")
        current = os.path.join(current, part)
        try:
            st = os.lstat(current)
        except FileNotFoundError:
            os.mkdir(current, 0o755)
            continue
        if stat.S_ISLNK(st.st_mode):
            raise OSError(errno.ELOOP, f"{path} in the image is a symlink")
        if not stat.S_ISDIR(st.st_mode):
            raise OSError(errno.ENOTDIR, f"{path} in the image is not a directory")
    return current


def _file_target(root, path):
    """An existing (or new, empty) regular file at ``path`` in the rootfs to bind over."""
    parent = _mkdirs_no_follow(root, os.path.dirname(path))
    target = os.path.join(parent, os.path.basename(path))
    try:
        st = os.lstat(target)
    except FileNotFoundError:
        os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o644))
        return target
    if stat.S_ISLNK(st.st_mode):
        os.unlink(target)  # e.g. /etc/resolv.conf -> ../run/...: ours replaces it
        os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o644))
    return target


def _overlay(plan):
    lower = ":".join(plan["lower_dirs"])
    data = f"lowerdir={lower},upperdir={plan['upper_dir']},workdir={plan['work_dir']}"
    S.mount("overlay", plan["rootfs"], "overlay", 0, data)


def _dev(root):
    dev = _mkdirs_no_follow(root, "/dev")
    S.mount("tmpfs", dev, "tmpfs", S.MS_NOSUID, "mode=755,size=65536k")
    for name, major, minor in DEVICES:
        path = os.path.join(dev, name)
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(major, minor))
        os.chmod(path, 0o666)  # the umask took bits off
    for directory in ("pts", "shm", "mqueue"):
        os.mkdir(os.path.join(dev, directory), 0o755)
    S.mount("devpts", os.path.join(dev, "pts"), "devpts", S.MS_NOSUID | S.MS_NOEXEC,
            "newinstance,ptmxmode=0666,mode=0620,gid=5")
    S.mount("shm", os.path.join(dev, "shm"), "tmpfs",
            S.MS_NOSUID | S.MS_NODEV | S.MS_NOEXEC, "mode=1777,size=65536k")
    S.mount("mqueue", os.path.join(dev, "mqueue"), "mqueue",
            S.MS_NOSUID | S.MS_NODEV | S.MS_NOEXEC)
    for target, name in DEV_LINKS:
        os.symlink(target, os.path.join(dev, name))


def _bind(source, target, readonly=False, flags=0):
    S.mount(source, target, None, S.MS_BIND | S.MS_REC)
    if readonly or flags:
        S.mount(None, target, None,
                S.MS_BIND | S.MS_REMOUNT | flags | (S.MS_RDONLY if readonly else 0))


def _mounts(plan, root):
    """Volumes and tmpfs mounts: [{"type": "bind"|"tmpfs", "source", "target", "readonly",
    "options"}]."""
    for item in plan.get("mounts") or []:
        if item["type"] == "tmpfs":
            target = _mkdirs_no_follow(root, item["target"])
            S.mount("tmpfs", target, "tmpfs", S.MS_NOSUID | S.MS_NODEV,
                    item.get("options") or "mode=1777")
            continue
        source = item["source"]
        if os.path.isdir(source):
            target = _mkdirs_no_follow(root, item["target"])
            if item.get("copy_up"):
                _copy_up(target, source)
        else:
            target = _file_target(root, item["target"])
        _bind(source, target, item.get("readonly", False))


def _copy_up(target, volume):
    """Fill a new volume with what the image has at its path, as Docker does: its
    content, and its owner and mode even when it is empty (a service's data dir)."""
    import shutil  # before pivot_root: imports still reach the host's files

    if os.listdir(volume):
        return
    if os.listdir(target):
        shutil.copytree(target, volume, symlinks=True, dirs_exist_ok=True)
    st = os.lstat(target)
    os.chown(volume, st.st_uid, st.st_gid)
    os.chmod(volume, stat.S_IMODE(st.st_mode))


def _mask(path):
    try:
        st = os.stat(path)
    except OSError:
        return  # not on this kernel
    if stat.S_ISDIR(st.st_mode):
        S.mount("tmpfs", path, "tmpfs", S.MS_RDONLY)
    else:
        S.mount("/dev/null", path, None, S.MS_BIND)


def _readonly(path):
    if not os.path.exists(path):
        return
    S.mount(path, path, None, S.MS_BIND | S.MS_REC)
    S.mount(None, path, None,
            S.MS_BIND | S.MS_REMOUNT | S.MS_RDONLY | S.MS_NOSUID | S.MS_NODEV | S.MS_NOEXEC)


def setup(plan):
    """Build the container's root and pivot into it (run in its new mount namespace)."""
    root = plan["rootfs"]
    S.mount(None, "/", None, S.MS_REC | S.MS_PRIVATE)  # nothing flows back to the host
    _overlay(plan)
    proc = _mkdirs_no_follow(root, "/proc")
    S.mount("proc", proc, "proc", S.MS_NOSUID | S.MS_NODEV | S.MS_NOEXEC)
    sys_dir = _mkdirs_no_follow(root, "/sys")
    S.mount("sysfs", sys_dir, "sysfs", S.MS_RDONLY | S.MS_NOSUID | S.MS_NODEV | S.MS_NOEXEC)
    _dev(root)
    if plan.get("tty"):
        # /dev/console is the container's terminal, as runc makes it
        _bind(os.ttyname(0), _file_target(root, "/dev/console"))
    for name in ("hostname", "hosts", "resolv.conf"):
        source = plan["etc_files"].get(name)
        if source:
            _bind(source, _file_target(root, "/etc/" + name))
    _mounts(plan, root)
    workdir = plan.get("working_dir") or "/"
    _mkdirs_no_follow(root, workdir)
    os.chdir(root)
    S.pivot_root(".", ".")  # the old root ends up stacked on the new one...
    S.umount(".", S.MNT_DETACH)  # ...and is detached, with everything of the host
    os.chdir("/")
    if not plan.get("privileged"):
        for path in MASKED_PATHS:
            _mask(path)
        for path in READONLY_PATHS:
            _readonly(path)
    if plan.get("read_only"):
        S.mount(None, "/", None, S.MS_BIND | S.MS_REMOUNT | S.MS_RDONLY)

"""Thin wrappers over the Linux system calls Python's os module lacks.

This is the only module of the payload that touches ctypes and libc. Every wrapper
raises ``SyscallError`` (an OSError) whose message names the call and the path or
object it acted on, so a failure deep in container setup still reads as one line.
Everything above this module can be tested with a recording double of it.
"""

import errno
import os

# clone(2) / unshare(2) flags
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

# mount(2) flags
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20

# umount2(2) flags
MNT_DETACH = 2

_loaded = []  # [(libc, ctypes)] once a wrapper needed them


class SyscallError(OSError):
    """A failed system call; str() names the call, its object and the errno text."""

    def __init__(self, call, target, err):
        super().__init__(err, f"{call}({target}): {os.strerror(err)}")
        self.call = call
        self.target = target


def _lib():
    """(libc, the ctypes module), loaded on first use: most payload runs never call libc,
    and ctypes.util's find_library alone imports subprocess, shutil and re. The program's
    own symbol scope (dlopen(NULL)) has libc's functions on glibc and musl alike."""
    if not _loaded:
        import ctypes

        _loaded.append((ctypes.CDLL(None, use_errno=True), ctypes))
    return _loaded[0]


def _check(result, call, target):
    if result != 0:
        raise SyscallError(call, target, _lib()[1].get_errno() or errno.EIO)


def _b(value):
    if value is None:
        return None
    return os.fsencode(value)


def unshare(flags):
    """Move the calling process into new namespaces (CLONE_* flags)."""
    libc, ctypes = _lib()
    _check(libc.unshare(ctypes.c_int(flags)), "unshare", hex(flags))


def setns(fd, nstype=0, label=""):
    """Join the namespace open at file descriptor ``fd``."""
    libc, ctypes = _lib()
    _check(libc.setns(ctypes.c_int(fd), ctypes.c_int(nstype)), "setns", label or fd)


def setns_path(path, nstype=0):
    """Join the namespace at ``path`` (e.g. /run/netns/NAME or /proc/PID/ns/net)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        setns(fd, nstype, path)
    finally:
        os.close(fd)


def mount(source, target, fstype=None, flags=0, data=None):
    """mount(2); ``data`` is the filesystem's option string."""
    libc, ctypes = _lib()
    result = libc.mount(_b(source), _b(target), _b(fstype), ctypes.c_ulong(flags), _b(data))
    _check(result, "mount", f"{fstype or source} on {target}")


def umount(target, flags=0):
    """umount2(2)."""
    libc, ctypes = _lib()
    _check(libc.umount2(_b(target), ctypes.c_int(flags)), "umount2", target)


def sethostname(name):
    """Set the UTS namespace's hostname."""
    raw = name.encode()
    libc, ctypes = _lib()
    _check(libc.sethostname(raw, ctypes.c_size_t(len(raw))), "sethostname", name)


def pivot_root(new_root, put_old):
    """pivot_root(2), called through syscall(2): glibc has no wrapper."""
    nr = {"x86_64": 155, "aarch64": 41, "armv7l": 218, "ppc64le": 203, "s390x": 217,
          "riscv64": 41}.get(os.uname().machine)
    if nr is None:
        raise SyscallError("pivot_root", new_root, errno.ENOSYS)
    libc, ctypes = _lib()
    _check(libc.syscall(ctypes.c_long(nr), _b(new_root), _b(put_old)), "pivot_root", new_root)


def fsync_dir(path):
    """Make a rename or unlink in directory ``path`` durable (fsync of the directory)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


PR_SET_SECCOMP = 22
PR_CAPBSET_DROP = 24
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
SECCOMP_MODE_FILTER = 2
_LINUX_CAPABILITY_VERSION_3 = 0x20080522


def prctl(option, arg2=0, arg3=0, arg4=0, arg5=0, label=""):
    """prctl(2) with integer arguments; returns its result."""
    libc, ctypes = _lib()
    result = libc.prctl(ctypes.c_int(option), ctypes.c_ulong(arg2), ctypes.c_ulong(arg3),
                        ctypes.c_ulong(arg4), ctypes.c_ulong(arg5))
    if result == -1:
        raise SyscallError("prctl", label or option, ctypes.get_errno() or errno.EIO)
    return result


def set_child_subreaper():
    """Adopt (and so reap) orphaned descendants instead of leaving them to PID 1."""
    prctl(PR_SET_CHILD_SUBREAPER, 1, label="PR_SET_CHILD_SUBREAPER")


def capset(effective, permitted, inheritable):
    """Set this thread's capability sets (bit masks by capability number)."""
    libc, ctypes = _lib()
    header = (ctypes.c_uint32 * 2)(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (ctypes.c_uint32 * 6)()
    for index, mask in enumerate((effective, permitted, inheritable)):
        data[index] = mask & 0xFFFFFFFF  # the low words of the three sets, then the high
        data[3 + index] = (mask >> 32) & 0xFFFFFFFF
    _check(libc.capset(header, data), "capset", hex(effective))


def seccomp_filter(program):
    """Install a seccomp BPF ``program`` (bytes of struct sock_filter) on this thread;
    it needs no_new_privs or CAP_SYS_ADMIN."""
    libc, ctypes = _lib()

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    code = ctypes.create_string_buffer(program, len(program))
    fprog = SockFprog(len(program) // 8, ctypes.cast(code, ctypes.c_void_p))
    _check(libc.prctl(ctypes.c_int(PR_SET_SECCOMP), ctypes.c_ulong(SECCOMP_MODE_FILTER),
                      ctypes.byref(fprog), ctypes.c_ulong(0), ctypes.c_ulong(0)),
           "prctl", "PR_SET_SECCOMP")


def syncfs(path):
    """Flush the filesystem that holds ``path`` (not every filesystem, as sync(2) does)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        libc, ctypes = _lib()
        _check(libc.syncfs(ctypes.c_int(fd)), "syncfs", path)
    finally:
        os.close(fd)

"""Named network namespaces, as ``ip netns add NAME`` and ``ip netns del NAME`` make and
remove them, without running ip: a process costs a create about 2 ms of CPU, the system
calls themselves a fraction of that.

A named namespace is the file /run/netns/NAME with the namespace's nsfs file bound over
it, so that it lives on with no process in it. /run/netns is itself made a shared mount
(as ip makes it), so that a name goes away in every mount namespace that sees it. The
namespace is made by a thread of its own, which unshares its network namespace, binds
it, does what the caller asks in it, and ends: the calling thread (and every socket it
opens later) stays where it was.
"""

import _thread
import errno
import os

from agent_payload import syscalls as S

RUN_DIR = "/run/netns"
_sharing = _thread.allocate_lock()  # two creates at once must not both bind run_dir


def path_of(name, run_dir=RUN_DIR):
    return os.path.join(run_dir, name)


def _shared(run_dir):
    """Make ``run_dir`` a shared mount, binding it onto itself first when it is none."""
    os.makedirs(run_dir, 0o755, exist_ok=True)
    with _sharing:
        try:
            S.mount("", run_dir, "none", S.MS_SHARED | S.MS_REC)
        except OSError as exc:
            if exc.errno != errno.EINVAL:  # EINVAL: not a mount point yet
                raise
            S.mount(run_dir, run_dir, "none", S.MS_BIND | S.MS_REC)
            S.mount("", run_dir, "none", S.MS_SHARED | S.MS_REC)


def _bind_new(path, inside, outcome, done):
    """In a thread of its own: a new network namespace, bound at ``path``; then
    ``inside()``, if given, in it."""
    try:
        S.unshare(S.CLONE_NEWNET)
        S.mount("/proc/thread-self/ns/net", path, "none", S.MS_BIND)
        if inside is not None:
            inside()
    except BaseException as exc:  # handed to the caller's thread
        outcome.append(exc)
    finally:
        done.release()


def add(name, run_dir=RUN_DIR, inside=None):
    """Make the network namespace ``name`` and return its path; ``inside()`` runs in it
    (in the thread that made it) before this returns. OSError (naming the call) when it
    cannot, or what ``inside`` raised, leaving no name behind. An existing name is an
    error (EEXIST), as for ip."""
    _shared(run_dir)
    path = path_of(name, run_dir)
    os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0))
    outcome, done = [], _thread.allocate_lock()
    done.acquire()
    try:
        _thread.start_new_thread(_bind_new, (path, inside, outcome, done))
    except RuntimeError as exc:  # "can't start new thread"
        os.unlink(path)
        raise OSError(errno.EAGAIN, f"no thread to make {name} in: {exc}") from None
    try:
        done.acquire()  # released by the thread as it ends
    except BaseException as exc:  # a signal's exception: the thread finishes regardless
        done.acquire()
        outcome.append(exc)
    if outcome:
        try:
            remove(name, run_dir)
        except OSError:
            pass  # what made it fail is the error to report
        raise outcome[0]
    return path


def remove(name, run_dir=RUN_DIR):
    """Remove the name ``name`` (the namespace ends with its last user); nothing to
    remove is no error."""
    path = path_of(name, run_dir)
    failed = None
    try:
        S.umount(path, S.MNT_DETACH)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOENT):  # not mounted / no such file
            failed = exc
    try:
        os.unlink(path)  # the name goes even when the unmount failed
    except FileNotFoundError:
        pass
    except OSError:
        if failed is None:
            raise
    if failed is not None:
        raise failed

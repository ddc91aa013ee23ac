"""Give the container's process its capability set, as runc does for Docker.

The bounding set loses every capability outside the set (so nothing gained later, by a
setuid binary or file capabilities, exceeds it), the ambient set is cleared, and the
effective and permitted sets become the set; the inheritable set stays empty (as in
Docker since the fix for CVE-2022-24769). Run in the container's process just before
exec, as root, after everything that needs more privilege.
"""

import errno

from agent_payload import syscalls
from agent_payload.runtime.spec import CAP_NUMBERS

CAP_LAST_CAP = "/proc/sys/kernel/cap_last_cap"


def mask_of(names):
    """The bit mask of capability names."""
    mask = 0
    for name in names:
        mask |= 1 << CAP_NUMBERS[name]
    return mask


def last_cap(path=CAP_LAST_CAP):
    """The highest capability number this kernel knows."""
    try:
        with open(path) as handle:
            return int(handle.read())
    except (OSError, ValueError):
        return max(CAP_NUMBERS.values())


def drop_bounding(names):
    """Take every capability outside ``names`` out of the bounding set and clear the
    ambient set (needs CAP_SETPCAP: do it before switching to the container's user)."""
    keep = mask_of(names)
    for number in range(last_cap() + 1):
        if not keep & (1 << number):
            try:
                syscalls.prctl(syscalls.PR_CAPBSET_DROP, number, label="PR_CAPBSET_DROP")
            except OSError as exc:
                if exc.errno != errno.EINVAL:  # a number this kernel does not have
                    raise
    try:
        syscalls.prctl(syscalls.PR_CAP_AMBIENT, syscalls.PR_CAP_AMBIENT_CLEAR_ALL,
                       label="PR_CAP_AMBIENT")
    except OSError as exc:
        if exc.errno != errno.EINVAL:  # kernels before 4.3 have no ambient set
            raise


def set_sets(names, effective=True):
    """Effective and permitted sets to ``names`` (or empty, for a non-root user, as under
    Docker), inheritable empty."""
    keep = mask_of(names) if effective else 0
    syscalls.capset(keep, keep, 0)


def apply(names, no_new_privileges=False):
    """Restrict this process to capabilities ``names`` (and set no_new_privs if asked)."""
    drop_bounding(names)
    if no_new_privileges:
        syscalls.prctl(syscalls.PR_SET_NO_NEW_PRIVS, 1, label="PR_SET_NO_NEW_PRIVS")
    set_sets(names)

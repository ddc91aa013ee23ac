"""Probes of what the host's kernel offers: cgroup mode, overlayfs, user namespaces.

Each probe reads /proc or /sys once and takes its paths as arguments, so tests can
point it at a fake tree. The runtime chooses its cgroup driver from ``cgroup_mode``.
"""

import os


def read_text(path, default=""):
    """Return a file's text, or ``default`` when it cannot be read."""
    try:
        with open(path) as handle:
            return handle.read()
    except OSError:
        return default


def cgroup_mounts(mountinfo="/proc/self/mountinfo"):
    """Return [(mount point, fstype, super options)] of the cgroup mounts."""
    mounts = []
    for line in read_text(mountinfo).splitlines():
        fields = line.split()
        if " - " not in line or len(fields) < 10:
            continue
        sep = fields.index("-")
        fstype = fields[sep + 1]
        if fstype in ("cgroup", "cgroup2"):
            mounts.append((fields[4], fstype, fields[sep + 3]))
    return mounts


def cgroup_mode(mountinfo="/proc/self/mountinfo", root="/sys/fs/cgroup"):
    """Classify the host: 'v2' (unified), 'hybrid' (v1 controllers plus a cgroup2 mount),
    'v1', or 'none'."""
    mounts = cgroup_mounts(mountinfo)
    if any(point == root and fstype == "cgroup2" for point, fstype, _ in mounts):
        return "v2"
    has_v1 = any(fstype == "cgroup" for _, fstype, _ in mounts)
    has_v2 = any(fstype == "cgroup2" for _, fstype, _ in mounts)
    if has_v1 and has_v2:
        return "hybrid"
    if has_v1:
        return "v1"
    return "none"


def has_overlayfs(filesystems="/proc/filesystems", sys_module="/sys/module"):
    """True when the kernel knows overlayfs (listed in /proc/filesystems, or its module
    is loaded)."""
    for line in read_text(filesystems).splitlines():
        if line.split()[-1:] == ["overlay"]:
            return True
    return os.path.exists(os.path.join(sys_module, "overlay"))


def user_namespaces(proc_sys="/proc/sys"):
    """True when unprivileged processes may create user namespaces."""
    max_ns = read_text(os.path.join(proc_sys, "user/max_user_namespaces"), "0").strip()
    debian_knob = read_text(os.path.join(proc_sys, "kernel/unprivileged_userns_clone"), "1")
    return max_ns not in ("", "0") and debian_knob.strip() != "0"

"""One lab host: a process tree that looks like a separate machine, running sshd.

``spawn_host`` forks. The child moves into the host's own cgroups (one leaf per
hierarchy, under the caller's cgroup), joins the host's network namespace and unshares
mount, UTS, IPC, PID and cgroup namespaces; its own child is then PID 1 of the new PID
namespace: it mounts a fresh /proc, /sys and cgroup hierarchies (seen from the cgroup
namespace, so the host's cgroup leaf is its root), gives the host a private /run, /tmp,
/root, /var/lib/fleet and lab-user home, its own /etc/passwd and sudoers, and execs sshd.
Killing that sshd ends every process of the host at once (PID namespace semantics).
"""

import os
import traceback

from agent_payload import probe, syscalls

NS_FLAGS = (syscalls.CLONE_NEWNS | syscalls.CLONE_NEWUTS | syscalls.CLONE_NEWIPC
            | syscalls.CLONE_NEWPID | syscalls.CLONE_NEWCGROUP)
SSHD = "/usr/sbin/sshd"


def own_cgroups(proc_cgroup="/proc/self/cgroup"):
    """{hierarchy key: path} of the calling process, keys as in /proc/self/cgroup."""
    paths = {}
    for line in probe.read_text(proc_cgroup).splitlines():
        _, controllers, path = line.split(":", 2)
        paths[controllers] = path
    return paths


def host_cgroup_dirs(leaf, mountinfo="/proc/self/mountinfo", proc_cgroup="/proc/self/cgroup"):
    """[(mount point, options, fstype, directory)] of the host's cgroup in every hierarchy.

    Each directory sits under the caller's own cgroup of that hierarchy, so the lab stays
    inside whatever limits the caller has.
    """
    mine = own_cgroups(proc_cgroup)
    result = []
    for point, fstype, options in probe.cgroup_mounts(mountinfo):
        opts = [o for o in options.split(",") if o not in ("rw", "ro")]
        if fstype == "cgroup2":
            key = ""
        else:
            wanted = {o for o in opts if o not in ("xattr", "none", "noprefix")
                      and not o.startswith("release_agent") and not o.startswith("clone_")}
            key = next((k for k in mine if k and set(k.split(",")) == wanted), None)
            if key is None:
                continue
        base = mine.get(key, "/")
        result.append((point, ",".join(opts), fstype,
                       os.path.join(point, base.lstrip("/"), leaf)))
    return result


def join_cgroup(directory):
    """Create the cgroup ``directory`` if needed and move the calling process into it."""
    os.makedirs(directory, exist_ok=True)
    for name in ("cpuset.cpus", "cpuset.mems"):
        # A new v1 cpuset is empty and refuses tasks until it inherits its parent's sets.
        path = os.path.join(directory, name)
        if os.path.exists(path) and not probe.read_text(path).strip():
            with open(path, "w") as handle:
                handle.write(probe.read_text(os.path.join(os.path.dirname(directory), name)))
    procs = os.path.join(directory, "cgroup.procs")
    try:
        with open(procs, "w") as handle:
            handle.write(str(os.getpid()))
    except OSError as exc:
        raise OSError(exc.errno, f"cannot join {procs}: {exc.strerror}") from None


def spawn_host(spec):
    """Fork the host's PID 1 (sshd). Returns its PID in the caller's PID namespace.

    ``spec`` is a dict: name, netns, cgroups (from host_cgroup_dirs), binds
    [(source, target)], tmpfs [(target, options)], etc_files {target: source}, sshd_config, log.
    Raises RuntimeError with the child's one-line reason when the host fails to start.
    """
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the setup process: joins and creates namespaces, forks PID 1, exits
        os.close(read_fd)
        status = 0
        try:
            os.setsid()
            for _, _, _, directory in spec["cgroups"]:
                join_cgroup(directory)
            syscalls.setns_path("/run/netns/" + spec["netns"], syscalls.CLONE_NEWNET)
            syscalls.unshare(NS_FLAGS)
            child = os.fork()
            if child == 0:
                _become_host(spec, write_fd)  # never returns
            os.write(write_fd, b"pid %d\n" % child)
        except BaseException as exc:  # report any failure to the parent as one line
            os.write(write_fd, ("error " + _one_line(exc)).encode() + b"\n")
            status = 1
        os._exit(status)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as reader:
        lines = reader.read().decode(errors="replace").splitlines()
    os.waitpid(pid, 0)
    errors = [line[6:] for line in lines if line.startswith("error ")]
    if errors:
        raise RuntimeError("lab host {}: {}".format(spec["name"], errors[0]))
    pids = [int(line[4:]) for line in lines if line.startswith("pid ")]
    if not pids:
        raise RuntimeError("lab host {}: setup process died without a word".format(spec["name"]))
    return pids[0]


def _one_line(exc):
    text = str(exc) or type(exc).__name__
    if not isinstance(exc, OSError):
        line = traceback.extract_tb(exc.__traceback__)[-1].lineno
        text = f"{type(exc).__name__}: {text} (line {line})"
    return text.replace("\n", " ")


def _become_host(spec, report_fd):
    """PID 1 of the host: build its filesystem view, then exec sshd."""
    try:
        _mount_host_view(spec)
        syscalls.sethostname(spec["name"])
        log = os.open(spec["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.closerange(3, 1024)  # also closes report_fd: the parent's read then ends
        os.execv(SSHD, [SSHD, "-D", "-e", "-f", spec["sshd_config"]])
    except BaseException as exc:
        try:
            os.write(report_fd, ("error " + _one_line(exc)).encode() + b"\n")
        finally:
            os._exit(127)


def _detach_under(roots):
    points = [point for point, _, _ in _mount_points()
              if any(point == root or point.startswith(root + "/") for root in roots)]
    for point in sorted(points, key=len, reverse=True):
        try:
            syscalls.umount(point, syscalls.MNT_DETACH)
        except OSError:
            pass  # already gone with a parent that was detached first


def _mount_points(mountinfo="/proc/self/mountinfo"):
    result = []
    for line in probe.read_text(mountinfo).splitlines():
        fields = line.split()
        if len(fields) > 4:
            result.append((fields[4].replace("\\040", " "), fields[0], fields[1]))
    return result


def _mount_host_view(spec):
    flags = syscalls.MS_NOSUID | syscalls.MS_NODEV | syscalls.MS_NOEXEC
    # Nothing mounted here may reach the machine's mount namespace, or other hosts'.
    syscalls.mount(None, "/", None, syscalls.MS_REC | syscalls.MS_PRIVATE)
    links = {}
    for entry in os.listdir("/sys/fs/cgroup"):
        full = os.path.join("/sys/fs/cgroup", entry)
        if os.path.islink(full):
            links[entry] = os.readlink(full)
    # The machine's /proc, /sys (with its cgroup roots) and /run must not even be
    # listed in the host's mountinfo: detach them before mounting the host's own.
    _detach_under(("/proc", "/sys", "/run", "/dev/shm"))
    syscalls.mount("proc", "/proc", "proc", flags)
    syscalls.mount("sysfs", "/sys", "sysfs", flags)
    syscalls.mount("tmpfs", "/sys/fs/cgroup", "tmpfs", flags, "mode=755")
    for point, options, fstype, _ in spec["cgroups"]:
        os.makedirs(point, exist_ok=True)
        syscalls.mount(fstype, point, fstype, flags, options or None)
    for entry, target in links.items():
        os.symlink(target, os.path.join("/sys/fs/cgroup", entry))
    for target, options in spec["tmpfs"]:
        syscalls.mount("tmpfs", target, "tmpfs", syscalls.MS_NOSUID | syscalls.MS_NODEV, options)
    for directory in spec.get("mkdirs", ()):
        os.makedirs(directory, exist_ok=True)
    for source, target in spec["binds"]:
        syscalls.mount(source, target, None, syscalls.MS_BIND | syscalls.MS_REC)
    for target, source in spec["etc_files"].items():
        syscalls.mount(source, target, None, syscalls.MS_BIND)

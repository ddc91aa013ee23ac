"""Run a container in the foreground: create it, start it, wait for it, remove it if asked.

``run(store_root, image, options)`` plans the container (spec.py) from the image record
in the content store, writes its directory (``STORE/containers/ID``: the overlay upper
and work dirs, the generated /etc files, config.json), makes its cgroup with the limits,
and starts the launcher (launch.py) with posix_spawn. It returns the exit code and the
output, and whether the kernel's OOM killer ended it. A failure before the command ran
(an option, an image, the launcher) leaves no cgroup and no directory behind; mounts
never reach the host (rootfs.py).

Detached containers and their supervision are not here yet: this is what `fleet run
--rm` and the tests of isolation need.
"""

import os
import select
import stat
import sys

from agent_payload import cgroups, jsonfile, jsonwire, labels
from agent_payload.oci.store import Store, remove_tree
from agent_payload.runtime import connect, records, spec

OUTPUT_LIMIT = 1024 * 1024
_LAUNCH = ("import sys; sys.path.insert(0, sys.argv[1]); "
           "from agent_payload.runtime.launch import main; main()")


class RunError(Exception):
    """The container could not be created or started (one line)."""


def _image_file(lower_dirs, relative):
    """A file's text from the image's layers (topmost first), never through a symlink."""
    for layer in lower_dirs:
        path = os.path.join(layer, relative)
        try:
            st = os.lstat(path)
        except OSError:
            continue
        if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
            return ""  # whited out
        if not stat.S_ISREG(st.st_mode):
            return ""
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        with os.fdopen(fd, errors="replace") as handle:
            return handle.read(1 << 20)
    return ""


def payload_root():
    """The directory that holds the agent_payload package (the payload cache on a host)."""
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(spec.__file__))))


def _high_fd(fd):
    """Move ``fd`` above the launcher's fixed descriptors 0-4 (close-on-exec kept)."""
    import fcntl

    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return moved


def limits_of(options):
    limits = {"memory": spec.parse_bytes(options.get("memory"), "memory"),
              "memory_swap": spec.parse_bytes(options.get("memory_swap"), "memory_swap"),
              "cpus": options.get("cpus"), "cpu_shares": options.get("cpu_shares"),
              "pids_limit": options.get("pids_limit")}
    return {key: value for key, value in limits.items() if value is not None}


def plan_container(store, record, options, container_id):
    """The launcher's plan (a JSON-able dict) and the container's directory layout."""
    image_config = (record.get("config") or {}).get("config") or {}
    lower_dirs = [store.layer_path(chain) for chain in reversed(record.get("layers") or [])]
    hostname = options.get("hostname") or container_id[:12]
    user = options.get("user")
    if user is None:
        user = image_config.get("User") or ""
    uid, gid, groups, home = spec.resolve_user(
        user, _image_file(lower_dirs, "etc/passwd"), _image_file(lower_dirs, "etc/group"))
    network_mode = options.get("network_mode") or "none"
    workdir = options.get("working_dir") or image_config.get("WorkingDir") or "/"
    if not workdir.startswith("/"):
        raise RunError(f"working_dir {workdir!r} is not an absolute path")
    directory = os.path.join(store.root, "containers", container_id)
    try:
        links = connect.links(store, options.get("links") or [], options.get("_remote_links"),
                              options.get("name") or hostname, network_mode,
                              options.get("link_env", True))
    except connect.ConnectError as exc:
        raise RunError(str(exc)) from None
    exposed = sorted(set(image_config.get("ExposedPorts") or {})
                     | {p if "/" in str(p) else f"{p}/tcp" for p in options.get("expose") or []})
    ports = [spec.parse_port(p) for p in options.get("ports") or []]
    if options.get("publish_all"):
        chosen = {f"{p['port']}/{p['proto']}" for p in ports}
        ports += [spec.parse_port(p) for p in exposed if p not in chosen]
    return {
        "id": container_id,
        "rootfs": os.path.join(directory, "rootfs"),
        "lower_dirs": lower_dirs,
        "upper_dir": os.path.join(directory, "upper"),
        "work_dir": os.path.join(directory, "work"),
        "etc_files": {name: os.path.join(directory, name)
                      for name in ("hostname", "hosts", "resolv.conf")},
        "hostname": hostname,
        "argv": spec.process_argv(image_config, options.get("entrypoint"),
                                  options.get("command")),
        "env": spec.environment(image_config, options.get("env"), hostname, home)
        + [item for link in links for item in link["env"]],
        "links": [{k: v for k, v in link.items() if k != "env"} for link in links],
        "exposed": exposed,
        "uid": uid, "gid": gid, "groups": groups,
        "working_dir": workdir,
        "capabilities": spec.capabilities(options.get("cap_add"), options.get("cap_drop"),
                                          options.get("privileged", False)),
        "privileged": bool(options.get("privileged")),
        "no_new_privileges": bool(options.get("no_new_privileges")),
        "read_only": bool(options.get("read_only")),
        "init": bool(options.get("init")),
        "ports": ports,
        "rlimits": {name: (soft, hard) for name, soft, hard in
                    (spec.parse_ulimit(u) for u in options.get("ulimits") or [])},
        "network_mode": network_mode,
        "mounts": _volume_mounts(store, image_config, options.get("volumes") or [])
        + _volumes_from(store, options.get("volumes_from") or [])
        + [{"type": "tmpfs", "target": target, "options": opts or "mode=1777"}
           for target, opts in (options.get("tmpfs") or {}).items()],
    }


def _volume_mounts(store, image_config, volumes):
    """Bind mounts for ``volumes`` and the image's Volumes (anonymous unless a volume or
    bind of the user's covers the path). Named and anonymous volumes live in
    STORE/volumes/NAME/_data, as Docker keeps them; a new one gets the image's content at
    its path (copy_up). Nothing is created here: see _prepare_volumes."""
    mounts = []
    for text in volumes:
        volume = spec.parse_volume(text)
        mounts.append(volume)
    taken = {m["target"] for m in mounts}
    for path in sorted(image_config.get("Volumes") or {}):
        target = path.rstrip("/") or "/"
        if target not in taken:
            mounts.append({"type": "volume", "source": None, "target": target,
                           "readonly": False})
    planned = []
    for volume in mounts:
        if volume["type"] == "bind":
            planned.append(dict(volume, copy_up=False))
            continue
        anonymous = volume["source"] is None
        name = os.urandom(32).hex() if anonymous else volume["source"]
        planned.append({"type": "bind", "target": volume["target"],
                        "readonly": volume["readonly"], "volume": name,
                        "anonymous": anonymous,
                        "source": volume_path(store.root, name)})
    return planned


def _volumes_from(store, entries):
    """The volumes and binds of other containers (``name[:ro|:rw]``), as docker run
    --volumes-from: same sources and targets; the owner keeps its anonymous volumes."""
    mounts = []
    for entry in entries:
        name, _, mode = str(entry).partition(":")
        if mode not in ("", "ro", "rw"):
            raise RunError(f"volumes_from: {entry!r} is not NAME[:ro|:rw]")
        found = records.find_container(store.root, name)
        if found is None:
            raise RunError(f"volumes_from: no container named {name}")
        config = found[1]
        for mount in config.get("mounts") or []:
            if mount.get("type") != "bind":
                continue
            copied = dict(mount, anonymous=False, copy_up=False)
            if mode:
                copied["readonly"] = mode == "ro"
            mounts.append(copied)
    return mounts


VOLUME_LABELS = "labels.json"  # beside a named volume's _data


def volume_path(store_root, name):
    """The directory containers see of volume ``name`` (Docker's layout)."""
    return os.path.join(store_root, "volumes", name, "_data")


def prepare_volumes(plan):
    """Create missing bind sources (as docker run -v does) and volume dirs; a volume made
    now is marked for copy-up."""
    for mount in plan["mounts"]:
        if mount["type"] != "bind":
            continue
        created = not os.path.exists(mount["source"])
        if created:
            os.makedirs(mount["source"], mode=0o755)
            project = labels.project_of(plan)
            if project and "volume" in mount and not mount.get("anonymous"):
                # made for a project's container: the project's, for `fleet down --volumes`
                jsonfile.write_json(os.path.join(os.path.dirname(mount["source"]),
                                                VOLUME_LABELS), {labels.PROJECT: project})
        mount["copy_up"] = created and "volume" in mount


def remove_anonymous_volumes(plan):
    for mount in plan["mounts"]:
        if mount.get("anonymous"):
            remove_tree(os.path.dirname(mount["source"]), ignore_errors=True)


def write_dir(plan, host_resolv="/etc/resolv.conf"):
    """Make the container's directory (rootfs, upper, work, the /etc files, config.json);
    on a failure half-way it is removed again."""
    directory = os.path.dirname(plan["rootfs"])
    os.makedirs(os.path.dirname(directory), mode=0o700, exist_ok=True)
    os.mkdir(directory, 0o700)
    try:
        for sub in ("rootfs", "upper", "work"):
            os.mkdir(os.path.join(directory, sub), 0o755)
        try:
            with open(host_resolv) as handle:
                resolv = handle.read()
        except OSError:
            resolv = ""
        texts = {"hostname": plan["hostname"] + "\n",
                 "hosts": spec.hosts_file(plan["hostname"]),
                 "resolv.conf": spec.resolv_conf(resolv, plan["network_mode"])}
        for name, text in texts.items():
            with open(plan["etc_files"][name], "w") as handle:
                handle.write(text)
        with open(os.path.join(directory, "config.json"), "w") as handle:
            handle.write(jsonwire.dumps(plan))
    except BaseException:
        remove_tree(directory, ignore_errors=True)
        raise
    return directory


def _spawn(plan, cgroup, terminal=None):
    """Start the launcher; (pid, events fd, stdout fd, stderr fd). With ``terminal`` (a
    pty's slave side) that is its stdin, stdout and stderr, and no output pipes."""
    plan = dict(plan, cgroup_procs=cgroup.procs_files if cgroup is not None else [])
    plan_r, plan_w = (_high_fd(fd) for fd in os.pipe())
    events_r, events_w = (_high_fd(fd) for fd in os.pipe())
    if terminal is None:
        out_r, out_w = (_high_fd(fd) for fd in os.pipe())
        err_r, err_w = (_high_fd(fd) for fd in os.pipe())
        stdio = [(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                 (os.POSIX_SPAWN_DUP2, out_w, 1), (os.POSIX_SPAWN_DUP2, err_w, 2)]
    else:
        out_r = out_w = err_r = err_w = None
        stdio = [(os.POSIX_SPAWN_DUP2, terminal, fd) for fd in (0, 1, 2)]
    payload_dir = payload_root()
    actions = stdio + [(os.POSIX_SPAWN_DUP2, plan_r, 3), (os.POSIX_SPAWN_DUP2, events_w, 4)]
    try:
        pid = os.posix_spawn(sys.executable, [sys.executable, "-I", "-S", "-c", _LAUNCH,
                                              payload_dir],
                             {"PATH": os.environ.get("PATH", spec.DEFAULT_PATH)},
                             file_actions=actions, setsid=True)
    except OSError as exc:
        for fd in (plan_r, plan_w, events_r, events_w, out_r, out_w, err_r, err_w):
            if fd is not None:
                os.close(fd)
        raise RunError(f"cannot start the launcher: {exc}") from None
    for fd in (plan_r, events_w, out_w, err_w):
        if fd is not None:
            os.close(fd)
    data = jsonwire.dumps(plan).encode()
    view = memoryview(data)
    while view:
        view = view[os.write(plan_w, view):]
    os.close(plan_w)
    return pid, events_r, out_r, err_r


def _collect(events_r, out_r, err_r):
    """Read the launcher's events and the container's output until all three end."""
    buffers = {events_r: bytearray(), out_r: bytearray(), err_r: bytearray()}
    poller = select.poll()
    for fd in buffers:
        poller.register(fd, select.POLLIN)
    open_fds = set(buffers)
    while open_fds:
        for fd, _ in poller.poll():
            chunk = os.read(fd, 65536)
            if not chunk:
                poller.unregister(fd)
                open_fds.discard(fd)
                os.close(fd)
            elif len(buffers[fd]) < OUTPUT_LIMIT:
                buffers[fd] += chunk
    events = [jsonwire.loads(line.decode()) for line in bytes(buffers[events_r]).splitlines()
              if line]
    return events, bytes(buffers[out_r]), bytes(buffers[err_r])


def run(store_root, image, options, on_terminal=None):
    """Run ``image`` with ``options`` in the foreground; return its outcome as a dict:
    id, rc, stdout, stderr, oom_killed. With ``on_terminal(start)`` (terminal.py's
    run_on_terminal, bound to the request) the container's PID 1 gets a pty instead of
    pipes, and the outcome has no stdout or stderr."""
    store = Store(store_root)
    record = store.find_image(image)
    if record is None:
        raise RunError(f"image {image} is not present on this host (pull it first)")
    container_id = os.urandom(32).hex()
    try:
        plan = plan_container(store, record, options, container_id)
        plan["tty"] = on_terminal is not None
        limits = limits_of(options)
        cgroups.check_limits(limits)
    except (spec.SpecError, cgroups.CgroupError) as exc:
        raise RunError(str(exc)) from None
    directory = write_dir(plan)
    cgroup = None
    try:
        prepare_volumes(plan)
        driver = cgroups.open_driver()
        cgroup = driver.cgroup(options.get("cgroup_parent") or cgroups.DEFAULT_PARENT,
                               container_id)
        cgroup.create(limits)
        connect.join(store, plan)
        if on_terminal is None:
            code, stdout, stderr = _launch_foreground(plan, cgroup)
            outcome = {"stdout": stdout.decode("utf-8", "replace"),
                       "stderr": stderr.decode("utf-8", "replace")}
        else:
            outcome = on_terminal(lambda slave: _spawn(plan, cgroup, slave)[:2])
            code = outcome.pop("rc")
        oom = cgroup.oom_kills() > 0
    except (OSError, cgroups.CgroupError, connect.ConnectError) as exc:
        raise RunError(f"cannot run the container: {exc}") from None
    finally:
        connect.leave(store, plan)
        if cgroup is not None:
            try:
                cgroup.remove()
            except cgroups.CgroupError:
                pass
        if options.get("rm", True):
            remove_tree(directory, ignore_errors=True)
            remove_anonymous_volumes(plan)
    return dict(outcome, id=container_id, rc=code, oom_killed=oom)


def _launch_foreground(plan, cgroup):
    """Run the launcher for ``plan`` and wait; (exit code, stdout, stderr)."""
    pid, events_r, out_r, err_r = _spawn(plan, cgroup)
    events, stdout, stderr = _collect(events_r, out_r, err_r)
    os.waitpid(pid, 0)
    errors = [e["error"] for e in events if "error" in e]
    if errors:
        raise RunError(errors[0])
    exited = [e["exited"] for e in events if "exited" in e]
    if not exited:
        raise RunError("the launcher ended without reporting the exit")
    return exited[0], stdout, stderr


def exec_plan(store, config, pid, options):
    """The launcher's plan for a command in the running container (config) whose PID 1
    is ``pid``: its user unless ``user`` is given, its env plus ``env``."""
    record = store.find_image(config.get("image_id") or "")
    lower_dirs = config.get("lower_dirs") or []
    user = options.get("user")
    if user is None:
        user = (config.get("options") or {}).get("user") or (
            ((record or {}).get("config") or {}).get("config") or {}).get("User") or ""
    command = spec.words(options.get("command"), "command")
    if not command:
        raise RunError("exec needs a command")
    try:
        uid, gid, groups, home = spec.resolve_user(
            user, _image_file(lower_dirs, "etc/passwd"), _image_file(lower_dirs, "etc/group"))
        env = spec.environment({"Env": config["env"]}, options.get("env"), home=home)
    except spec.SpecError as exc:
        raise RunError(str(exc)) from None
    plan = {"mode": "exec", "pid": pid, "argv": command, "env": env, "uid": uid, "gid": gid,
            "groups": groups, "working_dir": options.get("working_dir")
            or config.get("working_dir") or "/",
            "capabilities": config["capabilities"], "privileged": config.get("privileged"),
            "no_new_privileges": config.get("no_new_privileges"),
            "tty": bool(options.get("tty"))}
    return plan


def _cgroup_of(config):
    if not config.get("cgroup"):
        return None
    return cgroups.open_driver().cgroup(config["cgroup"]["parent"], config["cgroup"]["name"])


def exec_in(store, config, pid, options):
    """Run a command in the running container, as docker exec does (its namespaces,
    cgroup, capabilities and seccomp filter); return rc, stdout, stderr."""
    code, stdout, stderr = _launch_foreground(exec_plan(store, config, pid, options),
                                              _cgroup_of(config))
    return {"rc": code, "stdout": stdout.decode("utf-8", "replace"),
            "stderr": stderr.decode("utf-8", "replace")}


def start_exec_on_terminal(store, config, pid, options, terminal):
    """Start a command in the container on pty slave ``terminal`` (its controlling
    terminal); return (launcher pid, events fd) for the caller to pump and wait on."""
    launcher, events_r, _, _ = _spawn(exec_plan(store, config, pid, dict(options, tty=True)),
                                      _cgroup_of(config), terminal)
    return launcher, events_r

"""Detached containers in the store: create, start (through the host's monitor),
stop, remove, and inspect them as Docker shows them.

A container is the directory STORE/containers/ID: config.json (the launcher's plan plus
its name, image, options, restart policy and cgroup), state.json (kept by its
supervisor), container.log, and the overlay upper and work dirs. Names are unique per
host. The truth about a running container is checked on every read: a supervisor that
is gone while its container's PID 1 still runs leaves it running, unsupervised; one
whose PID 1 is gone too marks it exited, its code unknown (-1).
"""

import _signal as signal  # the signal module imports enum: milliseconds per payload
import os
import time

from agent_payload import cgroups, jsonfile
from agent_payload.oci.store import Store, remove_tree
from agent_payload.runtime import connect, health, monitor, records, spec
from agent_payload.runtime import run as runner
from agent_payload.runtime.records import update_state

STOP_SIGNALS = {name: getattr(signal, name) for name in dir(signal)
                if name.startswith("SIG") and not name.startswith("SIG_")
                and isinstance(getattr(signal, name), int)}


class ContainerError(Exception):
    """A container operation failed (one line naming the container)."""


def find(store, name):
    """(directory, config) of the container named ``name`` (or with that id), else None."""
    return records.find_container(store.root, name)


def list_all(store):
    """[(directory, config)] of every named container in the store."""
    return [(d, c) for d, c in records.list_containers(store.root) if c.get("name")]


def create(store, name, image, options):
    """Create the container (not started); return its directory."""
    if find(store, name) is not None:
        raise ContainerError(f"a container named {name} exists already")
    record = store.find_image(image)
    if record is None:
        raise ContainerError(f"image {image} is not present on this host (pull it first)")
    container_id = os.urandom(32).hex()
    image_config = (record.get("config") or {}).get("config") or {}
    try:
        plan = runner.plan_container(store, record, options, container_id)
        limits = runner.limits_of(options)
        cgroups.check_limits(limits)
        plan["healthcheck"] = health.config_of(options.get("healthcheck"),
                                               image_config.get("Healthcheck"))
    except (spec.SpecError, cgroups.CgroupError, runner.RunError,
            health.HealthError) as exc:
        raise ContainerError(str(exc)) from None
    parent = options.get("cgroup_parent") or cgroups.DEFAULT_PARENT
    plan.update(name=name, image=image, image_id=record["id"], created=records.now(),
                options=options, restart_policy=options.get("restart_policy") or "no",
                stop_signal=options.get("stop_signal") or image_config.get("StopSignal")
                or "SIGTERM", auto_remove=bool(options.get("auto_remove")),
                cgroup={"parent": parent, "name": container_id})
    directory = runner.write_dir(plan)
    try:
        runner.prepare_volumes(plan)
        cgroups.open_driver().cgroup(parent, container_id).create(limits)
        connect.join(store, plan)
        jsonfile.write_json(os.path.join(directory, "config.json"), plan)
        update_state(directory, status="created", running=False, pid=0, exit_code=0,
                     restart_count=0, started_at="0001-01-01T00:00:00Z",
                     finished_at="0001-01-01T00:00:00Z", oom_killed=False, error="")
    except (OSError, cgroups.CgroupError, runner.RunError, connect.ConnectError) as exc:
        _discard(directory, plan, store)
        raise ContainerError(f"cannot create: {exc}") from None
    except BaseException:  # a bug or an interrupt: still nothing may be left behind
        _discard(directory, plan, store)
        raise
    return directory


def _store_root(directory):
    return os.path.dirname(os.path.dirname(directory))  # STORE/containers/ID


def _alive(pid):
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def state(directory, version=None):
    """The container's state.json, checked against the processes it names. A container
    whose monitor died is taken up by a new one when ``version`` (the payload's) is
    given and its PID 1 still runs; else it is marked exited, its code unknown (-1)."""
    current = jsonfile.read_json(os.path.join(directory, records.STATE), {}) or {}
    if current.get("status") in ("running", "restarting") and not _alive(
            current.get("supervisor")):
        if _alive(current.get("pid")):
            current = update_state(directory, error="supervisor lost")
            if version is not None:
                path = monitor.ensure(version, runner.payload_root(), _store_root(directory))
                monitor.start_container(path, directory, op="adopt")
                current = jsonfile.read_json(os.path.join(directory, records.STATE), {}) or {}
        else:
            current = update_state(directory, status="exited", running=False, pid=0,
                                   exit_code=-1, error="supervisor lost",
                                   finished_at=records.now(), supervisor=0)
    return current


def start(directory, version, python=None, wait=10.0):
    """Start a created or exited container and wait until it runs (or has ended)."""
    current = state(directory)
    if current.get("status") == "running":
        return current
    stop_file = os.path.join(directory, records.STOP)
    if os.path.exists(stop_file):
        os.unlink(stop_file)
    update_state(directory, status="starting")
    try:
        path = monitor.ensure(version, runner.payload_root(), _store_root(directory), python)
        monitor.start_container(path, directory)
    except OSError as exc:  # not left "starting" for ever: it never ran
        update_state(directory, status=current.get("status") or "created", error=str(exc))
        raise ContainerError(f"cannot start: {exc}") from None
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if not os.path.isdir(directory):
            return {"status": "removed"}  # it ran, ended and removed itself (auto_remove)
        current = jsonfile.read_json(os.path.join(directory, records.STATE), {}) or {}
        if current.get("status") in ("running", "exited"):
            if current.get("status") == "exited" and current.get("error"):
                raise ContainerError(current["error"])
            return current
        time.sleep(0.01)
    raise ContainerError("the container did not start within "
                         f"{wait:g}s (state {current.get('status')})")


def stop(directory, config, timeout=10.0):
    """Send the stop signal to PID 1, SIGKILL everything after ``timeout`` seconds; wait
    until the supervisor has recorded the exit."""
    current = state(directory)
    with open(os.path.join(directory, records.STOP), "w"):
        pass  # no restart after this exit
    if current.get("status") not in ("running", "restarting"):
        return False
    pid = current.get("pid")
    if pid:
        try:
            os.kill(pid, STOP_SIGNALS.get(config.get("stop_signal"), signal.SIGTERM))
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and state(directory).get("status") != "exited":
        time.sleep(0.02)
    if state(directory).get("status") != "exited":
        group = _cgroup(config)
        if group is not None:
            group.kill()
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline and state(directory).get("status") != "exited":
            time.sleep(0.02)
    return True


def _cgroup(config):
    if not config.get("cgroup"):
        return None
    try:
        return cgroups.open_driver().cgroup(config["cgroup"]["parent"],
                                            config["cgroup"]["name"])
    except cgroups.CgroupError:
        return None


def _network_settings(config):
    networks = config.get("network_settings") or {}
    first = next(iter(networks.values()), {})
    return {"Networks": networks, "IPAddress": first.get("IPAddress", ""),
            "Gateway": first.get("Gateway", ""), "MacAddress": first.get("MacAddress", ""),
            "Ports": config.get("published") or {}}


def _discard(directory, plan, store=None):
    if store is not None:
        connect.leave(store, plan)
    group = _cgroup(plan)
    if group is not None:
        try:
            group.remove()
        except cgroups.CgroupError:
            pass
    runner.remove_anonymous_volumes(plan)
    remove_tree(directory, ignore_errors=True)


def remove(directory, config, force=False, stop_timeout=0):
    """Remove a stopped container (a running one only with ``force``, after it was
    stopped: the stop signal, then SIGKILL after ``stop_timeout`` seconds)."""
    if state(directory).get("status") in ("running", "restarting"):
        if not force:
            raise ContainerError(f"cannot remove running container {config['name']}: "
                                 "stop it first or force it")
        stop(directory, config, timeout=stop_timeout)
    _discard(directory, config, Store(_store_root(directory)))


def rename(store, directory, config, new_name):
    """Give the container another name (refused when one has it already)."""
    if find(store, new_name) is not None:
        raise ContainerError(f"a container named {new_name} exists already")
    jsonfile.write_json(os.path.join(directory, "config.json"), dict(config, name=new_name))


def inspect(directory, config):
    """The container as docker inspect shows it (the parts fleet has)."""
    current = state(directory)
    options = config.get("options") or {}
    status = current.get("status", "created")
    health_state = {}
    if config.get("healthcheck"):
        health_state["Health"] = current.get("health") or {"Status": "starting",
                                                          "FailingStreak": 0, "Log": []}
    return {
        "Id": os.path.basename(directory),
        "Created": config.get("created"),
        "Path": config["argv"][0],
        "Args": config["argv"][1:],
        "State": {"Status": "running" if status == "restarting" else status,
                  "Running": status in ("running", "restarting"),
                  "Paused": False, "Restarting": status == "restarting",
                  "OOMKilled": bool(current.get("oom_killed")), "Dead": False,
                  "Pid": current.get("pid", 0), "ExitCode": current.get("exit_code", 0),
                  "Error": current.get("error", ""),
                  "StartedAt": current.get("started_at"),
                  "FinishedAt": current.get("finished_at"), **health_state},
        "Image": config.get("image_id"),
        "ResolvConfPath": config["etc_files"]["resolv.conf"],
        "HostnamePath": config["etc_files"]["hostname"],
        "HostsPath": config["etc_files"]["hosts"],
        "LogPath": os.path.join(directory, records.LOG),
        "Name": "/" + config["name"],
        "RestartCount": current.get("restart_count", 0),
        "Driver": "overlay",
        "Mounts": [{"Type": "volume" if m.get("volume") else m["type"],
                    "Name": m.get("volume"), "Source": m.get("source"),
                    "Destination": m["target"], "RW": not m.get("readonly")}
                   for m in config.get("mounts") or []],
        "Config": {"Hostname": config["hostname"], "User": options.get("user") or "",
                   "Env": config["env"], "Cmd": config["argv"], "Image": config.get("image"),
                   "WorkingDir": config.get("working_dir"),
                   "Labels": options.get("labels") or {},
                   "ExposedPorts": {port: {} for port in config.get("exposed") or []},
                   "StopSignal": config.get("stop_signal")},
        "HostConfig": {"RestartPolicy": {"Name": config.get("restart_policy", "no")},
                       "AutoRemove": config.get("auto_remove", False),
                       "NetworkMode": config.get("network_mode"),
                       "Privileged": config.get("privileged", False),
                       "ReadonlyRootfs": config.get("read_only", False),
                       "CapAdd": options.get("cap_add") or [],
                       "CapDrop": options.get("cap_drop") or []},
        "GraphDriver": {"Name": "overlay", "Data": {
            "LowerDir": ":".join(config.get("lower_dirs") or []),
            "UpperDir": config.get("upper_dir"), "WorkDir": config.get("work_dir"),
            "MergedDir": config.get("rootfs")}},
        "NetworkSettings": _network_settings(config),
    }

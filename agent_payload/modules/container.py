"""container: a named, detached container on the host, in the state asked for.

Options (besides those of container_run, which this module shares):
  name: the container's name on this host (required).
  image: the image (reference or id) in the host's store; needed to create the
      container. Without it, the states act on the existing container as it is (what
      `fleet start/stop/rm` do), and a missing container is an error.
  state: started (default: created if missing, and running), present (created),
      stopped, restarted (stopped if running, then started), or absent (stopped and
      removed with its anonymous volumes).
  restart_policy: no (default), on-failure[:N], always, unless-stopped.
  stop_timeout: seconds between the stop signal and SIGKILL (default 10).
  stop_signal: the signal that asks the container to stop (default: the image's
      StopSignal, else SIGTERM).
  auto_remove: remove the container when it exits (kept for docker's --rm).
  labels: a mapping kept with the container.
  healthcheck: {test (a list as Docker's: CMD ... / CMD-SHELL ...; or a string for the
      shell), interval, timeout, start_period (durations: 30s, 1m30s), retries,
      disable}; the image's Healthcheck by default. Reported in State.Health.
  recreate: remove and create it again even when nothing differs.
  pull: missing (default: pull the image when the store lacks it), always (ask the
      registry; a new image recreates the container), or never; with the image module's
      registry_auth, insecure_registries and ca_file.
  force_kill: with state=absent or stopped, kill at once instead of stopping.

Idempotent: an existing container whose options equal the ones given is left as it is
(started if asked); any difference (an option added, changed or removed) recreates it,
and --diff shows the differences. The host's monitor (one daemon for all containers,
runtime/monitor.py) starts and watches it, so it keeps running when the SSH session
ends; its output goes to container.log as Docker's json-file driver writes it.

Returns ``container``: the container as docker inspect shows it.
"""

from agent_payload import argspec
from agent_payload.modules import image as image_module
from agent_payload.modules.container_run import CONTAINER_OPTIONS
from agent_payload.oci.store import Store, StoreError
from agent_payload.runtime import containers
from agent_payload.runtime.containers import ContainerError

ARGUMENT_SPEC = dict(
    CONTAINER_OPTIONS,
    name={"type": "str", "required": True},
    image={"type": "str"},
    state={"type": "str", "default": "started",
           "choices": ["started", "present", "stopped", "restarted", "absent"]},
    restart_policy={"type": "str", "default": "no"},
    stop_timeout={"type": "int", "default": 10},
    stop_signal={"type": "str"},
    auto_remove={"type": "bool", "default": False},
    labels={"type": "dict", "default": {}},
    healthcheck={"type": "dict"},
    recreate={"type": "bool", "default": False},
    force_kill={"type": "bool", "default": False},
    pull={"type": "str", "default": "missing", "choices": ["missing", "always", "never"]},
    **{key: image_module.ARGUMENT_SPEC[key]
       for key in ("registry_auth", "insecure_registries", "ca_file")},
)
# What the container is made from; the rest only says what to do with it.
_ACTIONS = ("name", "state", "store", "recreate", "force_kill", "stop_timeout", "pull",
            "registry_auth", "insecure_registries", "ca_file")


def _wanted(params):
    return {key: value for key, value in params.items()
            if key not in _ACTIONS and value is not None}


def _differences(old, new):
    keys = sorted(set(old) | set(new))
    return {key: {"before": old.get(key), "after": new.get(key)}
            for key in keys if old.get(key) != new.get(key)}


def _policy_ok(policy):
    name, _, limit = policy.partition(":")
    return name in ("no", "always", "unless-stopped") and not limit or (
        name == "on-failure" and (not limit or limit.isdigit()))


def run(params, ctx):
    """Bring the container to the state asked for."""
    name = params["name"]
    if not _policy_ok(params["restart_policy"]):
        return {"failed": True, "changed": False,
                "msg": f"restart_policy: {params['restart_policy']!r} is not no, "
                       "on-failure[:N], always or unless-stopped"}
    try:
        store = Store(params["store"])
        return _converge(store, params, ctx)
    except (ContainerError, StoreError, OSError) as exc:
        return {"failed": True, "changed": False, "msg": f"{name}: {exc}"}


def _converge(store, params, ctx):
    name, wanted_state = params["name"], params["state"]
    found = containers.find(store, name)
    result = {"changed": False}
    timeout = 0 if params["force_kill"] else params["stop_timeout"]
    if wanted_state == "absent":
        if found is not None:
            result["changed"] = True
            if not ctx.check_mode:
                if timeout:
                    containers.stop(found[0], found[1], timeout)
                containers.remove(found[0], found[1], force=True)
        return result
    if params.get("image") and params["pull"] != "never" and (
            params["pull"] == "always" or store.find_image(params["image"]) is None):
        wanted_image = {"name": params["image"], "pull": params["pull"],
                        "store": params["store"],
                        "insecure_registries": params["insecure_registries"]}
        for key in ("registry_auth", "ca_file"):
            if params.get(key) is not None:
                wanted_image[key] = params[key]
        pulled = image_module.run(argspec.validate(image_module.ARGUMENT_SPEC, wanted_image),
                                  ctx)
        if pulled.get("failed"):
            raise ContainerError(pulled.get("msg"))
    if not params.get("image"):
        if found is None:
            raise ContainerError("no such container (give image to create it)")
        wanted = found[1].get("options") or {}
    else:
        wanted = _wanted(params)
    if found is not None and params.get("image"):
        differences = _differences(found[1].get("options") or {}, wanted)
        record = store.find_image(params["image"])
        if record is not None and record["id"] != found[1].get("image_id"):
            differences["image_id"] = {"before": found[1].get("image_id"),
                                       "after": record["id"]}
        if differences or params["recreate"]:
            result.update(changed=True)
            if ctx.diff_mode:
                result["diff"] = {"before": {k: v["before"] for k, v in differences.items()},
                                  "after": {k: v["after"] for k, v in differences.items()}}
            if ctx.check_mode:
                return result
            containers.stop(found[0], found[1], timeout)
            containers.remove(found[0], found[1])
            found = None
    if found is None:
        result["changed"] = True
        if ctx.check_mode:
            return result
        directory = containers.create(store, name, params["image"], wanted)
        found = (directory, containers.find(store, name)[1])
    directory, config = found
    current = containers.state(directory, ctx.payload_info.get("version"))
    running = current.get("status") in ("running", "restarting")
    if wanted_state == "restarted":
        result["changed"] = True
        if not ctx.check_mode:
            if running:
                containers.stop(directory, config, timeout)
            containers.start(directory, ctx.payload_info.get("version"))
    elif wanted_state == "started" and not running:
        result["changed"] = True
        if not ctx.check_mode:
            containers.start(directory, ctx.payload_info.get("version"))
    elif wanted_state == "stopped" and running:
        result["changed"] = True
        if not ctx.check_mode:
            containers.stop(directory, config, timeout)
    result["container"] = containers.inspect(directory, config)
    return result

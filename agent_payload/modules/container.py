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
  replicas: run the service NAME as N containers NAME.1 … NAME.N (labels fleet.service,
      fleet.replica, fleet.replicas). In a playbook the controller spreads them over the
      play's hosts (placement: spread, the default, or {max_per_host: K};
      constraints: ["group == web", "host != lab01"]; replicas that publish a fixed host
      port go at most one per host) and rolls a change out batch by batch (update:
      {parallelism: K, order: stop-first | start-first, monitor: seconds}); a host is
      told which numbers it runs. Alone (fleet run), all N run on the host. Scaling down
      removes the highest numbers; state=absent removes every replica.

Idempotent: an existing container whose options equal the ones given is left as it is
(started if asked); any difference (an option added, changed or removed) recreates it,
and --diff shows the differences. The host's monitor (one daemon for all containers,
runtime/monitor.py) starts and watches it, so it keeps running when the SSH session
ends; its output goes to container.log as Docker's json-file driver writes it.

Returns ``container``: the container as docker inspect shows it.
"""

import os
import time

from agent_payload import argspec, jsonfile, labels
from agent_payload.modules._pull_options import PULL_OPTIONS
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
    replicas={"type": "int"},
    placement={"type": "raw"},
    constraints={"type": "list", "elements": "str", "default": []},
    update={"type": "dict"},
    # from the controller: the replica numbers this host runs (others are removed); of
    # them _batch is converged now (default: all) and _probe only says which of the
    # rest would change (``stale``); _wait: seconds a changed replica must stay up
    _replicas={"type": "list", "elements": "int"},
    _batch={"type": "list", "elements": "int"},
    _probe={"type": "bool", "default": False},
    _wait={"type": "float", "default": 0.0},
    **PULL_OPTIONS,
)
# What the container is made from; the rest only says what to do with it.
_ACTIONS = ("name", "state", "store", "recreate", "force_kill", "stop_timeout", "pull",
            "registry_auth", "insecure_registries", "ca_file", "replicas", "placement",
            "constraints", "update", "_replicas", "_batch", "_probe", "_wait")


def _wanted(params):
    return {key: value for key, value in params.items()
            if key not in _ACTIONS and value is not None}


def _comparable(options):
    """Options as compared for a recreate: how many replicas are wanted is not one of
    them (scaling leaves the running replicas alone; their label is updated in place)."""
    found = dict(options.get("labels") or {})
    if labels.REPLICAS not in found:
        return options
    found.pop(labels.REPLICAS)
    return dict(options, labels=found)


def _differences(old, new):
    old, new = _comparable(old), _comparable(new)
    keys = sorted(set(old) | set(new))
    return {key: {"before": old.get(key), "after": new.get(key)}
            for key in keys if old.get(key) != new.get(key)}


def _stop_timeout(params):
    """Seconds between the stop signal and SIGKILL (none with force_kill)."""
    return 0 if params["force_kill"] else params["stop_timeout"]


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
        if params.get("replicas") is not None:
            return _service(store, params, ctx)
        return _converge(store, params, ctx)
    except (ContainerError, StoreError, OSError) as exc:
        return {"failed": True, "changed": False, "msg": f"{name}: {exc}"}


def _replicas_here(store, service, project):
    """{number: (directory, config)} of the service's replicas on this host."""
    found = {}
    for directory, config in containers.list_all(store):
        own = (config.get("options") or {}).get("labels") or {}
        number = str(own.get(labels.REPLICA, ""))
        # (a start-first rollout's passing replica, NAME.N-next, is not one of them)
        if own.get(labels.SERVICE) == service and own.get(labels.PROJECT) == project \
                and number.isdigit() and config["name"] == f"{service}.{number}":
            found[int(number)] = (directory, config)
    return found


def _service(store, params, ctx):
    """The replicas of service NAME this host runs (``_replicas``, else all of them)."""
    service, wanted = params["name"], params["replicas"]
    if wanted < 0:
        raise ContainerError("replicas must be 0 or more")
    numbers = params.get("_replicas")
    if numbers is None:
        numbers = list(range(1, wanted + 1))
    if params["state"] == "absent":
        numbers = []
    batch = numbers if params.get("_batch") is None else params["_batch"]
    given = dict(params.get("labels") or {})
    here = _replicas_here(store, service, given.get(labels.PROJECT))
    result = {"changed": False, "containers": [], "removed": [], "stale": []}
    timeout = _stop_timeout(params)
    for number in sorted(set(here) - set(numbers), reverse=True):
        directory, config = here[number]
        result["changed"] = True
        result["removed"].append(config["name"])
        if not ctx.check_mode:
            containers.remove(directory, config, force=True, stop_timeout=timeout)
    for number in sorted(numbers):
        replica = dict(params, name=f"{service}.{number}", replicas=None,
                       hostname=params.get("hostname") or f"{service}.{number}", labels=dict(
            given, **{labels.SERVICE: service, labels.REPLICA: str(number),
                      labels.REPLICAS: str(wanted)}))
        if number not in batch:
            if params["_probe"] and _converge(store, replica, _Dry(ctx))["changed"]:
                result["stale"].append(number)
            elif number in here and not ctx.check_mode:
                _relabel(store, replica, here[number])
            continue
        start_first = (params.get("update") or {}).get("order") == "start-first"
        if start_first and number in here and not ctx.check_mode \
                and _converge(store, replica, _Dry(ctx))["changed"]:
            outcome = _start_first(store, replica, here[number], params, ctx)
        else:
            outcome = _converge(store, replica, ctx)
        result["changed"] = result["changed"] or outcome["changed"]
        if outcome.get("container"):
            if not ctx.check_mode:
                outcome["container"] = _relabel(store, replica, containers.find(
                    store, replica["name"])) or outcome["container"]
            if params["_wait"] and outcome["changed"] and not ctx.check_mode \
                    and not start_first:
                outcome["container"] = _settled(store, replica["name"], params["_wait"])
            result["containers"].append(outcome["container"])
    return result


class _Dry:
    """A check-mode view of a request's context (what would change, nothing done)."""

    check_mode, diff_mode = True, False

    def __init__(self, ctx):
        self.payload_info = ctx.payload_info


def _start_first(store, replica, old, params, ctx):
    """Replace a replica new before old: the new one starts under a passing name, is
    waited for, then the old one stops and the new one takes its name."""
    passing = replica["name"] + "-next"
    found = containers.find(store, passing)
    if found is not None:  # left by a rollout that failed half-way
        containers.remove(found[0], found[1], force=True)
    outcome = _converge(store, dict(replica, name=passing), ctx)
    if params["_wait"]:
        try:
            _settled(store, passing, params["_wait"])
        except ContainerError:
            found = containers.find(store, passing)
            containers.remove(found[0], found[1], force=True)  # the old one serves on
            raise
    timeout = _stop_timeout(params)
    containers.remove(old[0], old[1], force=True, stop_timeout=timeout)
    directory, config = containers.find(store, passing)
    containers.rename(store, directory, config, replica["name"])
    outcome["container"] = containers.inspect(*containers.find(store, replica["name"]))
    return outcome


def _relabel(store, replica, found):
    """A kept replica's fleet.replicas label, updated in place when scaling (no
    recreate: it is not compared); its inspect when it changed, else None."""
    directory, config = found
    options = config.get("options") or {}
    wanted = replica["labels"][labels.REPLICAS]
    if (options.get("labels") or {}).get(labels.REPLICAS) == wanted:
        return None
    options["labels"] = dict(options.get("labels") or {}, **{labels.REPLICAS: wanted})
    config["options"] = options
    jsonfile.write_json(os.path.join(directory, "config.json"), config)
    return containers.inspect(directory, config)


def _settled(store, name, seconds):
    """Wait until the replica is healthy (with a healthcheck) or has kept running for
    ``seconds``; ContainerError when it exits or turns unhealthy (a rollout stops)."""
    deadline = time.monotonic() + seconds
    while True:
        directory, config = containers.find(store, name)
        shown = containers.inspect(directory, config)
        state = shown["State"]
        health = (state.get("Health") or {}).get("Status")
        if not state["Running"] or state["Restarting"]:
            raise ContainerError(f"{name} did not stay up (exit code {state['ExitCode']})")
        if health == "unhealthy":
            raise ContainerError(f"{name} is unhealthy")
        if health == "healthy" or (health is None and time.monotonic() >= deadline):
            return shown
        if health is not None and time.monotonic() >= deadline + 60:
            raise ContainerError(f"{name} was not healthy within {seconds + 60:.0f}s")
        time.sleep(0.1)


def _converge(store, params, ctx):
    name, wanted_state = params["name"], params["state"]
    found = containers.find(store, name)
    result = {"changed": False}
    timeout = _stop_timeout(params)
    if wanted_state == "absent":
        if found is not None:
            result["changed"] = True
            if not ctx.check_mode:
                containers.remove(found[0], found[1], force=True, stop_timeout=timeout)
        return result
    if params.get("image") and params["pull"] != "never" and (
            params["pull"] == "always" or store.find_image(params["image"]) is None):
        wanted_image = {"name": params["image"], "pull": params["pull"],
                        "store": params["store"],
                        "insecure_registries": params["insecure_registries"]}
        for key in ("registry_auth", "ca_file"):
            if params.get(key) is not None:
                wanted_image[key] = params[key]
        from agent_payload.modules import image as image_module  # only to pull

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
            containers.remove(found[0], found[1], force=True, stop_timeout=timeout)
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

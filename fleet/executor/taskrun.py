"""Running one task on one host: conditions, loops, templating, the action itself,
changed_when / failed_when, register and notify.

The action is either a remote module (one request on the host's payload session; copy
and template stream their content only when the host asks for it) or a controller
action (debug, assert, set_fact, template's rendering).
"""

import importlib
import os
import threading

from agent_payload import argspec
from fleet import modules, projects, templating
from fleet.executor import links, services
from fleet.executor.content import Content
from fleet.executor.results import CHANGED, FAILED, OK, SKIPPED, UNREACHABLE, TaskResult
from fleet.transport.session import RequestError
from fleet.transport.ssh import TransportError
from fleet.variables import loop_variables


class RunContext:
    """Everything a task needs besides itself: options, variables, connections, reporter."""

    def __init__(self, options, hostvars, connections, reporter, playbook_dir):
        self.options = options
        self.hostvars = hostvars
        self.connections = connections
        self.reporter = reporter
        self.playbook_dir = playbook_dir
        self._contents = {}
        self._lock = threading.Lock()
        self.notified = {}
        self.stats = {}
        self.stats_lock = threading.Lock()
        self.gone = set()  # failed or unreachable: out of every later play
        self.play_hosts = {}  # {"play_hosts": PlayHosts} of the running batch
        self.pool = None  # the run's thread pool, set by the runner
        self.link_lookups = links.LinkLookups(connections)
        self.service_runs = services.ServiceRuns(connections)
        self.playbook = None  # what labels the objects its tasks create (projects.py)

    def notify(self, host, name):
        """Remember that ``host`` notified handler (or listen topic) ``name``."""
        with self._lock:
            names = self.notified.setdefault(host, [])
            if name not in names:
                names.append(name)

    def content_of(self, path):
        """The Content of a controller file, hashed once per run."""
        stat = os.stat(path)
        key = (path, stat.st_mtime_ns, stat.st_size)
        with self._lock:
            if key not in self._contents:
                self._contents[key] = Content(path=path)
            return self._contents[key]


def _conditions(task, chain):
    conditions = []
    for block in chain:
        conditions += list(block.when or [])
    return conditions + list(task.when or [])


def _inherited(task, chain, play, name):
    """A keyword's value from the task, else its innermost block, else the play."""
    for owner in (task,) + tuple(reversed(chain)) + (play,):
        value = getattr(owner, name, None)
        if value is not None:
            return value
    return None


def run_task(ctx, play, task, chain, host):
    """Run ``task`` on ``host``; return its TaskResult (never raises for task failures)."""
    label = task.name or task.action
    origin = str(task.origin)

    def done(status, result, item=None, ignored=False):
        return TaskResult(host, label, origin, status, result, ignored, item, task.action)

    try:
        variables = ctx.hostvars.for_task(host, task, blocks=chain)
        conditions = _conditions(task, chain)
        if task.loop is None:
            false = _first_false(conditions, variables)
            if false is not None:
                result = {"skipped": True, "changed": False, "false_condition": false}
            else:
                result = _run_once(ctx, play, task, chain, host, variables)
        else:
            items = templating.render(task.loop, variables)
            if not isinstance(items, list):
                raise templating.TemplateError(
                    f"loop needs a list, got {type(items).__name__}")
            result = _run_loop(ctx, play, task, chain, host, items, conditions)
    except TransportError as exc:
        ctx.connections.drop(host, str(exc))
        return done(UNREACHABLE, {"unreachable": True, "msg": str(exc), "changed": False})
    except (templating.TemplateError, argspec.ArgumentError) as exc:
        result = {"failed": True, "changed": False, "msg": f"{origin}: {exc}"}
    except Exception as exc:  # one host's surprise must not end the run for the others
        result = {"failed": True, "changed": False,
                  "msg": f"{origin}: {type(exc).__name__}: {exc}"}
    if task.register:  # skipped results are registered too, as Ansible does
        ctx.hostvars.register(host, task.register, _registered(result))
    if result.get("skipped"):
        return done(SKIPPED, result)
    failed = bool(result.get("failed"))
    ignore = _truth(task.ignore_errors, ctx, host, task, chain)
    if failed and not ignore:
        return done(FAILED, result)
    if failed:
        return done(FAILED, result, ignored=True)
    if result.get("changed"):
        for name in task.notify or []:
            ctx.notify(host, name)
        return done(CHANGED, result)
    return done(OK, result)


def _first_false(conditions, variables):
    for condition in conditions:
        if not templating.evaluate_condition(condition, variables):
            return condition
    return None


def _truth(value, ctx, host, task, chain):
    if isinstance(value, str):
        return templating.evaluate_condition(value, ctx.hostvars.for_task(host, task, blocks=chain))
    return bool(value)


def _registered(result):
    return {k: v for k, v in result.items() if not k.startswith("_")}


def _run_loop(ctx, play, task, chain, host, items, conditions):
    results = []
    for item in items:
        variables = ctx.hostvars.for_task(host, task, blocks=chain,
                                          loop_vars=loop_variables(task.loop_var, item))
        if not all(templating.evaluate_condition(c, variables) for c in conditions):
            results.append({"skipped": True, "changed": False, task.loop_var: item,
                            "item": item})
            continue
        try:
            one = _run_once(ctx, play, task, chain, host, variables)
        except (templating.TemplateError, argspec.ArgumentError) as exc:
            one = {"failed": True, "changed": False, "msg": f"{task.origin}: {exc}"}
        one = dict(one, item=item)
        if task.loop_var != "item":
            one[task.loop_var] = item
        results.append(one)
    if items and all(r.get("skipped") for r in results):
        return {"skipped": True, "changed": False, "results": results,
                "msg": "All items skipped"}
    failed = any(r.get("failed") for r in results)
    return {"changed": any(r.get("changed") for r in results), "failed": failed,
            "results": results,
            "msg": "One or more items failed" if failed else "All items completed",
            "skipped": not items}


def _run_once(ctx, play, task, chain, host, variables):  # noqa: C901 - one task's whole path
    """Template the arguments, run the action, apply changed_when / failed_when."""
    args = templating.drop_omitted(templating.render(task.args, variables))
    action = modules.action(task.action)
    spec = modules.user_spec(action.spec)
    if spec is not None:
        args = argspec.validate(spec, args)
    if ctx.options.scale is not None:
        if not services.is_service(task.action, args) or args["name"] not in ctx.options.scale:
            return {"skipped": True, "changed": False, "skip_reason": "fleet scale: not "
                    f"one of {', '.join(sorted(ctx.options.scale))}"}
        args = dict(args, replicas=ctx.options.scale[args["name"]])
    if ctx.playbook is not None:
        args = projects.with_project(task.action, args, ctx.playbook.project_of(play))
    check = _check_mode(ctx, task)
    become = (_inherited(task, chain, play, "become"),
              _inherited(task, chain, play, "become_user"))
    if action.remote:
        session = ctx.connections.get(host, *become)
        content = None
        if task.action == "copy":
            args, content = _copy_source(ctx, args)
        elif task.action == "image" and not args.get("registry_auth"):
            args = _with_stored_login(args)
        if services.is_service(task.action, args):
            hosts = ctx.play_hosts["play_hosts"].active

            def prepare(target, params):  # each replica host's links, resolved from there
                if links.needs_lookup(task.action, params):
                    return links.resolve(ctx.link_lookups, task, target, params, hosts, become)
                return params

            def seen(listings):
                ctx.link_lookups.prime(task, args.get("store"), listings)

            result = ctx.service_runs.result(task, host, args, hosts, become, prepare, check,
                                             seen)
            return _finish(task, result, variables)
        if links.needs_lookup(task.action, args):
            try:
                args = links.resolve(ctx.link_lookups, task, host, args,
                                     ctx.play_hosts["play_hosts"].active, become)
            except links.LinkError as exc:
                return {"failed": True, "changed": False, "msg": str(exc)}
        result = call_remote(ctx, session, host, task, task.action, args, check, content)
    else:
        handler = importlib.import_module("fleet.actions." + task.action)
        result = handler.run(args, ActionContext(ctx, host, task, variables, check, become))
    return _finish(task, result, variables)


def _finish(task, result, variables):
    """changed_when / failed_when over a task's result."""
    result.setdefault("changed", False)
    result.setdefault("failed", False)
    if task.changed_when is not None or task.failed_when is not None:
        seen = dict(variables)
        if task.register:
            seen[task.register] = _registered(result)
        if task.changed_when is not None:
            result["changed"] = all(templating.evaluate_condition(c, seen)
                                    for c in task.changed_when)
        if task.failed_when is not None:
            result["failed"] = all(templating.evaluate_condition(c, seen)
                                   for c in task.failed_when)
    return result


def _check_mode(ctx, task):
    own = getattr(task, "check_mode", None)
    return ctx.options.check if own is None else bool(own)


def call_remote(ctx, session, host, task, name, params, check, content=None):
    """One request on the session; ``content`` (a Content) is streamed when asked for."""
    request = session.start(name, params, check=check, diff=ctx.options.diff)
    try:
        for kind, value in request.events():
            if kind == "progress":
                if value.get("need_content") and content is not None:
                    for chunk in content.chunks():
                        request.send_data(chunk)
                    request.send_eof()
                else:
                    ctx.reporter.progress(host, task, value)
        return dict(request.result)
    except RequestError as exc:
        return {"failed": True, "changed": False, "msg": f"module {name} failed: {exc}"}


def _copy_source(ctx, args):
    """copy's src (a controller file) or content, as a Content plus the host's params."""
    params = {k: v for k, v in args.items() if k not in ("src", "content") and v is not None}
    if args.get("src") is not None:
        path = find_file(ctx, args["src"], "files")
        content = ctx.content_of(path)
    elif args.get("content") is not None:
        value = args["content"]
        if not isinstance(value, str):
            import json
            value = json.dumps(value)
        content = Content(data=value.encode())
    else:
        raise argspec.ArgumentError("copy needs src or content")
    params.update(content.copy_params())
    return params, content


def _with_stored_login(args):
    """image args with the credentials `fleet login` stored for the image's registry."""
    from agent_payload.oci.reference import ReferenceError, parse_reference
    from fleet.credentials import lookup
    try:
        registry = parse_reference(args["name"]).registry
    except ReferenceError:
        return args  # the module reports the bad name
    login = lookup(registry)
    if login is None:
        return args
    return dict(args, registry_auth={"username": login[0], "password": login[1]})


def find_file(ctx, name, kind):
    """A controller file named in a task: absolute, or under the playbook's KIND/ or dir."""
    if os.path.isabs(name):
        candidates = [name]
    else:
        candidates = [os.path.join(ctx.playbook_dir, kind, name),
                      os.path.join(ctx.playbook_dir, name)]
    for path in candidates:
        if os.path.isfile(path):
            return path
    raise argspec.ArgumentError(f"could not find {name} (looked in {', '.join(candidates)})")


class ActionContext:
    """What a controller action gets: the host, its variables, check mode, the run."""

    def __init__(self, ctx, host, task, variables, check, become=(None, None)):
        self.run = ctx
        self.host = host
        self.task = task
        self.variables = variables
        self.check_mode = check
        self.become = become

    def remote(self, name, params, content=None):
        """Call a remote module on this host (template ships its output through copy)."""
        session = self.run.connections.get(self.host, *self.become)
        return call_remote(self.run, session, self.host, self.task, name, params,
                           self.check_mode, content)

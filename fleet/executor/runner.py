"""Running a playbook: plays, serial batches, facts, strategies, handlers, the recap.

A task is one request per host on that host's persistent payload session; hosts run
in parallel (``forks`` at a time). Linear: a task finishes on every host before the
next one starts (hosts in a rescue section run their own tasks in written order).
Free: each host goes through the play at its own pace. A failed host stops for the
rest of the run; an unreachable host is reported once and skipped afterwards.
"""

import math
import threading
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

from fleet.executor.connections import Connections
from fleet.executor.iterator import HostState, host_tasks, task_order
from fleet.executor.reporter import Reporter
from fleet.executor.results import FAILED, UNREACHABLE, HostStats, TaskResult
from fleet.executor.taskrun import RunContext, call_remote, run_task
from fleet.transport.ssh import TransportError

SECTIONS = ("pre_tasks", "tasks", "post_tasks")


def run_playbook(playbook, inventory, options, reporter=None, connections=None):
    """Run every play of ``playbook``; return {host: HostStats}.

    ``connections`` replaces the SSH sessions (tests run the payload locally)."""
    from fleet.variables import HostVars

    reporter = reporter or Reporter()
    connections = connections or Connections(inventory, options.connect_timeout)
    holder = {}
    hostvars = HostVars(inventory, options.extra_vars, lambda: holder.get("play_hosts"),
                        check_mode=options.check, diff_mode=options.diff,
                        playbook_dir=str(playbook.path.parent))
    ctx = RunContext(options, hostvars, connections, reporter,
                     str(playbook.path.parent))
    ctx.play_hosts = holder
    ctx.playbook = playbook
    ctx.pool = ThreadPoolExecutor(max_workers=max(1, options.forks))
    try:
        for play in playbook.plays:
            hosts = [h for h in inventory.select(play.hosts, limit=options.limit)
                     if h not in ctx.gone]
            for host in hosts:
                ctx.stats.setdefault(host, HostStats())
            for batch in batches(hosts, play.serial):
                _run_batch(ctx, play, hosts, batch)
    except KeyboardInterrupt:
        # Closing the sessions first ends every wait on a host at once; each payload
        # sees its channel close and cancels what it was running.
        connections.close()
        ctx.pool.shutdown(wait=False, cancel_futures=True)
        raise
    finally:
        ctx.pool.shutdown(wait=True)
        connections.close()
    reporter.run_end(ctx.stats)
    return ctx.stats


def batches(hosts, serial):
    """Split hosts into serial batches (numbers or percentages; the last size repeats)."""
    if not serial:
        return [hosts] if hosts else []
    sizes = []
    for value in serial:
        if isinstance(value, str) and value.strip().endswith("%"):
            sizes.append(max(1, math.floor(len(hosts) * float(value.strip()[:-1]) / 100)))
        else:
            sizes.append(max(1, int(value)))
    result, start, index = [], 0, 0
    while start < len(hosts):
        size = sizes[min(index, len(sizes) - 1)]
        result.append(hosts[start:start + size])
        start += size
        index += 1
    return result


def _run_batch(ctx, play, play_hosts, hosts):
    from fleet.playbook import PlaybookError, load_vars_files
    from fleet.templating import TemplateError
    from fleet.variables import PlayHosts

    ctx.reporter.play_start(play, hosts)
    states = {h: HostState(h) for h in hosts}
    ctx.play_hosts["play_hosts"] = PlayHosts(
        all=list(play_hosts), batch=list(hosts),
        active=[h for h in play_hosts if h not in ctx.gone])
    ctx.hostvars.play_context(play)
    if play.vars_files and hosts:
        try:
            ctx.hostvars.play_context(play, load_vars_files(
                play, ctx.playbook_dir, ctx.hostvars.for_play(hosts[0])))
        except (PlaybookError, TemplateError) as exc:  # a templated vars_files path
            for host in hosts:
                _record(ctx, states, TaskResult(host, "vars_files", str(play.origin), FAILED,
                                                {"failed": True, "msg": str(exc)}))
    if play.gather_facts:
        _gather_facts(ctx, play, states)
    elif hosts and _needs_hosts(play, ctx.options):
        ctx.connections.prefetch(hosts, play.become, play.become_user, ctx.options.forks)
    for section in SECTIONS:
        items = getattr(play, section) or []
        if not items:
            continue
        if play.strategy == "free":
            _run_free(ctx, play, items, states)
        else:
            _run_linear(ctx, play, items, states)
        _flush_handlers(ctx, play, states)
    for state in states.values():
        ctx.stats[state.name].rescued += state.rescued
        if state.stopped:
            ctx.gone.add(state.name)


def _needs_hosts(play, options):
    """Whether a task of ``play`` that --tags lets run is one that runs on the hosts."""
    from fleet import modules
    from fleet.playbook import walk_tasks

    items = [i for section in SECTIONS for i in getattr(play, section) or []]
    return any(selected(task, options) and modules.touches_hosts(task.action)
               for task, _ in walk_tasks(items + list(play.handlers or [])))


def selected(task, options):
    """Whether --tags / --skip-tags let ``task`` run (Ansible's always/never/all rules)."""
    tags = set(task.tags or ())
    if tags & set(options.skip_tags):
        return False
    if not options.tags:
        return "never" not in tags
    wanted = set(options.tags)
    if "always" in tags or tags & wanted:
        return True
    if "all" in wanted and "never" not in tags:
        return True
    if "tagged" in wanted and tags:
        return True
    return "untagged" in wanted and not tags


def _record(ctx, states, result):
    with ctx.stats_lock:
        ctx.stats.setdefault(result.host, HostStats()).count(result)
    state = states[result.host]
    if result.status == UNREACHABLE:
        state.unreachable = True
    elif result.status == FAILED and not result.ignored:
        state.failed = True
    ctx.reporter.host_result(result)


def _run_on(ctx, play, task, chain, hosts, states):
    """Run one task on several hosts in parallel and record the results."""
    for result in ctx.pool.map(lambda h: run_task(ctx, play, task, chain, h), hosts):
        _record(ctx, states, result)


def _run_linear(ctx, play, items, states):
    order = task_order(items)
    iterators = {h: host_tasks(items, s) for h, s in states.items() if not s.stopped}
    current = {}

    def advance(host):
        try:
            current[host] = next(iterators[host])
        except StopIteration:
            current.pop(host, None)

    for host in list(iterators):
        advance(host)
    while current:
        task, chain = min(current.values(), key=lambda tc: order[id(tc[0])])
        group = [h for h, (t, _) in current.items() if t is task]
        if selected(task, ctx.options):
            ctx.reporter.task_start(task, group)
            _run_on(ctx, play, task, chain, group, states)
        for host in group:
            advance(host)


def _run_free(ctx, play, items, states):
    started = set()
    lock = threading.Lock()

    def one_host(host):
        for task, chain in host_tasks(items, states[host]):
            if not selected(task, ctx.options):
                continue
            with lock:
                first = id(task) not in started
                started.add(id(task))
            if first:
                ctx.reporter.task_start(task, [host])
            _record(ctx, states, run_task(ctx, play, task, chain, host))

    list(ctx.pool.map(one_host, [h for h, s in states.items() if not s.stopped]))


def _flush_handlers(ctx, play, states):
    """Run each notified handler once, in the order handlers are written."""
    for handler in play.handlers or []:
        names = {handler.name} | set(getattr(handler, "listen", None) or [])
        hosts = [h for h, s in states.items()
                 if not s.stopped and names & set(ctx.notified.get(h, []))]
        if hosts:
            ctx.reporter.handler_start(handler, hosts)
            _run_on(ctx, play, handler, (), hosts, states)
    for host in states:
        ctx.notified.pop(host, None)


GATHER = SimpleNamespace(name="Gathering Facts", action="facts", tags=["always"], when=[],
                         loop=None, register=None, notify=[], origin="facts")


def _gather_facts(ctx, play, states):
    hosts = [h for h, s in states.items() if not s.stopped]
    ctx.reporter.task_start(GATHER, hosts)

    def gather(host):
        try:
            session = ctx.connections.get(host, play.become, play.become_user)
            result = call_remote(ctx, session, host, GATHER, "facts", {}, False)
        except TransportError as exc:
            ctx.connections.drop(host, str(exc))
            return TaskResult(host, GATHER.name, "facts", UNREACHABLE,
                              {"unreachable": True, "msg": str(exc), "changed": False})
        if not result.get("failed"):
            ctx.hostvars.set_facts(host, result.get("ansible_facts", {}))
        return TaskResult(host, GATHER.name, "facts", FAILED if result.get("failed") else "ok",
                          {"changed": False, "msg": result.get("msg", "")})

    for result in ctx.pool.map(gather, hosts):
        _record(ctx, states, result)

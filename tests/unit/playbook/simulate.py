"""Run a debug / set_fact / assert playbook through fleet's parsing, variables and
templating alone (no executor exists yet), recording what each task would report.

Linear strategy, every host one after the other per task, no failures expected. The
records have the same shape as what tests/unit/playbook/ansible_plugins/fleet_parity.py
writes for ansible-playbook, after :func:`normalize`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fleet.inventory import load_inventory
from fleet.playbook import check_playbook, load_playbook, load_vars_files, walk_tasks
from fleet.templating import TemplateError, evaluate_condition, render
from fleet.variables import HostVars, loop_variables


def _debug(args: dict, variables: Any) -> dict:
    if "var" in args:
        name = args["var"]
        try:
            value = render("{{ " + name + " }}", variables)
        except TemplateError:
            value = "VARIABLE IS NOT DEFINED!"
        return {name: value}
    return {"msg": render(args.get("msg", "Hello world!"), variables)}


def _run_once(task: Any, args: Any, variables: Any, hv: HostVars, host: str) -> dict:
    if task.action == "debug":
        return _debug(render(args, variables) if "msg" in args else args, variables)
    if task.action == "set_fact":
        facts = render(args, variables)
        return {"ansible_facts": facts, "_set": facts}
    if task.action == "assert":
        for condition in args["that"] if isinstance(args["that"], list) else [args["that"]]:
            if not evaluate_condition(condition, variables):
                raise AssertionError(f"assert failed on {host}: {condition}")
        return {"msg": "All assertions passed"}
    raise NotImplementedError(task.action)


def _run(task: Any, blocks: tuple, hv: HostVars, host: str) -> tuple[str, dict]:
    conditions = [c for block in blocks for c in block.when] + list(task.when)
    variables = hv.for_task(host, task, blocks)
    if task.loop is None:
        if not all(evaluate_condition(c, variables) for c in conditions):
            return "skipped", {"skipped": True}
        result = _run_once(task, task.args, variables, hv, host)
        facts = result.pop("_set", None)
        if facts is not None:
            hv.set_fact(host, facts)
        if task.register:
            hv.register(host, task.register, {**result, "changed": False, "failed": False})
        return "ok", result
    items = render(task.loop, variables)
    results = []
    facts: dict = {}
    for item in items:
        loop_vars = loop_variables(task.loop_var, item)
        scope = hv.for_task(host, task, blocks, loop_vars)
        if not all(evaluate_condition(c, scope) for c in conditions):
            results.append({"skipped": True})
            continue
        one = _run_once(task, task.args, scope, hv, host)
        facts.update(one.pop("_set", None) or {})
        results.append(one)
    if facts:
        hv.set_fact(host, facts)
    if task.register:
        hv.register(host, task.register, {"results": results, "changed": False})
    if results and all(r.get("skipped") for r in results):
        return "skipped", {"results": results}
    return "ok", {"results": results}


def simulate(playbook: Path, inventory: Path, extra_vars: dict) -> list[dict]:
    """Records {task, action, host, status, result} for every task and host, in order."""
    book = load_playbook(playbook)
    check_playbook(book)
    inv = load_inventory(inventory)
    records = []
    current: list = []
    hv = HostVars(inv, extra_vars, lambda: current, playbook_dir=playbook.parent)
    for play in book.plays:
        hosts = current[:] = inv.select(play.hosts)
        hv.play_context(play, load_vars_files(play, playbook.parent, {**play.vars, **extra_vars}))
        for task, blocks in walk_tasks(play.tasks):
            for host in hosts:
                status, result = _run(task, blocks, hv, host)
                records.append(
                    {
                        "task": task.name or task.action,
                        "action": task.action,
                        "host": host,
                        "status": status,
                        "result": result,
                    }
                )
    return records


def in_order(records: list[dict]) -> list[dict]:
    """``records`` by task, then host (ansible reports hosts as they finish)."""
    first: dict = {}
    for record in records:
        first.setdefault(record["task"], len(first))
    return sorted(records, key=lambda r: (first[r["task"]], r["host"]))


def normalize(record: dict) -> dict:
    """What the parity tests compare: the task, host, status and the debug output."""
    result = record["result"]
    out = {"task": record["task"], "host": record["host"], "status": record["status"]}
    if record["action"].endswith("debug"):
        if "results" in result:
            out["items"] = [_debug_output(r) for r in result["results"]]
        elif record["status"] == "ok":
            out["output"] = _debug_output(result)
    return json.loads(json.dumps(out))


def _debug_output(result: dict) -> Any:
    if result.get("skipped"):
        return "skipped"
    drop = {
        "changed",
        "failed",
        "item",
        "ansible_loop_var",
        "skipped",
        "deprecations",
        "warnings",
        result.get("ansible_loop_var"),
    }
    return {k: v for k, v in result.items() if not k.startswith("_") and k not in drop}

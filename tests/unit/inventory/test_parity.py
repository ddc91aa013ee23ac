"""fleet.inventory against ansible-core itself, on the inventories in data/<case>/.

Each case directory holds the inventory and a ``case.yml`` saying what to ask:

    inventory: hosts.ini          # file or directory, relative to the case
    hosts: [web1]                 # compared with ansible-inventory --host
    graph: [all, web]             # ansible-inventory --graph GROUP (all: also --vars)
    list_limits: ["web*"]         # ansible-inventory --list --limit
    patterns: ["web:&prod"]       # ansible -i X PATTERN --list-hosts
    limits: [[all, "web"]]        # ... with --limit
    unordered: ["all"]            # patterns whose order Ansible leaves to chance

ansible runs through tests/unit/inventory/ansible_runner.py, which imports it
once and forks per command line (set FLEET_PARITY_SUBPROCESS=1 to spawn the
executables instead; that is also the fallback when this interpreter cannot
import ansible). The whole module is skipped when ansible-inventory is not on
PATH. ansible runs in an empty directory with an empty config, so nothing
around the test (cwd group_vars/, ~/.ansible.cfg, ANSIBLE_* variables) leaks in.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from fleet.inventory import load_inventory
from fleet.inventory.values import jsonable

DATA = Path(__file__).parent / "data"
RUNNER = Path(__file__).parent / "ansible_runner.py"
CASES = sorted(p.name for p in DATA.iterdir() if (p / "case.yml").is_file())

pytestmark = pytest.mark.skipif(
    shutil.which("ansible-inventory") is None or shutil.which("ansible") is None,
    reason="ansible-inventory / ansible not on PATH",
)

_UNMATCHED_RE = re.compile(r"Could not match supplied host pattern, ignoring: (\S+)")


class Ansible:
    """Runs ansible command lines in a clean environment and an empty cwd."""

    def __init__(self, tmp: Path) -> None:
        self.cwd = tmp / "cwd"  # empty: no playbook-adjacent group_vars/
        self.cwd.mkdir()
        home = tmp / "ansible-home"
        home.mkdir()
        config = tmp / "ansible.cfg"
        config.write_text("")
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
        self.env.update(
            ANSIBLE_NOCOLOR="1",
            ANSIBLE_LOCALHOST_WARNING="0",
            ANSIBLE_INVENTORY_UNPARSED_WARNING="0",
            ANSIBLE_HOME=str(home),
            ANSIBLE_CONFIG=str(config),
            ANSIBLE_DEPRECATION_WARNINGS="0",
        )
        self.proc = None
        # The fast runner needs ansible importable here; otherwise spawn the tools.
        if not os.environ.get("FLEET_PARITY_SUBPROCESS") and importlib.util.find_spec("ansible"):
            self.proc = subprocess.Popen(
                [sys.executable, str(RUNNER)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env=self.env,
                text=True,
            )

    def run(self, *argv: str) -> tuple[int, str, str]:
        if self.proc is None:
            done = subprocess.run(
                argv, cwd=self.cwd, env=self.env, capture_output=True, text=True, timeout=120
            )
            return done.returncode, done.stdout, done.stderr
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"argv": list(argv), "cwd": str(self.cwd)}) + "\n")
        self.proc.stdin.flush()
        reply = json.loads(self.proc.stdout.readline())
        return reply["rc"], reply["stdout"], reply["stderr"]

    def ok(self, *argv: str) -> str:
        rc, out, err = self.run(*argv)
        assert rc == 0, f"{' '.join(argv)} failed ({rc}):\n{err}"
        return out

    def close(self) -> None:
        if self.proc is not None:
            self.proc.stdin.close()  # type: ignore[union-attr]
            self.proc.wait(timeout=30)

    def list_hosts(self, inventory: str, pattern: str, limit: str | None):
        """(hosts, unmatched parts) from ansible PATTERN --list-hosts."""
        argv = ["ansible", "-i", inventory, pattern, "--list-hosts"]
        if limit is not None:
            argv += ["--limit", limit]
        rc, out, err = self.run(*argv)
        missed = sorted(set(_UNMATCHED_RE.findall(" ".join(err.split()))))
        if rc != 0 and "leaves us with no hosts" in err:
            return [], missed  # a --limit that selects nothing is an error there
        assert rc == 0, f"{' '.join(argv)} failed ({rc}):\n{err}"
        lines = out.splitlines()
        header = next(i for i, line in enumerate(lines) if line.strip().startswith("hosts ("))
        count = int(lines[header].strip()[len("hosts (") : -2])
        hosts = [line.strip() for line in lines[header + 1 :] if line.strip()]
        assert len(hosts) == count, out
        return hosts, missed


@pytest.fixture(scope="module")
def ansible(tmp_path_factory):
    runner = Ansible(tmp_path_factory.mktemp("ansible"))
    yield runner
    runner.close()


def _case(name: str):
    spec = yaml.safe_load((DATA / name / "case.yml").read_text())
    path = str(DATA / name / spec["inventory"])
    return spec, path, load_inventory(path)


def _differences(ours, theirs, where="") -> list[str]:
    """Readable differences between two JSON values (empty when equal)."""
    if isinstance(ours, dict) and isinstance(theirs, dict):
        found = []
        for key in sorted(set(ours) | set(theirs)):
            if key not in theirs:
                found.append(f"{where}/{key}: only fleet has it: {ours[key]!r}")
            elif key not in ours:
                found.append(f"{where}/{key}: only ansible has it: {theirs[key]!r}")
            else:
                found += _differences(ours[key], theirs[key], f"{where}/{key}")
        return found
    if ours != theirs or type(ours) is not type(theirs):
        return [f"{where}: fleet {ours!r} != ansible {theirs!r}"]
    return []


def assert_same(ours, theirs, what: str) -> None:
    # What ansible-inventory prints went through JSON; compare like with like.
    problems = _differences(json.loads(json.dumps(ours)), theirs)
    assert not problems, f"{what}:\n" + "\n".join(problems)


@pytest.mark.parametrize("case", CASES)
def test_list(ansible, case):
    spec, path, inv = _case(case)
    theirs = json.loads(ansible.ok("ansible-inventory", "-i", path, "--list"))
    assert_same(inv.to_list_json(), theirs, "--list")
    theirs = json.loads(ansible.ok("ansible-inventory", "-i", path, "--list", "--export"))
    assert_same(inv.to_list_json(export=True), theirs, "--list --export")
    for limit in spec.get("list_limits", []):
        theirs = json.loads(ansible.ok("ansible-inventory", "-i", path, "--list", "--limit", limit))
        assert_same(inv.to_list_json(limit=limit), theirs, f"--list --limit {limit}")


@pytest.mark.parametrize("case", CASES)
def test_host(ansible, case):
    spec, path, inv = _case(case)
    for host in spec.get("hosts", []):
        theirs = json.loads(ansible.ok("ansible-inventory", "-i", path, "--host", host))
        assert_same(jsonable(inv.host_vars(host)), theirs, f"--host {host}")


@pytest.mark.parametrize("case", CASES)
def test_graph(ansible, case):
    spec, path, inv = _case(case)
    for group in spec.get("graph", ["all"]):
        theirs = ansible.ok("ansible-inventory", "-i", path, "--graph", group)
        assert inv.graph(group) == theirs.rstrip("\n"), group
    theirs = ansible.ok("ansible-inventory", "-i", path, "--graph", "--vars")
    assert inv.graph(with_vars=True) == theirs.rstrip("\n")


@pytest.mark.parametrize("case", CASES)
def test_patterns(ansible, case):
    spec, path, inv = _case(case)
    unordered = set(spec.get("unordered", []))
    checks = [(p, None) for p in spec.get("patterns", [])]
    checks += [tuple(item) for item in spec.get("limits", [])]
    failures = []
    for pattern, limit in checks:
        hosts, missed = ansible.list_hosts(path, pattern, limit)
        ours = inv.select(pattern, limit=limit)
        if pattern in unordered:
            hosts, ours = sorted(hosts), sorted(ours)
        if ours != hosts:
            failures.append(f"{pattern!r} limit={limit!r}: ansible {hosts} fleet {ours}")
        our_missed = sorted(inv.unmatched(pattern, limit=limit))
        if our_missed != missed:
            failures.append(f"{pattern!r} limit={limit!r}: unmatched {missed} vs {our_missed}")
    assert not failures, "\n".join(failures)

"""fleet's parsing + variables + templating against ansible-playbook itself.

Each directory in parity_cases/ holds a playbook using only debug, set_fact and assert,
an inventory (with group_vars/ and host_vars/), and ``case.yml``::

    inventory: inventory/hosts      # "@PYTHON@" in it becomes this interpreter
    playbook: site.yml
    extra_vars: {x: 1}              # -e

ansible-playbook runs it once (connection local, a clean environment and an empty
config, results recorded by ansible_plugins/fleet_parity.py); tests/unit/playbook/
simulate.py runs the same playbook through fleet.playbook, fleet.variables and
fleet.templating; every task's status and debug output must match. Skipped when
ansible-playbook is not on PATH.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from .simulate import in_order, normalize, simulate

HERE = Path(__file__).parent
CASES_DIR = HERE / "parity_cases"
CASES = sorted(p.name for p in CASES_DIR.iterdir() if (p / "case.yml").is_file())

pytestmark = pytest.mark.skipif(
    shutil.which("ansible-playbook") is None, reason="ansible-playbook not on PATH"
)


def _prepare(case: str, tmp: Path) -> tuple[dict, Path]:
    work = tmp / case
    shutil.copytree(CASES_DIR / case, work)
    spec = yaml.safe_load((work / "case.yml").read_text())
    inventory = work / spec["inventory"]
    inventory.write_text(inventory.read_text().replace("@PYTHON@", sys.executable))
    return spec, work


def _ansible_playbook(spec: dict, work: Path, tmp: Path) -> list[dict]:
    home = tmp / "ansible-home"
    home.mkdir(exist_ok=True)
    config = tmp / "ansible.cfg"
    config.write_text("")
    out = tmp / "results.jsonl"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_HOME=str(home),
        ANSIBLE_CONFIG=str(config),
        ANSIBLE_LOCALHOST_WARNING="0",
        ANSIBLE_DEPRECATION_WARNINGS="0",
        ANSIBLE_RETRY_FILES_ENABLED="0",
        ANSIBLE_CALLBACK_PLUGINS=str(HERE / "ansible_plugins"),
        ANSIBLE_STDOUT_CALLBACK="fleet_parity",
        FLEET_PARITY_OUT=str(out),
    )
    argv = ["ansible-playbook", "-i", str(work / spec["inventory"]), str(work / spec["playbook"])]
    if spec.get("extra_vars"):
        argv += ["-e", json.dumps(spec["extra_vars"])]
    done = subprocess.run(argv, cwd=tmp, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"ansible-playbook failed ({done.returncode}):\n{done.stderr}"
    return [json.loads(line) for line in out.read_text().splitlines()]


@pytest.mark.parametrize("case", CASES)
def test_same_output_as_ansible(case, tmp_path):
    spec, work = _prepare(case, tmp_path)
    theirs = in_order([normalize(r) for r in _ansible_playbook(spec, work, tmp_path)])
    extra = spec.get("extra_vars") or {}
    ours = in_order(
        [normalize(r) for r in simulate(work / spec["playbook"], work / spec["inventory"], extra)]
    )
    problems = [f"ansible {a}\n  fleet {b}" for a, b in zip(theirs, ours) if a != b]
    assert len(ours) == len(theirs), f"{len(theirs)} results from ansible, {len(ours)} ours"
    assert not problems, "\n".join(problems)

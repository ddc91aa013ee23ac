"""The fleet-wide views on the lab: `fleet ps` grouping a service's replicas on two
hosts, `fleet inspect NAME` finding a container wherever it runs, `fleet logs SERVICE`
merging its replicas' logs (and following them), `fleet top` measuring them.

The CLI works on the default store, shared with other tests: every container here has a
fleet-test name and a project of its own, and is removed in the end."""

import json
import subprocess
import sys
import time
import uuid

import pytest

from fleet.transport.session import Session
from tests.integration.conftest import LAB_MARKS
from tests.integration.helpers import lab_targets

pytestmark = LAB_MARKS
MiB = 1024 * 1024


def fleet(lab_inventory, verb, *args):
    # options before HOST: what follows a container's name may be its command
    return subprocess.run([sys.executable, "-m", "fleet", verb, "-i", lab_inventory, *args],
                          capture_output=True, text=True, timeout=60)


class Replicas:
    """Labelled containers made through payload sessions, removed by remove_all()."""

    def __init__(self, lab, lab_inventory):
        config, state = lab
        self.plain = next(r for r in state.registries if r["name"] == "plain")["address"]
        self.image = f"{self.plain}/busybox:latest"
        self.targets = lab_targets(lab_inventory)
        self.hosts = [h.name for h in state.hosts]
        self.made = []  # (host index, name)

    def make(self, index, name, project, service, replica, replicas, command, **options):
        params = {"name": name, "image": self.image, "command": command, "init": True,
                  "insecure_registries": [self.plain],  # pulled if the store lacks it
                  "labels": {"fleet.project": project, "fleet.service": service,
                             "fleet.replica": str(replica), "fleet.replicas": str(replicas)},
                  **options}
        self.made.append((index, name))
        result = self._call(index, params)
        assert not result["failed"], result
        return result["container"]

    def _call(self, index, params):
        session = Session.open(self.targets[index])
        try:
            return session.call("container", params, timeout=120)
        finally:
            session.close()

    def remove_all(self):
        for index, name in self.made:
            self._call(index, {"name": name, "state": "absent", "force_kill": True})


@pytest.fixture(scope="module")
def service(lab, lab_inventory):
    """A service of three replicas wanted, two running (one on each of the first two
    hosts, the second busy on half a CPU) and one exited: (Replicas, project, service,
    names)."""
    tag = uuid.uuid4().hex[:6]
    project, name = f"fleet-t-{tag}", f"fleet-test-{tag}-web"
    replicas = Replicas(lab, lab_inventory)
    names = [f"{name}.{i}" for i in (1, 2, 3)]
    try:
        replicas.make(0, names[0], project, name, 1, 3,
                      ["sh", "-c", "echo one-a; sleep 0.3; echo one-b; exec sleep 120"])
        replicas.make(1, names[1], project, name, 2, 3,
                      ["sh", "-c", "echo two-a; sleep 0.3; echo two-b >&2; "
                                   "while :; do :; done"], cpus=0.5, memory="64m")
        replicas.make(0, names[2], project, name, 3, 3, ["true"])
        time.sleep(0.5)  # the output is in the logs
        yield replicas, project, name, names
    finally:
        replicas.remove_all()


def test_ps_groups_replicas_into_services(lab_inventory, service):
    replicas, project, name, names = service
    listed = fleet(lab_inventory, "ps", "-o", "json")
    assert listed.returncode == 0, listed.stderr
    shown = json.loads(listed.stdout)
    assert [h["host"] for h in shown["hosts"]] == replicas.hosts
    assert all(h["ok"] for h in shown["hosts"])
    ours = [s for s in shown["services"] if s["project"] == project]
    assert ours == [{"project": project, "service": name, "running": 2, "wanted": 3,
                     "hosts": replicas.hosts[:2]}]
    on_first = [c["Name"] for c in shown["hosts"][0]["containers"]]
    assert "/" + names[0] in on_first and "/" + names[2] not in on_first  # exited
    # the table: our containers together, in replica order, and the service's line
    table = fleet(lab_inventory, "ps", "-a").stdout.splitlines()
    rows = [line.split() for line in table if line.startswith(tuple(replicas.hosts))
            and project in line.split()]
    assert [(row[0], row[1], row[2], row[3]) for row in rows] == [
        (replicas.hosts[0], names[0], project, name), (replicas.hosts[1], names[1], project, name),
        (replicas.hosts[0], names[2], project, name)]
    assert "Exited (0)" in " ".join(rows[2])
    summary = [line.split() for line in table if line.startswith(project)]
    assert summary == [[project, name, "2/3", replicas.hosts[0] + ",", replicas.hosts[1]]]


def test_inspect_finds_a_container_on_any_host(lab_inventory, service):
    replicas, project, name, names = service
    found = fleet(lab_inventory, "inspect", names[1])
    assert found.returncode == 0, found.stderr
    shown = json.loads(found.stdout)
    assert [(c["Host"], c["Name"]) for c in shown] == [(replicas.hosts[1], "/" + names[1])]
    assert shown[0]["Config"]["Labels"]["fleet.replica"] == "2"
    by_id = json.loads(fleet(lab_inventory, "inspect", shown[0]["Id"]).stdout)
    assert [c["Name"] for c in by_id] == ["/" + names[1]]
    # HOST NAME asks that host only, as before
    there = fleet(lab_inventory, "inspect", replicas.hosts[0], names[0])
    assert json.loads(there.stdout)[0]["State"]["Running"], there.stderr
    not_there = fleet(lab_inventory, "inspect", replicas.hosts[0], names[1])
    assert not_there.returncode == 1
    assert not_there.stderr == f"Error: {replicas.hosts[0]}: no such container: {names[1]}\n"
    missing = fleet(lab_inventory, "inspect", f"fleet-test-{uuid.uuid4().hex[:6]}-none")
    assert missing.returncode == 1 and missing.stdout == ""
    assert missing.stderr.startswith("Error: no such container: fleet-test-")
    assert missing.stderr.count("\n") == 1


def test_logs_merges_the_replicas(lab_inventory, service):
    replicas, project, name, names = service
    merged = fleet(lab_inventory, "logs", "-t", "--project", project, name)
    assert merged.returncode == 0, merged.stderr
    width = len(f"{replicas.hosts[1]} {names[1]}")
    lines = merged.stdout.splitlines()
    parsed = []
    for line in lines:
        prefix, _, rest = line.partition(" | ")
        stamp, _, text = rest.partition(" ")
        assert len(prefix) == width and stamp.endswith("Z"), line
        parsed.append((tuple(prefix.split()), stamp, text))
    assert [stamp for _, stamp, _ in parsed] == sorted(stamp for _, stamp, _ in parsed)
    first, second = (replicas.hosts[0], names[0]), (replicas.hosts[1], names[1])
    assert sorted((who, text) for who, _, text in parsed) == sorted([
        (first, "one-a"), (first, "one-b"), (second, "two-a"), (second, "two-b")])
    assert [text for who, _, text in parsed if who == first] == ["one-a", "one-b"]
    tailed = fleet(lab_inventory, "logs", "--tail", "1", name)
    assert sorted(tailed.stdout.splitlines()) == sorted([
        f"{replicas.hosts[0]} {names[0]}".ljust(width) + " | one-b",
        f"{replicas.hosts[1]} {names[1]}".ljust(width) + " | two-b"])
    # HOST NAME: one container, stderr apart, as before
    one = fleet(lab_inventory, "logs", replicas.hosts[1], names[1])
    assert (one.stdout, one.stderr) == ("two-a\n", "two-b\n")
    unknown = fleet(lab_inventory, "logs", "--project", project, "fleet-test-none")
    assert unknown.returncode == 1
    assert unknown.stderr == (f"Error: no such service or container: fleet-test-none in "
                              f"project {project}\n")


def test_logs_follows_a_service_until_its_replicas_end(lab, lab_inventory):
    tag = uuid.uuid4().hex[:6]
    project, name = f"fleet-t-{tag}", f"fleet-test-{tag}-job"
    replicas = Replicas(lab, lab_inventory)
    try:
        for index in (0, 1):
            replicas.make(index, f"{name}.{index + 1}", project, name, index + 1, 2,
                          ["sh", "-c", f"sleep 1; for i in 1 2 3; do echo r{index + 1}-$i; "
                                       "sleep 0.3; done"])
        followed = fleet(lab_inventory, "logs", "-f", name)
        assert followed.returncode == 0, followed.stderr
        texts = [line.partition(" | ")[2] for line in followed.stdout.splitlines()]
        assert [t for t in texts if t.startswith("r1")] == ["r1-1", "r1-2", "r1-3"]
        assert [t for t in texts if t.startswith("r2")] == ["r2-1", "r2-2", "r2-3"]
    finally:
        replicas.remove_all()


def test_top_measures_the_running_replicas(lab_inventory, service):
    replicas, project, name, names = service
    measured = fleet(lab_inventory, "top", "-o", "json")
    assert measured.returncode == 0, measured.stderr
    shown = {c["name"]: (h["host"], c) for h in json.loads(measured.stdout)["hosts"]
             for c in h["containers"] if c["project"] == project}
    assert sorted(shown) == names[:2]  # the exited one is not measured
    idle_host, idle = shown[names[0]]
    busy_host, busy = shown[names[1]]
    assert (idle_host, busy_host) == tuple(replicas.hosts[:2])
    assert busy["service"] == name and busy["memory_limit"] == 64 * MiB
    assert 15 <= busy["cpu_percent"] <= 70, busy  # a busy loop on half a CPU
    assert idle["cpu_percent"] < 5, idle
    assert idle["memory_limit"] > 64 * MiB  # none set: the host's memory
    for figures in (idle, busy):
        assert 0 < figures["memory"] < 64 * MiB and figures["pids"] >= 1, figures
    table = fleet(lab_inventory, "top", replicas.hosts[1]).stdout.splitlines()
    assert table[0].split()[:5] == ["host", "name", "project", "service", "cpu"]
    row = next(line.split() for line in table if names[1] in line.split())
    assert row[:4] == [replicas.hosts[1], names[1], project, name]
    assert row[4].endswith("%") and row[6] == "/" and row[7] == "64MiB", row

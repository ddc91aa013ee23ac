"""Services across the lab's hosts: replicas placed and scaled from what runs, a rollout
that breaks half-way, placement errors before anything starts, `fleet down` (check mode,
a second run, an unreachable host), and the demo playbook with its real images."""

import json
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

from tests.integration.conftest import LAB_MARKS
from tests.integration.helpers import ssh_run

pytestmark = LAB_MARKS
ROOT = Path(__file__).resolve().parents[2]

SERVICE = """
- hosts: all
  gather_facts: false
  project: {project}
  vars:
    n: 3
    msg: v1
    ports: []
  tasks:
    - name: the service
      container:
        name: {service}
        image: "{{{{ fleet_lab_registry }}}}/busybox:latest"
        insecure_registries: "{{{{ fleet_insecure_registries.split(',') }}}}"
        replicas: "{{{{ n | int }}}}"
        ports: "{{{{ ports }}}}"
        command: ["sh", "-c", "{{{{ msg }}}}; exec sleep 600"]
        init: true
        update: {{parallelism: 2, monitor: 0.5}}
"""


def fleet(*args, timeout=180):
    verb, *rest = args
    return subprocess.run([sys.executable, "-m", "fleet", verb, *rest], capture_output=True,
                          text=True, timeout=timeout)


def _apply(book, inventory, *extra):
    proc = fleet("apply", str(book), "-i", inventory, "-o", "json", *extra)
    return proc.returncode, json.loads(proc.stdout)


def _replicas(inventory, project):
    """{name: (host, command)} of the project's containers, stopped ones too."""
    listed = json.loads(fleet("ps", "-i", inventory, "-a", "-o", "json").stdout)
    return {c["Name"].lstrip("/"): (h["host"], " ".join(c["Config"]["Cmd"]))
            for h in listed["hosts"] for c in h["containers"]
            if c["Config"]["Labels"].get("fleet.project") == project}


def test_replicas_scale_rollout_and_down(lab, lab_inventory, tmp_path):
    tag = uuid.uuid4().hex[:6]
    project, service = f"fleet-t-{tag}", f"fleet-svc-{tag}"
    book = tmp_path / "service.yml"
    book.write_text(SERVICE.format(project=project, service=service))
    hosts = [h.name for h in lab[1].hosts]
    try:
        code, doc = _apply(book, lab_inventory)
        assert code == 0, doc
        placed = _replicas(lab_inventory, project)
        assert sorted(placed) == [f"{service}.{i}" for i in (1, 2, 3)]
        assert sorted(h for h, _ in placed.values()) == hosts  # one per host
        code, doc = _apply(book, lab_inventory)
        assert code == 0 and set(doc["stats"][h]["changed"] for h in hosts) == {0}, doc

        code, doc = _apply(book, lab_inventory, "--check", "-e", "n=5")
        assert code == 0 and len(_replicas(lab_inventory, project)) == 3
        code, doc = _apply(book, lab_inventory, "-e", "n=5")
        placed = _replicas(lab_inventory, project)
        assert len(placed) == 5 and placed[f"{service}.1"] == placed[f"{service}.1"]
        loads = sorted([h for h, _ in placed.values()].count(h) for h in hosts)
        assert loads == [1, 2, 2], placed
        code, doc = _apply(book, lab_inventory, "-e", "n=2")
        assert sorted(_replicas(lab_inventory, project)) == [f"{service}.1", f"{service}.2"]
        code, doc = _apply(book, lab_inventory, "-e", "n=3")
        assert len(_replicas(lab_inventory, project)) == 3

        # a rollout in check mode says so and changes nothing
        code, doc = _apply(book, lab_inventory, "--check", "-e", "msg='echo v9'")
        assert code == 0 and sum(s["changed"] for s in doc["stats"].values()) == 3, doc
        assert not any("v9" in c for _h, c in _replicas(lab_inventory, project).values())

        # a rollout whose first batch does not stay up stops; the rest keep v1
        code, doc = _apply(book, lab_inventory, "-e", "msg='exit 3'")
        assert code == 2, doc
        commands = {name: cmd for name, (_h, cmd) in _replicas(lab_inventory, project).items()}
        assert [n for n, c in sorted(commands.items()) if "exit 3" in c] == \
            [f"{service}.1", f"{service}.2"], commands
        assert "v1" in commands[f"{service}.3"]

        # a fixed host port: at most one replica per host, else an error before anything
        code, doc = _apply(book, lab_inventory, "-e", "n=4",
                           "-e", '{"ports": ["18887:80"]}')
        assert code == 2
        messages = {r.get("msg", "") for t in doc["plays"][0]["tasks"]
                    for r in t["hosts"].values()}
        assert any("4 replicas at most 1 per host (publish fixed port 18887) need 4 hosts"
                   in m for m in messages), messages
        assert len(_replicas(lab_inventory, project)) == 3

        check = fleet("down", str(book), "-i", lab_inventory, "--check", "-o", "json")
        assert check.returncode == 0
        would = sum(len(h["removed"]["containers"]) for h in json.loads(check.stdout)["hosts"])
        assert would == 3 and len(_replicas(lab_inventory, project)) == 3
    finally:
        gone = fleet("down", str(book), "-i", lab_inventory)
    assert gone.returncode == 0, gone.stderr
    assert _replicas(lab_inventory, project) == {}
    again = fleet("down", str(book), "-i", lab_inventory)
    assert again.stdout.count("nothing to do") == len(hosts), again.stdout


def test_down_reports_an_unreachable_host_and_cleans_the_rest(lab, lab_inventory, tmp_path):
    tag = uuid.uuid4().hex[:6]
    project, service = f"fleet-t-{tag}", f"fleet-svc-{tag}"
    book = tmp_path / "service.yml"
    book.write_text(SERVICE.format(project=project, service=service))
    code, doc = _apply(book, lab_inventory, "-e", "n=2")
    assert code == 0, doc
    # the lab's inventory plus a host whose sshd does not answer
    ghost = tmp_path / "inventory.ini"
    text = Path(lab_inventory).read_text()
    ghost.write_text(text.replace("[all:vars]", f"[ghosts]\nfleet-ghost ansible_host="
                                  f"{lab[1].hosts[0].address} ansible_port=1\n\n[all:vars]"))
    down = fleet("down", str(book), "-i", str(ghost), "-o", "json")
    assert down.returncode == 4, down.stdout + down.stderr
    rows = {h["host"]: h for h in json.loads(down.stdout)["hosts"]}
    assert not rows["fleet-ghost"]["ok"] and rows["fleet-ghost"]["msg"]
    assert sum(len(r["removed"]["containers"]) for r in rows.values()) == 2
    assert _replicas(lab_inventory, project) == {}


def test_the_demo(lab, lab_inventory):
    """playbooks/bestwebappever.yml with its real images: PostgreSQL, Redis, a web tier
    on every host answering on 8887; a second apply changes nothing; down cleans up."""
    from fleet.lab.demo_images import push_demo_images
    from fleet.lab.registries import registry_status
    config, state = lab
    plain = [r for r in registry_status(str(config.state_dir)) if r.name == "plain"]
    push_demo_images(str(config.state_dir), plain)
    book = ROOT / "playbooks" / "bestwebappever.yml"
    try:
        code, doc = _apply(book, lab_inventory)
        assert code == 0, doc
        answers = []
        for host in state.hosts:
            for _ in range(150):
                try:
                    with urllib.request.urlopen(f"http://{host.address}:8887/",
                                                timeout=3) as reply:
                        answers.append(reply.read().decode().strip())
                        break
                except OSError:
                    time.sleep(0.2)
        assert len(answers) == len(state.hosts), answers
        assert all(a.startswith("hello from web.") for a in answers), answers
        assert answers[-1].endswith(f"visits={len(answers)} hits={len(answers)}"), answers
        code, doc = _apply(book, lab_inventory)
        assert code == 0 and {s["changed"] for s in doc["stats"].values()} == {0}, doc
        listed = json.loads(fleet("ps", "-i", lab_inventory, "-a", "-o", "json").stdout)
        ids = {h["host"]: [c["Id"] for c in h["containers"]
                           if c["Config"]["Labels"].get("fleet.project") == "bestwebappever"]
               for h in listed["hosts"]}
    finally:
        gone = fleet("down", str(book), "-i", lab_inventory, "--volumes")
    assert gone.returncode == 0, gone.stderr
    assert "dbdata" in gone.stdout and _replicas(lab_inventory, "bestwebappever") == {}
    for host in state.hosts:  # no veth, namespace, port rule, mount, cgroup or volume left
        mine = "\\|".join(i[:8] for i in ids[host.name])
        left = ssh_run(config, host.address,
                       f"ip link | grep -c 'fleetv\\({mine}\\)'; "
                       f"ip netns list | grep -c 'fleet-\\({mine}\\)'; "
                       f"iptables-save | grep -c 'fleet-port-\\({mine}\\)'; "
                       f"grep -c '{mine}' /proc/self/mountinfo; "
                       f"ls /sys/fs/cgroup/memory/fleet 2>/dev/null | grep -c '^\\({mine}\\)'; "
                       "ls /var/lib/fleet/volumes | grep -c '^\\(dbdata\\|redisdata\\)$'; true",
                       check=False)
        assert left.split() == ["0"] * 6, (host.name, left)


def test_scale_and_a_start_first_rollout(lab, lab_inventory, tmp_path):
    tag = uuid.uuid4().hex[:6]
    project, service = f"fleet-t-{tag}", f"fleet-svc-{tag}"
    book = tmp_path / "service.yml"
    book.write_text(SERVICE.format(project=project, service=service).replace(
        "{parallelism: 2, monitor: 0.5}", "{parallelism: 1, order: start-first, monitor: 0.5}"))
    try:
        code, doc = _apply(book, lab_inventory, "-e", "n=2")
        assert code == 0, doc
        scaled = fleet("scale", str(book), f"{service}=4", "-i", lab_inventory)
        assert scaled.returncode == 0, scaled.stdout + scaled.stderr
        listed = json.loads(fleet("ps", "-i", lab_inventory, "-o", "json").stdout)
        mine = [s for s in listed["services"] if s["project"] == project]
        assert [(s["running"], s["wanted"]) for s in mine] == [(4, 4)], mine
        unknown = fleet("scale", str(book), "fleet-nope=1", "-i", lab_inventory)
        assert unknown.returncode == 1 and "no container task with replicas named" in \
            unknown.stderr
        before = {n: h for n, (h, _c) in _replicas(lab_inventory, project).items()}
        code, doc = _apply(book, lab_inventory, "-e", "n=4", "-e", "msg='echo v2'")
        assert code == 0, doc
        after = _replicas(lab_inventory, project)
        assert {n: h for n, (h, _c) in after.items()} == before  # same names, same hosts
        assert all("v2" in cmd for _h, cmd in after.values()), after
        refused = fleet("apply", str(book), "-i", lab_inventory, "-e",
                        '{"ports": ["18888:80"]}')
        assert refused.returncode == 2 and "start-first needs replicas without a fixed " \
            "host port (18888)" in refused.stdout, refused.stdout
    finally:
        fleet("down", str(book), "-i", lab_inventory)
    assert _replicas(lab_inventory, project) == {}

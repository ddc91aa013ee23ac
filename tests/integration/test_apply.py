"""fleet apply on the lab: example playbooks converge, check mode, errors, unreachable hosts."""

import json
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path

import pytest

from fleet.lab import lab as lab_lib
from fleet.lab.config import LabConfig
from tests.integration.conftest import LAB_MARKS, leftovers
from tests.integration.helpers import ssh_run

pytestmark = LAB_MARKS

PLAYBOOKS = Path(__file__).resolve().parents[2] / "playbooks"


def apply(*args, timeout=120):
    proc = subprocess.run([sys.executable, "-m", "fleet", "apply", *args],
                          capture_output=True, text=True, timeout=timeout)
    return proc


def apply_json(*args):
    proc = apply(*args, "-o", "json")
    assert proc.stdout, proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def changed(document):
    return {host: stats["changed"] for host, stats in document["stats"].items()}


@pytest.mark.parametrize("playbook", ["hello.yml", "files.yml", "images.yml"])
def test_example_playbooks_converge(lab, lab_inventory, playbook):
    code, first = apply_json(str(PLAYBOOKS / playbook), "-i", lab_inventory)
    assert code == 0, json.dumps(first)[:2000]
    code, second = apply_json(str(PLAYBOOKS / playbook), "-i", lab_inventory)
    assert code == 0
    assert set(changed(second).values()) == {0}
    assert all(s["ok"] > 0 and s["failed"] == 0 for s in second["stats"].values())


def test_containers_playbook_converges_and_goes_away(lab, lab_inventory):
    config, state = lab
    book = str(PLAYBOOKS / "containers.yml")
    try:
        code, first = apply_json(book, "-i", lab_inventory)
        assert code == 0, json.dumps(first)[:2000]
        code, second = apply_json(book, "-i", lab_inventory)
        assert code == 0 and set(changed(second).values()) == {0}, json.dumps(second)[:2000]
    finally:
        code, gone = apply_json(book, "-i", lab_inventory, "-e", "state=absent")
    assert code == 0 and set(changed(gone).values()) == {1}
    for host in state.hosts:
        # (other tests may run containers of their own in the default store meanwhile)
        left = ssh_run(config, host.address,
                       "cat /var/lib/fleet/containers/*/config.json 2>/dev/null | "
                       "grep -c '\"name\":\"greeter\"'; findmnt -rn -t overlay | wc -l",
                       check=False)
        assert left.split() == ["0", "0"], (host.name, left)


def test_files_playbook_puts_files_on_every_host(lab, lab_inventory):
    config, state = lab
    code, _ = apply_json(str(PLAYBOOKS / "files.yml"), "-i", lab_inventory)
    assert code == 0
    for host in state.hosts:
        out = ssh_run(config, host.address,
                      "stat -c '%a %n' /tmp/fleet-demo/motd.txt /tmp/fleet-demo/app.conf; "
                      "cat /tmp/fleet-demo/app.conf /tmp/fleet-demo/greeting")
        assert "644 /tmp/fleet-demo/motd.txt" in out
        assert "640 /tmp/fleet-demo/app.conf" in out
        assert f"name = {host.name}" in out
        assert "hello from fleet" in out


def write_playbook(tmp_path, text, name="site.yml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


def test_check_mode_changes_nothing(lab, lab_inventory, tmp_path):
    config, state = lab
    target = f"/tmp/fleet-test-check-{uuid.uuid4().hex[:8]}"
    book = write_playbook(tmp_path, f"""
        - hosts: all
          gather_facts: false
          tasks:
            - file: {{path: {target}, state: directory}}
            - copy: {{content: "x", dest: {target}-file}}
            - command: touch {target}-cmd
        """)
    code, document = apply_json(book, "-i", lab_inventory, "--check")
    assert code == 0, json.dumps(document)[:2000]
    assert set(changed(document).values()) == {2}
    for host in state.hosts:
        out = ssh_run(config, host.address,
                      f"ls -d {target} {target}-file {target}-cmd 2>&1; true")
        assert out.count("No such file") == 3


def test_typo_fails_before_connecting(tmp_path):
    inventory = tmp_path / "hosts.ini"
    inventory.write_text("ghost ansible_host=127.0.0.1 ansible_port=1\n")  # never contacted
    book = write_playbook(tmp_path, """
        - hosts: all
          tasks:
            - name: a typo
              copy:
                content: hi
                dset: /tmp/x
        """)
    started = time.monotonic()
    proc = apply(book, "-i", str(inventory))
    assert proc.returncode == 1
    assert time.monotonic() - started < 10
    message = proc.stderr.strip().splitlines()[-1]
    assert "site.yml:" in message and "dset" in message and "dest" in message


def test_a_host_that_drops_off_is_unreachable_and_others_finish(tmp_path):
    """Its own two-host lab: taking a link down must not disturb the shared one."""
    config = LabConfig(Path("/var/lib/fleet-lab-test-drop"), "10.231.9.0/24", "fleetlabu")
    try:
        lab_lib.up(config, 2)
        book = write_playbook(tmp_path, """
            - hosts: all
              gather_facts: false
              tasks:
                - command: "true"
                - command: sleep 6
                - command: "true"
            """)
        def drop_link():
            time.sleep(2.0)  # inside the sleep task
            subprocess.run(["ip", "-n", config.netns(2), "link", "set", "eth0", "down"],
                           check=True)

        dropper = threading.Thread(target=drop_link)
        dropper.start()
        proc = apply(book, "-i", str(config.inventory_path), "--timeout", "3", "-o", "json")
        dropper.join()
        document = json.loads(proc.stdout)
        assert proc.returncode == 4, proc.stdout[-2000:]
        stats = document["stats"]
        assert stats["lab02"]["unreachable"] == 1
        assert stats["lab01"]["ok"] == 3 and stats["lab01"]["failed"] == 0
    finally:
        lab_lib.down(config)
    assert leftovers(config) == []


def test_interrupt_cancels_what_runs_on_the_hosts(lab, lab_inventory, tmp_path):
    import signal
    config, state = lab
    marker = f"fleet-test-int-{uuid.uuid4().hex[:8]}"
    book = write_playbook(tmp_path, f"""
        - hosts: all
          gather_facts: false
          tasks:
            - shell: "sleep 30; true {marker}"
        """)
    proc = subprocess.Popen([sys.executable, "-m", "fleet", "apply", book, "-i", lab_inventory],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 20
        running = []
        while time.monotonic() < deadline:  # wait until the command runs everywhere
            # [s]: the pattern must not match the shell that runs pgrep.
            running = [ssh_run(config, h.address, f"pgrep -fc '[s]leep 30; true {marker}' || true")
                       .strip() for h in state.hosts]
            if all(n != "0" for n in running):
                break
            time.sleep(0.2)
        assert running and all(n != "0" for n in running), running
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, out
    time.sleep(1.5)
    for host in state.hosts:
        assert ssh_run(config, host.address, f"pgrep -fc '[s]leep 30; true {marker}' || true") \
            .strip() == "0"

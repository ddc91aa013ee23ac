"""A playbook written for Ansible runs unchanged under fleet, with the same outcome."""

import json
import os
import shutil
import subprocess
import sys
import textwrap
import uuid

import pytest

from tests.integration.conftest import LAB_MARKS
from tests.integration.helpers import ssh_run

pytestmark = LAB_MARKS

PLAYBOOK = """
- name: Written for Ansible
  hosts: all
  gather_facts: true
  vars:
    base: "/tmp/fleet-parity-{{ tool }}-{{ run_id }}"
  tasks:
    - name: Directory
      ansible.builtin.file:
        path: "{{ base }}"
        state: directory
        mode: "0750"

    - name: Facts into a fact
      ansible.builtin.set_fact:
        summary: >-
          {{ inventory_hostname }} {{ ansible_facts['distribution'] }}
          {{ group_names | join(',') }}

    - name: Content
      ansible.builtin.copy:
        content: "{{ summary }}\\n"
        dest: "{{ base }}/summary"
        mode: "0640"

    - name: Template
      ansible.builtin.template:
        src: parity.j2
        dest: "{{ base }}/rendered"

    - name: Loop
      ansible.builtin.command: "touch {{ base }}/{{ item }}"
      args:
        creates: "{{ base }}/{{ item }}"
      loop: [one, two]

    - name: Check
      ansible.builtin.command: "ls {{ base }}"
      register: listing
      changed_when: false

    - name: Assert
      ansible.builtin.assert:
        that:
          - "'one' in listing.stdout_lines"
          - listing.rc == 0
"""

TEMPLATE = """{% for g in group_names %}group {{ g }}
{% endfor %}host {{ inventory_hostname }} of {{ groups['all'] | length }}
"""


def counts(stats):
    return {host: (s["ok"], s["changed"], s["failed"], s["skipped"]) for host, s in stats.items()}


@pytest.mark.skipif(shutil.which("ansible-playbook") is None, reason="needs ansible-core")
def test_same_playbook_same_outcome(lab, lab_inventory, tmp_path):
    config, state = lab
    (tmp_path / "site.yml").write_text(textwrap.dedent(PLAYBOOK))
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "parity.j2").write_text(TEMPLATE)
    run_id = uuid.uuid4().hex[:8]
    fleet = subprocess.run(
        [sys.executable, "-m", "fleet", "apply", str(tmp_path / "site.yml"), "-i",
         lab_inventory, "-e", "tool=fleet", "-e", f"run_id={run_id}", "-o", "json"],
        capture_output=True, text=True, timeout=120)
    assert fleet.returncode == 0, fleet.stdout[-2000:] + fleet.stderr
    fleet_stats = json.loads(fleet.stdout)["stats"]

    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_HOME=str(tmp_path / "ah"),
               ANSIBLE_CONFIG=str(tmp_path / "ansible.cfg"), ANSIBLE_PIPELINING="True",
               ANSIBLE_RETRY_FILES_ENABLED="False")
    (tmp_path / "ansible.cfg").write_text("[defaults]\n")
    ansible = subprocess.run(
        ["ansible-playbook", str(tmp_path / "site.yml"), "-i", lab_inventory,
         "-e", "tool=ansible", "-e", f"run_id={run_id}"],
        capture_output=True, text=True, timeout=300, env=env)
    assert ansible.returncode == 0, ansible.stdout[-3000:]
    recap = {}
    for line in ansible.stdout.split("PLAY RECAP")[-1].splitlines():
        if ":" in line and "ok=" in line:
            host, _, rest = line.partition(":")
            fields = dict(part.split("=") for part in rest.split())
            recap[host.strip()] = (int(fields["ok"]), int(fields["changed"]),
                                   int(fields["failed"]), int(fields["skipped"]))
    assert counts(fleet_stats) == recap
    try:
        for host in state.hosts:
            base = "/tmp/fleet-parity-{}-" + run_id
            mine = ssh_run(config, host.address, f"cd {base.format('fleet')} && "
                           "ls && stat -c '%a %n' . summary && cat summary rendered")
            theirs = ssh_run(config, host.address, f"cd {base.format('ansible')} && "
                             "ls && stat -c '%a %n' . summary && cat summary rendered")
            assert mine == theirs
    finally:
        for host in state.hosts:
            ssh_run(config, host.address, f"rm -rf /tmp/fleet-parity-*-{run_id}")


def test_become_in_a_play(lab, lab_inventory, tmp_path):
    config, state = lab
    (tmp_path / "site.yml").write_text(textwrap.dedent("""
        - hosts: all
          gather_facts: false
          tasks:
            - name: who
              command: id -u
              register: who
              changed_when: false
            - name: root who
              command: id -u
              become: true
              register: root
              changed_when: false
            - assert:
                that: [who.stdout == "2700", root.stdout == "0"]
        """))
    inventory = tmp_path / "hosts.ini"
    inventory.write_text(config.inventory_path.read_text().replace(
        "ansible_user=root", "ansible_user=fleetuser"))
    proc = subprocess.run([sys.executable, "-m", "fleet", "apply", str(tmp_path / "site.yml"),
                           "-i", str(inventory), "-o", "json"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr

"""Transport on the lab: payload upload and cache, host keys, become, failure reasons."""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import pytest

import agent_payload
from fleet.ping import ping
from fleet.transport import ssh
from fleet.transport.payload import Payload, build_zip
from fleet.transport.session import Session
from tests.integration.conftest import LAB_MARKS
from tests.integration.helpers import lab_targets

pytestmark = LAB_MARKS


def fleet_cli(*args):
    return subprocess.run([sys.executable, "-m", "fleet", *args], capture_output=True, text=True)


def variant_payload(tmp_path, tag):
    """A payload with the same code and a content hash of its own (unique per test run)."""
    source = tmp_path / "agent_payload"
    shutil.copytree(Path(agent_payload.__file__).parent, source,
                    ignore=shutil.ignore_patterns("__pycache__"))
    ping_module = source / "modules" / "ping.py"
    ping_module.write_text(ping_module.read_text() + f"\n# fleet test variant {tag}\n")
    data = build_zip(source)
    return Payload(data, hashlib.sha256(data).hexdigest()[:16])


def test_ping_reports_every_host(lab, lab_inventory):
    _, state = lab
    first = fleet_cli("ping", "-i", lab_inventory, "-o", "json")
    assert first.returncode == 0, first.stderr
    hosts = json.loads(first.stdout)["hosts"]
    assert [h["host"] for h in hosts] == [h.name for h in state.hosts]
    assert all(h["reachable"] and h["cgroup"] in ("v1", "v2", "hybrid") for h in hosts)
    # Whatever the first run did, the payload is now on every host.
    second = json.loads(fleet_cli("ping", "-i", lab_inventory, "-o", "json").stdout)["hosts"]
    assert [h["payload"] for h in second] == ["cached"] * len(state.hosts)
    text = fleet_cli("ping", "-i", lab_inventory)
    assert text.returncode == 0 and "cached" in text.stdout and "lab01" in text.stdout


def test_payload_is_uploaded_once_per_version(lab, lab_inventory, tmp_path):
    variant = variant_payload(tmp_path, f"{os.getpid()}-{time.time()}")
    targets = lab_targets(lab_inventory)
    first = [Session.open(t, variant) for t in targets]
    second = [Session.open(t, variant) for t in targets]
    try:
        assert [s.cache_state for s in first] == ["uploaded"] * len(targets)
        assert [s.cache_state for s in second] == ["cached"] * len(targets)
        assert all(s.call("ping")["ping"] == "pong" for s in first + second)
    finally:
        for session in first + second:
            session.close()


def test_changed_host_key_fails_only_that_host(lab, lab_inventory, tmp_path):
    config, state = lab
    lines = config.known_hosts_path.read_text().splitlines()
    # Give the first host the second host's key.
    lines[0] = " ".join(lines[0].split()[:1] + lines[1].split()[1:])
    known = tmp_path / "known_hosts"
    known.write_text("\n".join(lines) + "\n")
    targets = lab_targets(lab_inventory, known_hosts=str(known))
    results = ping(targets)
    assert not results[0].reachable
    assert "host key for" in results[0].error and "changed" in results[0].error
    assert all(r.reachable for r in results[1:])


def test_failure_reasons_are_one_line_each(lab, lab_inventory, tmp_path):
    config, state = lab
    base = lab_targets(lab_inventory)[0]
    known = tmp_path / "known_hosts"
    gateway_key = config.known_hosts_path.read_text().splitlines()[0].split()[1:]
    known.write_text(config.known_hosts_path.read_text()
                     + f"{config.gateway} {' '.join(gateway_key)}\n")
    cases = {
        "refused": replace(base, name="refused", host=config.gateway, known_hosts=str(known)),
        "nopython": replace(base, name="nopython", python="/usr/bin/python-fleet-missing"),
        "unknown": replace(base, name="unknown", known_hosts=str(tmp_path / "empty")),
        "badkey": replace(base, name="badkey", key_file=str(tmp_path / "nokey")),
    }
    (tmp_path / "empty").write_text("")
    results = {r.host: r for r in ping(list(cases.values()) + [base])}
    assert "Connection refused" in results["refused"].error
    assert "python not found" in results["nopython"].error
    assert "not found in" in results["unknown"].error
    assert "does not exist" in results["badkey"].error
    assert results[base.name].reachable
    assert all("\n" not in (r.error or "") for r in results.values())


def test_become_through_sudo(lab, lab_inventory):
    config, state = lab
    user = lab_targets(lab_inventory, user="fleetuser")[0]
    plain = Session.open(user)
    try:
        assert plain.call("facts")["ansible_facts"]["user_id"] == "fleetuser"
    finally:
        plain.close()
    root = Session.open(replace(user, become=True))
    try:
        assert root.call("facts")["ansible_facts"]["user_uid"] == 0
    finally:
        root.close()


def test_one_session_serves_many_requests_in_flight(lab, lab_inventory):
    target = lab_targets(lab_inventory)[1]
    session = Session.open(target)
    try:
        requests = [session.start("ping", {"data": f"n{i}"}) for i in range(20)]
        answers = [r.wait(timeout=10)["ping"] for r in requests]
        assert answers == [f"n{i}" for i in range(20)]
        with ThreadPoolExecutor(4) as pool:
            facts = list(pool.map(lambda _: session.call("facts", timeout=10), range(8)))
        assert {f["ansible_facts"]["hostname"] for f in facts} == {target.name}
        bad = session.call("ping", {"nope": 1})
        assert bad["failed"] and "nope" in bad["msg"]
    finally:
        session.close()


def test_closed_port_is_unreachable(lab, lab_inventory):
    target = lab_targets(lab_inventory)[2]
    with pytest.raises(ssh.TransportError, match="unreachable"):
        Session.open(replace(target, port=1))


def test_become_with_a_sudo_password(lab, lab_inventory):
    from fleet.lab.config import LAB_PASSWORD, LAB_PASSWORD_USER
    target = lab_targets(lab_inventory, user=LAB_PASSWORD_USER, become=True,
                         become_password=LAB_PASSWORD, connect_timeout=5)[0]
    session = Session.open(target)
    try:
        assert session.call("facts")["ansible_facts"]["user_uid"] == 0
    finally:
        session.close()
    with pytest.raises(ssh.RemoteError, match="refused the become password"):
        Session.open(replace(target, become_password="wrong"))
    with pytest.raises(ssh.RemoteError, match="become failed"):
        Session.open(replace(target, become_password=None))


def test_key_from_ssh_agent(lab, lab_inventory, tmp_path):
    config, _ = lab
    sock = tmp_path / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        env_sock = {"SSH_AUTH_SOCK": str(sock)}
        # the socket appears before the agent listens on it: retry while the suite is busy
        for _ in range(100):
            added = subprocess.run(["ssh-add", str(config.client_key_path)],
                                   capture_output=True, env=env_sock)
            if added.returncode == 0:
                break
            time.sleep(0.05)
        assert added.returncode == 0, added.stderr
        old = os.environ.get("SSH_AUTH_SOCK")
        os.environ["SSH_AUTH_SOCK"] = str(sock)
        try:
            result = ping(lab_targets(lab_inventory, key_file=None)[:1])[0]
        finally:
            if old is None:
                os.environ.pop("SSH_AUTH_SOCK")
            else:
                os.environ["SSH_AUTH_SOCK"] = old
        assert result.reachable, result.error
    finally:
        agent.terminate()
        agent.wait(5)

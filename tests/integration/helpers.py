"""Small tools for integration tests: run a shell command on a lab host, load targets."""

import contextlib
import subprocess
import uuid

from fleet.inventory import load_inventory
from fleet.transport.session import Session
from fleet.transport.targets import target_for


def ssh_run(config, address, command, user="root", check=True):
    """Run ``command`` on a lab host with OpenSSH's client; return its stdout."""
    argv = ["ssh", "-i", str(config.client_key_path),
            "-o", f"UserKnownHostsFile={config.known_hosts_path}",
            "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes",
            f"{user}@{address}", command]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if check and proc.returncode != 0:
        raise AssertionError(f"{command!r} on {address} failed: {proc.stderr.strip()}")
    return proc.stdout


def lab_targets(inventory_path, **overrides):
    """Targets of every host in the inventory."""
    inventory = load_inventory(inventory_path)
    targets = [target_for(inventory, name) for name in inventory.hosts]
    if overrides:
        from dataclasses import replace
        targets = [replace(t, **overrides) for t in targets]
    return targets


def _remove_networks(target, store):
    """The store's networks (its default one too): their bridges and rules are the
    host's, and would outlive the store's directory."""
    session = Session.open(target)
    try:
        listed = session.call("network_info", {"store": store}, timeout=60)
        for found in listed.get("networks") or []:
            session.call("network", {"name": found["Name"], "state": "absent",
                                     "store": store}, timeout=60)
    finally:
        session.close()


@contextlib.contextmanager
def busybox_store(lab, lab_inventory, index):
    """A store and a cgroup parent of the test's own on lab host ``index`` with busybox
    pulled into it; yields (target, store, parent, image, tag), then removes both (tests
    run side by side on the shared lab)."""
    config, state = lab
    tag = uuid.uuid4().hex[:8]
    store, parent = f"/var/lib/fleet/fleet-test-{tag}", f"fleet-test-{tag}"
    plain = next(r for r in state.registries if r["name"] == "plain")["address"]
    image = f"{plain}/busybox:latest"
    target = lab_targets(lab_inventory)[index]
    session = Session.open(target)
    try:
        pulled = session.call("image", {"name": image, "store": store,
                                        "insecure_registries": [plain]}, timeout=120)
    finally:
        session.close()
    assert not pulled["failed"], pulled
    try:
        yield target, store, parent, image, tag
    finally:
        _remove_networks(target, store)
        ssh_run(config, state.hosts[index].address,
                f"rm -rf {store}; for c in /sys/fs/cgroup/*/{parent}; "
                f"do [ -d $c ] && rmdir $c/* $c 2>/dev/null; done; true")


@contextlib.contextmanager
def busybox_session(lab, lab_inventory, index):
    """busybox_store with an open payload session on that host: yields (session, store,
    parent, image, tag) and closes the session before the store goes."""
    with busybox_store(lab, lab_inventory, index) as (target, store, parent, image, tag):
        session = Session.open(target)
        try:
            yield session, store, parent, image, tag
        finally:
            session.close()

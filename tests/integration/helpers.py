"""Small tools for integration tests: run a shell command on a lab host, load targets."""

import subprocess

from fleet.inventory import load_inventory
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

"""``fleet lab up / down / status``: simulated hosts and registries on this machine.

``up`` converges the lab to N hosts (idempotent: running hosts are kept), starts the
registries and seeds them, and writes the inventory, known_hosts and client key.
Every long-lived process of the lab descends from a small keeper process that adopts
and reaps them (this machine's PID 1 may not), so ``down`` leaves no zombie per host.
"""

import contextlib
import fcntl
import os
import shutil
from dataclasses import asdict

from fleet.lab import disk, hostfiles, keys, network, processes
from fleet.lab.state import LabError, LabHost, LabState, load_state, save_state

__all__ = ["LabError", "LabHost", "LabState", "down", "load_state", "status", "up"]

REQUIRED_TOOLS = {"ip": "iproute2", "/usr/sbin/sshd": "openssh-server", "sudo": "sudo",
                  "docker-registry": "docker-registry", "skopeo": "skopeo"}
# Mount points the hosts need on the machine's filesystem (each host mounts its own there).
MACHINE_MOUNT_POINTS = ("/var/lib/fleet",)


def require_root():
    if os.geteuid() != 0:
        raise LabError("fleet lab needs root: it creates network namespaces, mounts and "
                       "cgroups (run it with sudo)")


def require_tools():
    for tool, package in REQUIRED_TOOLS.items():
        if not (os.path.exists(tool) if tool.startswith("/") else shutil.which(tool)):
            raise LabError(f"{tool} not found: install the Debian package {package} "
                           f"(apt-get install {package})")


@contextlib.contextmanager
def _locked(config):
    """Serialize up and down of one lab (the lock is not in the state directory, which
    down removes, but in /run/lock, which goes away with the machine's run)."""
    directory = "/run/lock" if os.path.isdir("/run/lock") else "/tmp"
    fd = os.open(os.path.join(directory, f"{config.prefix}.lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def up(config, count, on_step=None):
    """Bring the lab to ``count`` hosts with registries; return its LabState."""
    require_root()
    require_tools()
    with _locked(config):
        return _up(config, count, on_step or (lambda text: None))


def _up(config, count, step):
    if not 1 <= count <= config.max_hosts:
        raise LabError(f"--hosts must be between 1 and {config.max_hosts} "
                       f"for subnet {config.subnet}")
    state = load_state(config)
    extra = [h.index for h in state.hosts if h.index > count]
    if extra:
        step(f"removing {len(extra)} host(s) beyond {count}")
        processes.stop_hosts(config, [h for h in state.hosts if h.index > count])
    running = {h.index: h for h in state.hosts if h.alive and h.index <= count}
    missing = [i for i in range(1, count + 1) if i not in running]

    _prepare_dirs(config)
    if missing and not disk.mounted(config):
        why_not = disk.ensure(config)
        step("hosts' disk: " + (f"a plain directory ({why_not})" if why_not else
                                f"journaled ext4 in {disk.image_path(config)}"))
    client_public = keys.ensure_ed25519_key(config.client_key_path)
    hostfiles.write_if_changed(config.authorized_keys_path, client_public + "\n")
    etc_files = hostfiles.write_etc(config)
    host_keys = {}
    for i in range(1, count + 1):
        host_keys[i] = hostfiles.prepare_host_dir(config, i)

    if missing:
        step(f"network: switch {config.gateway_link} and {len(missing)} host namespace(s)")
    network.ensure_switch(config)
    # A dead host may have left its namespace: start those afresh.
    network.remove_hosts(config, missing)
    network.add_hosts(config, missing)

    if missing:
        step(f"starting {len(missing)} sshd host(s), registries and seed images")
    specs = [hostfiles.host_spec(config, i, etc_files) for i in missing]
    started = processes.start_processes(config, specs)
    hosts = dict(running)
    for i in missing:
        hosts[i] = LabHost(config.host_name(i), i, config.host_address(i),
                           started["hosts"][config.host_name(i)], True)
    state.hosts = [hosts[i] for i in sorted(hosts)]
    state.registries = started["registries"]
    processes.wait_for_sshd([hosts[i] for i in missing])

    # Rewritten in place: hosts see it through a bind mount of this very inode.
    hostfiles.write_if_changed(config.state_dir / "etc" / "hosts",
                               hostfiles.hosts_text(config, state.hosts))
    hostfiles.write_if_changed(config.known_hosts_path, keys.known_hosts_text(
        [(h.address, 22, host_keys[h.index]) for h in state.hosts]))
    hostfiles.write_if_changed(config.inventory_path, hostfiles.inventory_text(config, state))
    state.inventory = str(config.inventory_path)
    state.known_hosts = str(config.known_hosts_path)
    state.client_key = str(config.client_key_path)
    save_state(config, state)
    return state


def down(config, on_step=None):
    """Remove every host, the registries, the network and the lab's state directory.

    Returns the names of the hosts it stopped.
    """
    require_root()
    with _locked(config):
        return _down(config, on_step or (lambda text: None))


def _down(config, step):
    state = load_state(config)
    step(f"stopping {len(state.hosts)} host(s)")
    processes.stop_hosts(config, state.hosts)
    processes.kill_strays(config)
    # Namespaces of hosts the state file does not know (a crashed up) go too.
    leftovers = processes.leftover_indexes(config)
    if leftovers:
        for index in leftovers:
            processes.remove_cgroups(config, index)
        network.remove_hosts(config, leftovers)
    from fleet.lab import registries
    step("stopping registries")
    registries.stop_registries(config.state_dir)
    network.remove_switch(config)
    disk.remove(config)
    # /var/lib/fleet stays: removing a directory another lab's hosts have mounted over
    # would detach their mounts (Linux allows rmdir of mount points in other namespaces).
    if config.state_dir.exists():
        shutil.rmtree(config.state_dir)
    return [h.name for h in state.hosts]


def status(config):
    """The lab's LabState with liveness, plus registry liveness."""
    state = load_state(config)
    if config.state_dir.exists():
        from fleet.lab import registries
        state.registries = [asdict(r) for r in registries.registry_status(config.state_dir)]
    return state


def _prepare_dirs(config):
    config.state_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(config.state_dir, 0o755)
    config.hosts_dir.mkdir(exist_ok=True)
    config.homes.mkdir(exist_ok=True)
    for point in MACHINE_MOUNT_POINTS:
        os.makedirs(point, 0o700, exist_ok=True)

"""The lab's processes: the keeper that starts hosts and registries and then reaps,
waiting for sshd, and stopping hosts (processes, cgroups, namespaces) again."""

import json
import os
import shutil
import signal
import socket
import sys
import time
from dataclasses import asdict
from pathlib import Path

from agent_payload import syscalls
from fleet.lab import hostns, network
from fleet.lab.state import LabError, is_our_sshd

# The keeper's whole life after setup: reap whatever dies, leave when nothing is left.
REAPER = ("import os\nwhile True:\n try:os.wait()\n except ChildProcessError:break\n"
          " except InterruptedError:pass\n")


def start_processes(config, specs):
    """Start missing hosts and registries; fork a keeper only when something must start.

    Returns {"hosts": {name: pid}, "registries": [RegistryInfo as dict]}.
    """
    from fleet.lab import registries, seed_images
    current = registries.registry_status(config.state_dir)
    if not specs and current and all(r.alive for r in current):
        seed_images.seed_registries(config.state_dir, current)
        return {"hosts": {}, "registries": [asdict(r) for r in current]}
    return run_keeper(config, specs)


def run_keeper(config, specs):
    """Fork the keeper: it starts hosts and registries, reports, then only reaps.

    Returns {"hosts": {name: pid}, "registries": [RegistryInfo as dict]}.
    """
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        code = 0
        try:
            os.setsid()
            null = os.open(os.devnull, os.O_RDWR)
            log = os.open(str(config.state_dir / "keeper.log"),
                          os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            os.dup2(null, 0)
            os.dup2(log, 1)
            os.dup2(log, 2)
            syscalls.set_child_subreaper()
            report = {"hosts": {}}
            from fleet.lab import registries, seed_images
            try:
                for spec in specs:
                    report["hosts"][spec["name"]] = hostns.spawn_host(spec)
                infos = registries.start_registries(config.state_dir, config.gateway)
                seed_images.seed_registries(config.state_dir, infos)
            except BaseException:
                # A half-started lab must not outlive the failed up.
                for host_pid in report["hosts"].values():
                    os.kill(host_pid, signal.SIGKILL)
                raise
            report["registries"] = [asdict(info) for info in infos]
            os.write(write_fd, json.dumps(report).encode())
            os.close(write_fd)
            os.execv(sys.executable, [sys.executable, "-I", "-S", "-c", REAPER])
        except BaseException as exc:
            os.write(write_fd, json.dumps({"error": str(exc).replace("\n", " ")}).encode())
            code = 1
        os._exit(code)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as reader:
        raw = reader.read()
    try:
        report = json.loads(raw)
    except ValueError:
        raise LabError("the lab's keeper process died while starting hosts") from None
    if "error" in report:
        raise LabError(report["error"])
    return report


def wait_for_sshd(hosts, timeout=10.0):
    """Return once every host's sshd sends its banner; raise LabError after ``timeout``."""
    deadline = time.monotonic() + timeout
    for host in hosts:
        while True:
            try:
                with socket.create_connection((host.address, 22), timeout=1) as sock:
                    if sock.recv(8).startswith(b"SSH-"):
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise LabError(f"lab host {host.name} ({host.address}): "
                               f"sshd did not answer within {timeout:g}s")
            time.sleep(0.01)


def stop_hosts(config, hosts):
    """Kill the hosts' process trees, then remove their cgroups, namespaces and files."""
    victims = [h for h in hosts if is_our_sshd(h.pid, config, h.index)]
    for host in victims:
        # SIGKILL to a PID namespace's init ends every process in that namespace.
        os.kill(host.pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    for host in victims:
        while is_our_sshd(host.pid, config, host.index) and time.monotonic() < deadline:
            time.sleep(0.01)
    for host in hosts:
        remove_cgroups(config, host.index)
    network.remove_hosts(config, [h.index for h in hosts])
    for host in hosts:
        shutil.rmtree(config.host_dir(host.index), ignore_errors=True)


def kill_strays(config):
    """Kill lab sshds the state file lost track of (an up that crashed before saving)."""
    marker = str(config.hosts_dir).encode() + b"/"
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path("/proc", entry, "cmdline").read_bytes()
        except OSError:
            continue
        if cmdline.startswith(b"sshd") or cmdline.startswith(b"/usr/sbin/sshd"):
            if marker in cmdline:
                os.kill(int(entry), signal.SIGKILL)


def leftover_indexes(config):
    """Indexes of this lab's network namespaces that still exist (after a crashed up)."""
    indexes = []
    for name in os.listdir("/run/netns") if os.path.isdir("/run/netns") else ():
        prefix = config.netns(1)[:-2]
        if name.startswith(prefix) and name[len(prefix):].isdigit():
            indexes.append(int(name[len(prefix):]))
    return indexes


def remove_cgroups(config, index):
    """rmdir the host's cgroup leaf in every hierarchy, deepest first (payload children too)."""
    for _, _, _, directory in hostns.host_cgroup_dirs(config.cgroup_leaf(index)):
        if not os.path.isdir(directory):
            continue
        for _ in range(50):
            for root, _dirs, _files in sorted(os.walk(directory), key=lambda w: -len(w[0])):
                try:
                    os.rmdir(root)
                except OSError:
                    pass
            if not os.path.isdir(directory):
                break
            time.sleep(0.02)

"""``fleet lab up / down / status``: simulated hosts and registries on this machine.

``up`` converges the lab to N hosts (idempotent: running hosts are kept), starts the
registries and seeds them, and writes the inventory, known_hosts and client key.
Every long-lived process of the lab descends from a small keeper process that adopts
and reaps them (this machine's PID 1 may not), so ``down`` leaves no zombie per host.
"""

import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from agent_payload import syscalls
from fleet.lab import hostns, keys, network
from fleet.lab.config import LAB_PASSWORD, LAB_PASSWORD_USER, LAB_USER

REQUIRED_TOOLS = {"ip": "iproute2", "/usr/sbin/sshd": "openssh-server", "sudo": "sudo",
                  "docker-registry": "docker-registry", "skopeo": "skopeo"}
MACHINE_MOUNT_POINTS = ("/var/lib/fleet",)
# The keeper's whole life after setup: reap whatever dies, leave when nothing is left.
REAPER = ("import os\nwhile True:\n try:os.wait()\n except ChildProcessError:break\n"
          " except InterruptedError:pass\n")


class LabError(RuntimeError):
    """The lab cannot be brought up or down; str() is one line saying why."""


@dataclass
class LabHost:
    name: str
    index: int
    address: str
    pid: int = 0
    alive: bool = False


@dataclass
class LabState:
    hosts: list = field(default_factory=list)
    registries: list = field(default_factory=list)
    created_mount_points: list = field(default_factory=list)
    inventory: str = ""
    known_hosts: str = ""
    client_key: str = ""


def require_root():
    if os.geteuid() != 0:
        raise LabError("fleet lab needs root: it creates network namespaces, mounts and "
                       "cgroups (run it with sudo)")


def require_tools():
    for tool, package in REQUIRED_TOOLS.items():
        if not (os.path.exists(tool) if tool.startswith("/") else shutil.which(tool)):
            raise LabError(f"{tool} not found: install the Debian package {package} "
                           f"(apt-get install {package})")


def load_state(config):
    """The lab's recorded state, with each host's liveness checked."""
    try:
        raw = json.loads(config.state_file.read_text())
    except (FileNotFoundError, ValueError):
        return LabState()
    state = LabState(**{k: v for k, v in raw.items() if k != "hosts"})
    state.hosts = [LabHost(**h) for h in raw.get("hosts", [])]
    for host in state.hosts:
        host.alive = _is_our_sshd(host.pid, config, host.index)
    return state


def save_state(config, state):
    tmp = config.state_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(state), indent=2) + "\n")
    os.replace(tmp, config.state_file)


def _is_our_sshd(pid, config, index):
    if not pid:
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    if stat.rsplit(")", 1)[-1].split()[0] == "Z":
        return False
    return str(config.host_dir(index) / "sshd_config").encode() in cmdline


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
        _stop_hosts(config, [h for h in state.hosts if h.index > count])
    running = {h.index: h for h in state.hosts if h.alive and h.index <= count}
    missing = [i for i in range(1, count + 1) if i not in running]

    _prepare_dirs(config, state)
    client_public = keys.ensure_ed25519_key(config.client_key_path)
    config.authorized_keys_path.write_text(client_public + "\n")
    etc_files = _write_etc(config)
    host_keys = {}
    for i in range(1, count + 1):
        host_keys[i] = _prepare_host_dir(config, i)

    if missing:
        step(f"network: bridge {config.bridge} and {len(missing)} host namespace(s)")
    network.ensure_bridge(config)
    # A dead host may have left its namespace and veth: start those afresh.
    network.remove_hosts(config, missing)
    network.add_hosts(config, missing)

    if missing:
        step(f"starting {len(missing)} sshd host(s), registries and seed images")
    specs = [_host_spec(config, i, etc_files) for i in missing]
    started = _start_processes(config, specs)
    hosts = dict(running)
    for i in missing:
        hosts[i] = LabHost(config.host_name(i), i, config.host_address(i),
                           started["hosts"][config.host_name(i)], True)
    state.hosts = [hosts[i] for i in sorted(hosts)]
    state.registries = started["registries"]
    _wait_for_sshd([hosts[i] for i in missing])

    # Rewritten in place: hosts see it through a bind mount of this very inode.
    with open(config.state_dir / "etc" / "hosts", "r+") as handle:
        handle.truncate(0)
        handle.write(hosts_text(config, state.hosts))
    config.known_hosts_path.write_text(keys.known_hosts_text(
        [(h.address, 22, host_keys[h.index]) for h in state.hosts]))
    config.inventory_path.write_text(inventory_text(config, state))
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
    _stop_hosts(config, state.hosts)
    _kill_strays(config)
    # Namespaces of hosts the state file does not know (a crashed up) go too.
    leftovers = _leftover_indexes(config)
    if leftovers:
        for index in leftovers:
            _remove_cgroups(config, index)
        network.remove_hosts(config, leftovers)
    from fleet.lab import registries
    step("stopping registries")
    registries.stop_registries(config.state_dir)
    network.remove_bridge(config)
    for point in state.created_mount_points:
        try:
            os.rmdir(point)
        except OSError:
            pass
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


def _kill_strays(config):
    """Kill lab sshds the state file lost track of (an up that crashed before saving)."""
    marker = str(config.state_dir / "hosts").encode() + b"/"
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


def _leftover_indexes(config):
    indexes = []
    for name in os.listdir("/run/netns") if os.path.isdir("/run/netns") else ():
        prefix = config.netns(1)[:-2]
        if name.startswith(prefix) and name[len(prefix):].isdigit():
            indexes.append(int(name[len(prefix):]))
    return indexes


def _stop_hosts(config, hosts):
    victims = [h for h in hosts if _is_our_sshd(h.pid, config, h.index)]
    for host in victims:
        # SIGKILL to a PID namespace's init ends every process in that namespace.
        os.kill(host.pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    for host in victims:
        while _is_our_sshd(host.pid, config, host.index) and time.monotonic() < deadline:
            time.sleep(0.01)
    for host in hosts:
        _remove_cgroups(config, host.index)
    network.remove_hosts(config, [h.index for h in hosts])
    for host in hosts:
        shutil.rmtree(config.host_dir(host.index), ignore_errors=True)


def _remove_cgroups(config, index):
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


def _prepare_dirs(config, state):
    config.state_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(config.state_dir, 0o755)
    (config.state_dir / "hosts").mkdir(exist_ok=True)
    config.homes.mkdir(exist_ok=True)
    for point in MACHINE_MOUNT_POINTS:
        if not os.path.isdir(point):
            os.makedirs(point, 0o700)
            if point not in state.created_mount_points:
                state.created_mount_points.append(point)


def _write_etc(config):
    """The hosts' /etc/passwd, /etc/group and /etc/sudoers.d, with the lab user added."""
    etc = config.state_dir / "etc"
    etc.mkdir(exist_ok=True)
    names = tuple(user[0] + ":" for user in config.users())
    passwd = [line for line in Path("/etc/passwd").read_text().splitlines()
              if not line.startswith(names)]
    group = [line for line in Path("/etc/group").read_text().splitlines()
             if not line.startswith(names)]
    shadow = [line for line in Path("/etc/shadow").read_text().splitlines()
              if not line.startswith(names)]
    # Running hosts see this directory through a bind mount: update it, never replace it.
    sudoers = etc / "sudoers.d"
    sudoers.mkdir(exist_ok=True)
    for entry in Path("/etc/sudoers.d").iterdir():
        if entry.is_file():
            _write_private(sudoers / entry.name, entry.read_text(), 0o440)
    rules = []
    for name, uid, home, rule, password in config.users():
        passwd.append(f"{name}:x:{uid}:{uid}:fleet lab user:{home}:/bin/sh")
        group.append(f"{name}:x:{uid}:")
        # "*": no password login, yet not locked (sudo's PAM account check passes).
        shadow.append(f"{name}:{password}:19000:0:99999:7:::")
        rules.append(f"{name} ALL=(ALL) {rule}")
    _write_private(sudoers / "fleetlab", "\n".join(rules) + "\n", 0o440)
    (etc / "passwd").write_text("\n".join(passwd) + "\n")
    (etc / "group").write_text("\n".join(group) + "\n")
    _write_private(etc / "shadow", "\n".join(shadow) + "\n", 0o640)
    hosts = etc / "hosts"
    if not hosts.exists():
        hosts.touch()
    return {"/etc/passwd": str(etc / "passwd"), "/etc/group": str(etc / "group"),
            "/etc/shadow": str(etc / "shadow"), "/etc/sudoers.d": str(sudoers),
            "/etc/hosts": str(hosts)}


def _write_private(path, text, mode):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(path, mode)


def hosts_text(config, hosts):
    """/etc/hosts shared by every lab host: each host resolves every other by name."""
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback",
             f"{config.gateway}\tfleetlab-gateway"]
    lines += [f"{h.address}\t{h.name}" for h in hosts]
    return "\n".join(lines) + "\n"


def _prepare_host_dir(config, index):
    """Create the host's private directories, host key and sshd_config; return its public key."""
    base = config.host_dir(index)
    for name, mode in (("root", 0o700), ("tmp", 0o1777), ("var-lib-fleet", 0o700),
                       ("home", 0o755)):
        (base / name).mkdir(parents=True, exist_ok=True)
        os.chmod(base / name, mode)
    for name, uid, _, _, _ in config.users():
        (base / "home" / name).mkdir(exist_ok=True)
        os.chmod(base / "home" / name, 0o700)
        os.chown(base / "home" / name, uid, uid)
    public = keys.ensure_ed25519_key(base / "ssh_host_ed25519_key")
    (base / "sshd_config").write_text(SSHD_CONFIG.format(
        host_key=base / "ssh_host_ed25519_key", authorized_keys=config.authorized_keys_path))
    return public


SSHD_CONFIG = """\
# Written by fleet lab up.
Port 22
ListenAddress 0.0.0.0
HostKey {host_key}
PidFile none
AuthorizedKeysFile {authorized_keys}
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
PrintMotd no
PrintLastLog no
UseDNS no
MaxStartups 256
MaxSessions 64
LogLevel ERROR
Subsystem sftp internal-sftp
"""


def _host_spec(config, index, etc_files):
    base = config.host_dir(index)
    return {
        "name": config.host_name(index),
        "netns": config.netns(index),
        "cgroups": hostns.host_cgroup_dirs(config.cgroup_leaf(index)),
        "tmpfs": [("/run", "mode=755"), ("/dev/shm", "mode=1777")],
        "mkdirs": ["/run/sshd", "/run/fleet"],
        "binds": [(str(base / "root"), "/root"), (str(base / "tmp"), "/tmp"),
                  (str(base / "var-lib-fleet"), "/var/lib/fleet"),
                  (str(base / "home"), str(config.homes))],
        "etc_files": etc_files,
        "sshd_config": str(base / "sshd_config"),
        "log": str(base / "sshd.log"),
    }


def _start_processes(config, specs):
    """Start missing hosts and registries; fork a keeper only when something must start.

    Returns {"hosts": {name: pid}, "registries": [RegistryInfo as dict]}.
    """
    from fleet.lab import registries, seed_images
    current = registries.registry_status(config.state_dir)
    if not specs and current and all(r.alive for r in current):
        seed_images.seed_registries(config.state_dir, current)
        return {"hosts": {}, "registries": [asdict(r) for r in current]}
    return _run_keeper(config, specs)


def _run_keeper(config, specs):
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


def _wait_for_sshd(hosts, timeout=10.0):
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


def inventory_text(config, state):
    """The lab's Ansible-style inventory: groups web and db, connection settings in all:vars."""
    by_name = {h.name: h for h in state.hosts}
    lines = [f"# Written by `fleet lab up` ({len(state.hosts)} hosts). Besides root, each host has",
             f"# {LAB_USER} (passwordless sudo) and {LAB_PASSWORD_USER} (sudo password "
             f"'{LAB_PASSWORD}'): try ansible_user={LAB_USER} ansible_become=true."]
    for group, names in config.groups(len(state.hosts)).items():
        lines.append(f"[{group}]")
        lines += [f"{n} ansible_host={by_name[n].address}" for n in names]
        lines.append("")
    registry = next((r for r in state.registries if r.get("name") == "plain"), None)
    lines += [
        "[all:vars]",
        "ansible_user=root",
        "ansible_python_interpreter=/usr/bin/python3",
        f"ansible_ssh_private_key_file={config.client_key_path}",
        f"ansible_ssh_known_hosts_file={config.known_hosts_path}",
        f"ansible_ssh_common_args='-o UserKnownHostsFile={config.known_hosts_path} "
        "-o StrictHostKeyChecking=yes'",
    ]
    if registry:
        lines.append("fleet_lab_registry={}".format(registry["address"]))
    return "\n".join(lines) + "\n"

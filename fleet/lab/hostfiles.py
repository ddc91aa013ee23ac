"""The files a lab host is made of: accounts, /etc/hosts, sshd_config, the mount plan
(host_spec) for hostns.spawn_host, and the inventory the lab writes for its users."""

import os
from pathlib import Path

from fleet.lab import hostns, keys
from fleet.lab.config import LAB_PASSWORD, LAB_PASSWORD_USER, LAB_USER


def write_etc(config):
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
            write_private(sudoers / entry.name, entry.read_text(), 0o440)
    rules = []
    for name, uid, home, rule, password in config.users():
        passwd.append(f"{name}:x:{uid}:{uid}:fleet lab user:{home}:/bin/sh")
        group.append(f"{name}:x:{uid}:")
        # "*": no password login, yet not locked (sudo's PAM account check passes).
        shadow.append(f"{name}:{password}:19000:0:99999:7:::")
        rules.append(f"{name} ALL=(ALL) {rule}")
    write_private(sudoers / "fleetlab", "\n".join(rules) + "\n", 0o440)
    write_if_changed(etc / "passwd", "\n".join(passwd) + "\n")
    write_if_changed(etc / "group", "\n".join(group) + "\n")
    write_private(etc / "shadow", "\n".join(shadow) + "\n", 0o640)
    hosts = etc / "hosts"
    if not hosts.exists():
        hosts.touch()
    return {"/etc/passwd": str(etc / "passwd"), "/etc/group": str(etc / "group"),
            "/etc/shadow": str(etc / "shadow"), "/etc/sudoers.d": str(sudoers),
            "/etc/hosts": str(hosts)}


def write_private(path, text, mode):
    """Write ``text`` with ``mode`` unless the file holds it already. Hosts bind-mount
    these files (so no rename): rewriting one in place would leave a moment in which a
    running host reads it empty, so an unchanged file is not touched at all."""
    if not write_if_changed(path, text, mode):
        os.chmod(path, mode)


def write_if_changed(path, text, mode=0o644):
    """Write ``text`` to ``path`` when it differs from what is there; True if written."""
    try:
        with open(path) as handle:
            if handle.read() == text:
                return False
    except FileNotFoundError:
        pass
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(path, mode)
    return True


def hosts_text(config, hosts):
    """/etc/hosts shared by every lab host: each host resolves every other by name."""
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback",
             f"{config.gateway}\tfleetlab-gateway"]
    lines += [f"{h.address}\t{h.name}" for h in hosts]
    return "\n".join(lines) + "\n"


def prepare_host_dir(config, index):
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
    write_if_changed(base / "sshd_config", SSHD_CONFIG.format(
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


def host_spec(config, index, etc_files):
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
    # Plain-HTTP registries must be named to be used; the TLS one is verified with the CA.
    insecure = [r["address"] for r in state.registries if not r.get("tls")]
    if insecure:
        lines.append("fleet_insecure_registries='{}'".format(",".join(insecure)))
    ca_file = next((r.get("ca_file") for r in state.registries if r.get("ca_file")), None)
    if ca_file:
        lines.append(f"fleet_registry_ca_file={ca_file}")
    return "\n".join(lines) + "\n"

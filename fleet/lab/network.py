"""The lab's network: one bridge in the root namespace, a veth per host namespace.

Nothing leaves the machine: hosts get only their subnet route (no default route), the
bridge's per-interface IPv4 forwarding is off (the kernel then routes nothing that
arrives from the lab), IPv6 is off on the bridge, and where iptables exists a FORWARD
rule tagged ``fleet-lab`` drops anything between the bridge and another interface.
Another accepts what the bridge carries from host to host, whatever FORWARD's policy.
"""

import os
import shutil
import subprocess

GUARD_COMMENT = "fleet-lab"


class NetworkError(RuntimeError):
    """An ip or iptables command failed; str() names the command and its complaint."""


def run_ip(args, batch=None):
    """Run ``ip`` (with a batch on stdin when given); raise NetworkError on failure."""
    argv = ["ip"] + list(args) + (["-batch", "-"] if batch is not None else [])
    proc = subprocess.run(argv, input=batch, capture_output=True, text=True)
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        raise NetworkError("{}: {}".format(" ".join(argv), detail[-1] if detail else "failed"))
    return proc.stdout


def link_exists(name):
    return os.path.exists("/sys/class/net/" + name)


def netns_exists(name):
    return os.path.exists("/run/netns/" + name)


def _sysctl(path, value):
    try:
        with open(path, "w") as handle:
            handle.write(value)
    except OSError:
        pass  # a kernel without that knob has nothing to turn off


def ensure_bridge(config):
    """Create the lab bridge with its address, the forwarding guard included."""
    if not link_exists(config.bridge):
        bridge = config.bridge
        run_ip([], f"link add {bridge} type bridge\n"
                   f"addr add {config.gateway}/{config.prefixlen} dev {bridge}\n"
                   f"link set {bridge} up\n")
    _sysctl(f"/proc/sys/net/ipv4/conf/{config.bridge}/forwarding", "0")
    _sysctl(f"/proc/sys/net/ipv6/conf/{config.bridge}/disable_ipv6", "1")
    for tool in ("iptables", "ip6tables"):
        if shutil.which(tool):
            for rule in _guard_rules(config):
                if _iptables(tool, ["-C"] + rule) != 0:
                    _iptables(tool, ["-I"] + rule, check=True)


def _guard_rules(config):
    tag = ["-m", "comment", "--comment", GUARD_COMMENT, "-j"]
    # The lab's hosts talk through the bridge, and br_netfilter (loaded on most machines)
    # shows those frames to this FORWARD chain: a DROP policy there (Docker sets one)
    # would cut host from host, so they are accepted here, before any policy.
    return [["FORWARD", "-i", config.bridge, "!", "-o", config.bridge] + tag + ["DROP"],
            ["FORWARD", "-o", config.bridge, "!", "-i", config.bridge] + tag + ["DROP"],
            ["FORWARD", "-i", config.bridge, "-o", config.bridge] + tag + ["ACCEPT"]]


def _iptables(tool, args, check=False):
    proc = subprocess.run([tool, "-w"] + args, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise NetworkError("{} {}: {}".format(tool, " ".join(args), proc.stderr.strip()))
    return proc.returncode


def add_hosts(config, indexes):
    """Create the netns and veth of each host index, configured and attached."""
    if not indexes:
        return
    root_batch = []
    for i in indexes:
        ns, veth = config.netns(i), config.veth(i)
        if not netns_exists(ns):
            root_batch.append(f"netns add {ns}")
        if link_exists(veth):
            root_batch.append(f"link del {veth}")
        root_batch += [f"link add {veth} type veth peer name eth0 netns {ns}",
                       f"link set {veth} master {config.bridge}",
                       f"link set {veth} up"]
    run_ip(["-force"], "\n".join(root_batch) + "\n")
    for i in indexes:
        run_ip(["-n", config.netns(i)],
               f"link set lo up\naddr add {config.host_address(i)}/{config.prefixlen} dev eth0\n"
               "link set eth0 up\n")


def remove_hosts(config, indexes):
    """Delete the netns (and with it the veth pair) of each host index."""
    namespaces = [config.netns(i) for i in indexes if netns_exists(config.netns(i))]
    if namespaces:
        run_ip(["-force"], "".join(f"netns del {ns}\n" for ns in namespaces))
    # The veth dies with its namespace, but asynchronously: delete what is still there.
    for i in indexes:
        if link_exists(config.veth(i)):
            try:
                run_ip(["link", "del", config.veth(i)])
            except NetworkError:
                if link_exists(config.veth(i)):
                    raise


def remove_bridge(config):
    """Delete the bridge and the guard rules."""
    if link_exists(config.bridge):
        run_ip(["link", "del", config.bridge])
    for tool in ("iptables", "ip6tables"):
        if shutil.which(tool):
            for rule in _guard_rules(config):
                while _iptables(tool, ["-D"] + rule) == 0:
                    pass

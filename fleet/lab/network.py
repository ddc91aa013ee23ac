"""The lab's network: a macvlan switch, one port per host namespace and one for the root.

The hosts' interfaces are macvlans in bridge mode on one parent (a veth pair that carries
nothing further): frames between two hosts go from one namespace straight into the
other's, the way a switch would carry them, with no bridge, no second veth and none of
the root namespace's netfilter on the way (a bridge costs a veth hop on each side and,
with br_netfilter, a pass through FORWARD). The root namespace has a port of its own,
``PREFIX0``, with the gateway address the registries listen on.

Nothing leaves the machine: hosts get only their subnet route (no default route),
``PREFIX0``'s IPv4 forwarding is off (the kernel then routes nothing that arrives from
the lab), IPv6 is off on the lab's links, and where iptables exists a FORWARD rule
tagged ``fleet-lab`` drops anything between ``PREFIX0`` and another interface.
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


def ensure_switch(config):
    """Create the switch (its parent and the root namespace's port with the gateway
    address), the forwarding guard included."""
    if os.path.exists(f"/sys/class/net/{config.gateway_link}/bridge"):
        raise NetworkError(f"{config.gateway_link} is a bridge, from a lab an older fleet "
                           "made: run `fleet lab down`, then `fleet lab up` again")
    batch = ""
    if not link_exists(config.wire):
        # The far end only keeps the parent's carrier up: no ARP, so that it never
        # answers for the gateway address in the root port's place.
        batch += (f"link add {config.wire} type veth peer name {config.wire_peer}\n"
                  f"link set {config.wire_peer} arp off up\n"
                  f"link set {config.wire} arp off up\n")
    if not link_exists(config.gateway_link):
        batch += (f"link add link {config.wire} name {config.gateway_link} type macvlan "
                  "mode bridge\n"
                  f"addr add {config.gateway}/{config.prefixlen} dev {config.gateway_link}\n"
                  f"link set {config.gateway_link} up\n")
    if batch:
        run_ip([], batch)
    for link in (config.wire, config.wire_peer, config.gateway_link):
        _sysctl(f"/proc/sys/net/ipv6/conf/{link}/disable_ipv6", "1")
        _sysctl(f"/proc/sys/net/ipv4/conf/{link}/forwarding", "0")
    for tool in ("iptables", "ip6tables"):
        if shutil.which(tool):
            for rule in _guard_rules(config):
                if _iptables(tool, ["-C"] + rule) != 0:
                    _iptables(tool, ["-I"] + rule, check=True)


def _guard_rules(config):
    tag = ["-m", "comment", "--comment", GUARD_COMMENT, "-j", "DROP"]
    return [["FORWARD", "-i", config.gateway_link, "!", "-o", config.gateway_link] + tag,
            ["FORWARD", "-o", config.gateway_link, "!", "-i", config.gateway_link] + tag]


def _iptables(tool, args, check=False):
    proc = subprocess.run([tool, "-w"] + args, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise NetworkError("{} {}: {}".format(tool, " ".join(args), proc.stderr.strip()))
    return proc.returncode


def add_hosts(config, indexes):
    """Create the netns of each host index with its switch port, eth0, configured."""
    if not indexes:
        return
    root_batch = []
    for i in indexes:
        ns = config.netns(i)
        if not netns_exists(ns):
            root_batch.append(f"netns add {ns}")
        root_batch.append(f"link add link {config.wire} name eth0 netns {ns} type macvlan "
                          "mode bridge")
    run_ip(["-force"], "\n".join(root_batch) + "\n")
    for i in indexes:
        run_ip(["-n", config.netns(i)],
               f"link set lo up\naddr add {config.host_address(i)}/{config.prefixlen} dev eth0\n"
               "link set eth0 up\n")


def remove_hosts(config, indexes):
    """Delete the netns (and with it the switch port) of each host index."""
    namespaces = [config.netns(i) for i in indexes if netns_exists(config.netns(i))]
    if namespaces:
        run_ip(["-force"], "".join(f"netns del {ns}\n" for ns in namespaces))


def remove_switch(config):
    """Delete the switch (its ports go with its parent) and the guard rules; a bridge
    ``PREFIX0`` and its accept rule, from a lab an older fleet made, go too."""
    for link in (config.gateway_link, config.wire):
        if link_exists(link):
            run_ip(["link", "del", link])
    legacy = ["FORWARD", "-i", config.gateway_link, "-o", config.gateway_link,
              "-m", "comment", "--comment", GUARD_COMMENT, "-j", "ACCEPT"]
    for tool in ("iptables", "ip6tables"):
        if shutil.which(tool):
            for rule in _guard_rules(config) + [legacy]:
                while _iptables(tool, ["-D"] + rule) == 0:
                    pass

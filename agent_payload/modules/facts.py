"""facts: what the host is, in Ansible's fact names, plus what fleet needs to know.

Returns ``ansible_facts`` (hostname, kernel, distribution, python, memory, CPUs,
addresses, ...) with fleet's own keys under ``fleet_*``: cgroup mode, overlayfs,
user namespaces and the payload's cache state. Reads /proc, /sys and /etc only; no
subprocess, so a ping stays cheap.

Options:
  gather_subset: accepted for Ansible compatibility; every fact is cheap, all are gathered.
"""

import os
import struct
import sys

from agent_payload import probe

ARGUMENT_SPEC = {"gather_subset": {"type": "list", "elements": "str", "default": ["all"]}}


def os_release(path="/etc/os-release"):
    """Parse os-release into a dict."""
    values = {}
    for line in probe.read_text(path).splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip().strip('"').strip("'")
    return values


OS_FAMILY = {"debian": "Debian", "ubuntu": "Debian", "rhel": "RedHat", "centos": "RedHat",
             "fedora": "RedHat", "rocky": "RedHat", "almalinux": "RedHat", "ol": "RedHat",
             "amzn": "RedHat", "alpine": "Alpine", "arch": "Archlinux", "suse": "Suse",
             "opensuse": "Suse", "opensuse-leap": "Suse", "sles": "Suse", "gentoo": "Gentoo"}
# Ansible's ansible_distribution for os-release IDs whose NAME says something else.
DISTRIBUTION = {"rhel": "RedHat", "ol": "OracleLinux", "linuxmint": "Linux Mint",
                "amzn": "Amazon", "sles": "SLES", "opensuse-leap": "openSUSE Leap",
                "opensuse-tumbleweed": "openSUSE Tumbleweed", "almalinux": "AlmaLinux",
                "rocky": "Rocky", "centos": "CentOS", "fedora": "Fedora", "debian": "Debian",
                "ubuntu": "Ubuntu", "alpine": "Alpine", "arch": "Archlinux"}


def distribution_facts(release):
    """Ansible's distribution_* facts from os-release."""
    ident = release.get("ID", "")
    version = release.get("VERSION_ID", "")
    family = OS_FAMILY.get(ident)
    for like in release.get("ID_LIKE", "").split():
        family = family or OS_FAMILY.get(like)
    return {
        "distribution": DISTRIBUTION.get(ident) or release.get("NAME") or "Linux",
        "distribution_version": version,
        "distribution_major_version": version.split(".")[0] if version else "",
        "distribution_release": release.get("VERSION_CODENAME", ""),
        "os_family": family or ident.capitalize(),
    }


def memory_facts(meminfo="/proc/meminfo"):
    """memtotal_mb / memfree_mb as Ansible reports them."""
    values = {}
    for line in probe.read_text(meminfo).splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts:
            values[key] = int(parts[0]) // 1024
    return {"memtotal_mb": values.get("MemTotal", 0), "memfree_mb": values.get("MemFree", 0),
            "swaptotal_mb": values.get("SwapTotal", 0)}


def _routes(route_table):
    """[(interface, destination, gateway, mask)] from /proc/net/route, addresses as ints
    in network order."""
    routes = []
    for line in probe.read_text(route_table).splitlines()[1:]:
        fields = line.split()
        if len(fields) > 7:
            dest, gateway, mask = (struct.unpack(">L", struct.pack("<L", int(f, 16)))[0]
                                   for f in (fields[1], fields[2], fields[7]))
            routes.append((fields[0], dest, gateway, mask))
    return routes


def _dotted(number):
    return ".".join(str(octet) for octet in struct.pack(">L", number))


def _number(address):
    return struct.unpack(">L", bytes(int(part) for part in address.split(".")))[0]


def default_route(route_table="/proc/net/route"):
    """(interface, gateway) of the IPv4 default route, or (None, None)."""
    for iface, dest, gateway, mask in _routes(route_table):
        if dest == 0 and mask == 0:
            return iface, _dotted(gateway)
    return None, None


def address_on(iface, addresses, route_table="/proc/net/route"):
    """The first of ``addresses`` inside a subnet routed directly on ``iface``."""
    for name, dest, gateway, mask in _routes(route_table):
        if name == iface and mask and not gateway:
            for address in addresses:
                if _number(address) & mask == dest:
                    return address
    return None


def ipv4_addresses(fib_trie="/proc/net/fib_trie"):
    """Local IPv4 addresses other than loopback, from the kernel's FIB."""
    addresses = []
    lines = probe.read_text(fib_trie).splitlines()
    for index, line in enumerate(lines):
        if "/32 host LOCAL" in line and index > 0:
            address = lines[index - 1].split()[-1]
            if not address.startswith("127.") and address not in addresses:
                addresses.append(address)
    return addresses


def gather(payload_info=None):
    """Return the ansible_facts dict for this host."""
    uname = os.uname()
    py = sys.version_info
    release = os_release()
    iface, gateway = default_route()
    addresses = ipv4_addresses()
    facts = {
        "hostname": uname.nodename.split(".")[0],
        "nodename": uname.nodename,
        "fqdn": _fqdn(uname.nodename),
        "system": uname.sysname,
        "kernel": uname.release,
        "kernel_version": uname.version,
        "architecture": uname.machine,
        "machine": uname.machine,
        "processor_vcpus": os.cpu_count() or 1,
        "user_id": _user_name(),
        "user_uid": os.geteuid(),
        "python_version": f"{py.major}.{py.minor}.{py.micro}",
        "python": {"executable": sys.executable,
                   "version": {"major": py.major, "minor": py.minor, "micro": py.micro,
                               "releaselevel": py.releaselevel, "serial": py.serial},
                   "type": {"cpython": "CPython", "pypy": "PyPy"}.get(
                       sys.implementation.name, sys.implementation.name)},
        "all_ipv4_addresses": addresses,
        "default_ipv4": {"interface": iface, "gateway": gateway,
                         "address": address_on(iface, addresses)} if iface else {},
        "fleet_cgroup_mode": probe.cgroup_mode(),
        "fleet_overlayfs": probe.has_overlayfs(),
        "fleet_user_namespaces": probe.user_namespaces(),
    }
    facts.update(distribution_facts(release))
    facts.update(memory_facts())
    if payload_info:
        facts["fleet_payload"] = {"version": payload_info.get("version"),
                                  "cache": payload_info.get("cache")}
    return facts


def _fqdn(nodename):
    if "." not in nodename:
        return nodename  # resolving would only cost a DNS timeout on a lab or bare host
    import socket
    return socket.getfqdn()


def _user_name():
    try:
        import pwd
        return pwd.getpwuid(os.geteuid()).pw_name
    except (ImportError, KeyError):
        return str(os.geteuid())


def run(params, ctx):
    """Gather facts; never changes anything."""
    return {"changed": False, "ansible_facts": gather(ctx.payload_info)}

"""Container networks on one host: a Linux bridge per network, addresses handed out from
its subnet, a veth pair and a network namespace per container (iproute2's ``ip``).

A network is STORE/networks/NAME.json (name, id, subnet, gateway, bridge device); its
addresses are STORE/networks/NAME.ipam.json ({address: container id}), changed only
under STORE/networks/.lock, so an address is never handed out twice. The default network
is ``bridge`` on the device fleet0 (10.89.0.0/16); others get a device named from their
id and, unless given one, the first free 10.90.N.0/24.

A container's namespace is /run/netns/fleet-ID12 (``ip netns``): eth0 (the veth's inner
end, a Docker-style MAC from its address) with the address and a default route through
the gateway, lo up. Its PID 1 joins it (launch.py). Removing the namespace removes both
veth ends. Networks are kept apart: IPv4 forwarding is a host setting, so where iptables
exists every fleet bridge gets FORWARD rules (comment fleet-net-NAME) that drop traffic
between it and any other fleet bridge; outbound traffic is masqueraded behind the host's
address (a network option turns that off, and then nothing leaves the bridge).
"""

import fcntl
import hashlib
import ipaddress
import json
import os
import shutil
import subprocess

DEFAULT_NETWORK = "bridge"
DEFAULT_DEVICE = "fleet0"
DEFAULT_SUBNET = "10.89.0.0/16"
AUTO_SUBNETS = "10.90.{}.0/24"
NETNS_DIR = "/run/netns"


class NetworkError(Exception):
    """A network could not be made, joined or removed (one line)."""


def _ip(*args, check=True):
    """Run ``ip ARGS``; NetworkError with its message when it fails."""
    if shutil.which("ip") is None:
        raise NetworkError("networks need iproute2's ip command (Debian/Ubuntu: iproute2)")
    proc = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise NetworkError(f"ip {' '.join(args)}: {proc.stderr.strip() or proc.returncode}")
    return proc


def _iptables(*args):
    if shutil.which("iptables") is None:
        return None
    return subprocess.run(["iptables", "-w", *args], capture_output=True, text=True)


def _dir(store):
    path = os.path.join(store.root, "networks")
    os.makedirs(path, mode=0o700, exist_ok=True)
    return path


class _Locked:
    """The networks' lock (IPAM and records), held for the ``with`` body."""

    def __init__(self, store):
        self.path = os.path.join(_dir(store), ".lock")

    def __enter__(self):
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        os.close(self.fd)


def _read(path, default):
    try:
        with open(path) as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return default


def _write(path, value):
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as handle:
        json.dump(value, handle)
    os.rename(tmp, path)


def _check_name(name):
    if not name or len(name) > 64 or not all(c.isalnum() or c in "_.-" for c in name) \
            or not name[0].isalnum():
        raise NetworkError(f"{name!r} is not a network name ([a-zA-Z0-9][a-zA-Z0-9_.-]*)")


def _device(name):
    if name == DEFAULT_NETWORK:
        return DEFAULT_DEVICE
    return "fl-" + hashlib.sha256(name.encode()).hexdigest()[:10]  # 13 of 15 chars


def get(store, name):
    """The network's record, or None."""
    return _read(os.path.join(_dir(store), f"{name}.json"), None)


def list_networks(store):
    """Every network's record."""
    base = _dir(store)
    return [_read(os.path.join(base, entry), {}) for entry in sorted(os.listdir(base))
            if entry.endswith(".json") and not entry.endswith(".ipam.json")]


def _routed():
    """{subnet: device} of the host's IPv4 routes (a subnet in use on the host)."""
    routed = {}
    for line in _ip("-4", "route", "show").stdout.splitlines():
        words = line.split()
        if words and words[0] != "default" and "dev" in words:
            try:
                routed[ipaddress.ip_network(words[0], strict=False)] = \
                    words[words.index("dev") + 1]
            except ValueError:
                continue
    return routed


def _free_subnet(store):
    taken = {ipaddress.ip_network(n["subnet"]) for n in list_networks(store) if n}
    taken |= set(_routed())
    for index in range(256):
        candidate = ipaddress.ip_network(AUTO_SUBNETS.format(index))
        if not any(candidate.overlaps(other) for other in taken):
            return str(candidate)
    raise NetworkError("no free 10.90.N.0/24 subnet left: give the network a subnet")


def _rules(record):
    """The network's iptables rules as (table, chain, rule), in the order they stand.

    Inbound, only replies and published ports (their own ACCEPTs, inserted before these)
    reach the bridge. Outbound, with masquerading (the default) a container reaches other
    hosts through the host's address, but never another fleet network; without it,
    nothing leaves the bridge."""
    device = record["bridge"]
    comment = ["-m", "comment", "--comment", f"fleet-net-{record['name']}"]
    rules = [("filter", "FORWARD", ["!", "-i", device, "-o", device, *comment, "-j", "DROP"])]
    if record.get("masquerade", True):
        rules += [
            ("filter", "FORWARD", ["-i", device, "-o", device, *comment, "-j", "ACCEPT"]),
            ("filter", "FORWARD", ["-i", device, "-o", DEFAULT_DEVICE, *comment, "-j", "DROP"]),
            ("filter", "FORWARD", ["-i", device, "-o", "fl-+", *comment, "-j", "DROP"]),
            ("nat", "POSTROUTING", ["-s", record["subnet"], "!", "-o", device, *comment,
                                    "-j", "MASQUERADE"]),
        ]
    else:
        rules.append(("filter", "FORWARD", ["-i", device, "!", "-o", device, *comment,
                                            "-j", "DROP"]))
    return rules


def _bring_up(record):
    """Create the bridge (again, after a reboot) with its gateway address, and its rules."""
    device = record["bridge"]
    if _ip("link", "show", device, check=False).returncode != 0:
        _ip("link", "add", device, "type", "bridge")
        prefix = ipaddress.ip_network(record["subnet"]).prefixlen
        _ip("addr", "add", f"{record['gateway']}/{prefix}", "dev", device)
    _ip("link", "set", device, "up")
    if shutil.which("iptables") is None:
        return
    if record.get("masquerade", True):
        with open("/proc/sys/net/ipv4/ip_forward", "w") as handle:
            handle.write("1")  # a host setting, as Docker sets it; the rules keep order
    _accept_replies()
    for table, chain, rule in reversed(_rules(record)):  # each -I lands above the last
        if _iptables("-t", table, "-C", chain, *rule).returncode != 0:
            # below the replies rule, which must stay above every network's drops
            position = _below_replies() if chain == "FORWARD" else "1"
            _iptables("-t", table, "-I", chain, position, *rule)


def _below_replies():
    """The FORWARD rule number just below the replies rule."""
    rules = [line for line in _iptables("-S", "FORWARD").stdout.splitlines()
             if line.startswith("-A ")]
    for number, line in enumerate(rules, 1):
        if "fleet-replies" in line:
            return str(number + 1)
    return "1"


def _accept_replies():
    """Replies to what containers sent (and to their published ports) come back in: one
    conntrack rule on top of FORWARD, shared by every network (made once)."""
    replies = ["FORWARD", "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED",
               "-m", "comment", "--comment", "fleet-replies", "-j", "ACCEPT"]
    if _iptables("-C", *replies).returncode != 0:
        _iptables("-I", *replies)


def ensure(store, name=DEFAULT_NETWORK, subnet=None, masquerade=True):
    """The network ``name`` (made if missing, its bridge up); its record."""
    _check_name(name)
    with _Locked(store):
        record = get(store, name)
        if record is None:
            chosen = subnet or (DEFAULT_SUBNET if name == DEFAULT_NETWORK
                                else _free_subnet(store))
            try:
                network = ipaddress.ip_network(chosen)
            except ValueError as exc:
                raise NetworkError(f"network {name}: subnet {chosen!r}: {exc}") from None
            if network.version != 4 or network.num_addresses < 4:
                raise NetworkError(f"network {name}: subnet {chosen} must be IPv4, /30 or "
                                   "larger")
            for other in list_networks(store):
                if other and ipaddress.ip_network(other["subnet"]).overlaps(network):
                    raise NetworkError(f"network {name}: subnet {chosen} overlaps network "
                                       f"{other['name']} ({other['subnet']})")
            for routed, device in _routed().items():
                if routed.overlaps(network):
                    raise NetworkError(f"network {name}: subnet {chosen} overlaps {routed}, "
                                       f"in use on this host (dev {device})")
            record = {"name": name, "id": hashlib.sha256(os.urandom(32)).hexdigest(),
                      "subnet": str(network), "gateway": str(next(network.hosts())),
                      "bridge": _device(name), "masquerade": bool(masquerade)}
            _write(os.path.join(_dir(store), f"{name}.json"), record)
        if not os.path.isdir(f"/sys/class/net/{record['bridge']}"):
            _bring_up(record)  # new, or gone with a reboot (its rules went with it)
        return record


def remove(store, name):
    """Remove the network (refused while a container has an address on it)."""
    with _Locked(store):
        record = get(store, name)
        if record is None:
            return False
        used = _read(os.path.join(_dir(store), f"{name}.ipam.json"), {})
        if used:
            raise NetworkError(f"network {name} is in use by {len(used)} container(s)")
        _ip("link", "del", record["bridge"], check=False)
        if shutil.which("iptables") is not None:
            for table, chain, rule in _rules(record):
                _iptables("-t", table, "-D", chain, *rule)
        for suffix in (".json", ".ipam.json"):
            try:
                os.unlink(os.path.join(_dir(store), name + suffix))
            except FileNotFoundError:
                pass
        return True


def _mac(address):
    return "02:42:" + ":".join(f"{b:02x}" for b in ipaddress.ip_address(address).packed)


def netns_name(container_id):
    """The container's ``ip netns`` name."""
    return "fleet-" + container_id[:12]


def attach(store, name, container_id, mappings=None):
    """Give the container an address on network ``name`` and its namespace, and publish
    ``mappings`` (spec.parse_port's); return its settings (IPAddress, Gateway,
    IPPrefixLen, MacAddress, NetworkID, netns, Ports)."""
    record = ensure(store, name)
    network = ipaddress.ip_network(record["subnet"])
    ipam_path = os.path.join(_dir(store), f"{name}.ipam.json")
    with _Locked(store):
        used = _read(ipam_path, {})
        address = next((str(a) for a in network.hosts()
                        if str(a) != record["gateway"] and str(a) not in used), None)
        if address is None:
            raise NetworkError(f"network {name} has no address left")
        used[address] = container_id
        _write(ipam_path, used)
    ns, outer, inner = netns_name(container_id), "fleetv" + container_id[:8], \
        "fleetp" + container_id[:8]
    try:
        _ip("netns", "add", ns)
        _ip("link", "add", outer, "type", "veth", "peer", "name", inner)
        _ip("link", "set", inner, "netns", ns)
        _ip("link", "set", outer, "master", record["bridge"], "up")
        for args in (("link", "set", inner, "name", "eth0"),
                     ("link", "set", "eth0", "address", _mac(address)),
                     ("addr", "add", f"{address}/{network.prefixlen}", "dev", "eth0"),
                     ("link", "set", "eth0", "up"), ("link", "set", "lo", "up"),
                     ("route", "add", "default", "via", record["gateway"])):
            _ip("-n", ns, *args)
        ports = publish(container_id, address, mappings or [])
    except NetworkError:
        detach(store, name, container_id)
        raise
    return {"IPAddress": address, "Ports": ports, "Gateway": record["gateway"],
            "IPPrefixLen": network.prefixlen, "MacAddress": _mac(address),
            "NetworkID": record["id"], "netns": os.path.join(NETNS_DIR, ns)}


def detach(store, name, container_id):
    """Remove the container's ports, namespace (and its veth), give its address back."""
    unpublish(container_id)
    _ip("netns", "del", netns_name(container_id), check=False)
    _ip("link", "del", "fleetv" + container_id[:8], check=False)  # if the netns never got it
    ipam_path = os.path.join(_dir(store), f"{name}.ipam.json")
    with _Locked(store):
        used = _read(ipam_path, {})
        kept = {a: c for a, c in used.items() if c != container_id}
        if kept != used:
            _write(ipam_path, kept)


def _published(proto):
    """Host ports other containers publish already (their NAT rules)."""
    listed = _iptables("-t", "nat", "-S", "PREROUTING")
    taken = set()
    for line in (listed.stdout if listed is not None else "").splitlines():
        words = line.split()
        if "fleet-port-" in line and f"-p {proto}" in line and "--dport" in words:
            taken.add(int(words[words.index("--dport") + 1]))
    return taken


def _free_port(host_ip, proto, wanted):
    """``wanted`` when it is free on the host (0: any free one); NetworkError if taken,
    by a process listening on it or by another container's published port."""
    import socket

    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    where = f"{host_ip + ':' if host_ip else ''}{wanted}/{proto}"
    published = _published(proto)
    if wanted and wanted in published:
        raise NetworkError(f"port {where} is already published by another container")
    for _ in range(100):
        probe = socket.socket(socket.AF_INET, kind)
        try:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host_ip or "0.0.0.0", wanted))
            port = probe.getsockname()[1]
        except OSError as exc:
            raise NetworkError(f"port {where} is already taken on this host "
                               f"({exc.strerror})") from None
        finally:
            probe.close()
        if port not in published:
            return port
    raise NetworkError(f"no free {proto} port found on this host")


def _port_rules(tag, mapping, address):
    host, proto = mapping["host_port"], mapping["proto"]
    dest = ["-d", mapping["host_ip"]] if mapping["host_ip"] else []
    target = f"{address}:{mapping['port']}"
    comment = ["-m", "comment", "--comment", tag]
    return [
        ("nat", "PREROUTING", [*dest, "-p", proto, "--dport", str(host), *comment,
                               "-j", "DNAT", "--to-destination", target]),
        ("nat", "OUTPUT", [*dest, "-p", proto, "--dport", str(host), "-m", "addrtype",
                           "--dst-type", "LOCAL", *comment, "-j", "DNAT",
                           "--to-destination", target]),
        ("filter", "FORWARD", ["-d", address, "-p", proto, "--dport", str(mapping["port"]),
                               *comment, "-j", "ACCEPT"]),
    ]


def publish(container_id, address, mappings):
    """Publish the container's ports on the host with the kernel's NAT; return Docker's
    NetworkSettings.Ports ({"80/tcp": [{"HostIp", "HostPort"}]})."""
    if mappings and shutil.which("iptables") is None:
        raise NetworkError("published ports need iptables (Debian/Ubuntu: iptables)")
    tag = "fleet-port-" + container_id[:12]
    shown = {}
    try:
        if mappings:
            with open("/proc/sys/net/ipv4/ip_forward", "w") as handle:
                handle.write("1")  # what reaches the host's port goes on to the bridge
            _accept_replies()
        for mapping in mappings:
            mapping = dict(mapping, host_port=_free_port(mapping["host_ip"], mapping["proto"],
                                                         mapping["host_port"]))
            for table, chain, rule in _port_rules(tag, mapping, address):
                done = _iptables("-t", table, "-I", chain, *rule)
                if done.returncode != 0:
                    raise NetworkError(f"iptables: {done.stderr.strip()}")
            shown.setdefault(f"{mapping['port']}/{mapping['proto']}", []).append(
                {"HostIp": mapping["host_ip"] or "0.0.0.0", "HostPort": str(mapping["host_port"])})
    except BaseException:
        unpublish(container_id)
        raise
    return shown


def unpublish(container_id):
    """Remove the container's NAT and filter rules (found by their comment)."""
    if shutil.which("iptables") is None:
        return
    tag = "fleet-port-" + container_id[:12]
    for table in ("nat", "filter"):
        listed = _iptables("-t", table, "-S")
        for line in (listed.stdout if listed is not None else "").splitlines():
            if tag in line and line.startswith("-A "):
                _iptables("-t", table, "-D", *line[3:].replace('"', "").split())

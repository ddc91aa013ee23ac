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
exists every fleet bridge gets FORWARD rules (comment fleet-net) that drop traffic
between it and any other interface.
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


def _free_subnet(store):
    taken = {ipaddress.ip_network(n["subnet"]) for n in list_networks(store) if n}
    for index in range(256):
        candidate = ipaddress.ip_network(AUTO_SUBNETS.format(index))
        if not any(candidate.overlaps(other) for other in taken):
            return str(candidate)
    raise NetworkError("no free 10.90.N.0/24 subnet left: give the network a subnet")


def _bring_up(record):
    """Create the bridge (again, after a reboot) with its gateway address."""
    device = record["bridge"]
    if _ip("link", "show", device, check=False).returncode != 0:
        _ip("link", "add", device, "type", "bridge")
        prefix = ipaddress.ip_network(record["subnet"]).prefixlen
        _ip("addr", "add", f"{record['gateway']}/{prefix}", "dev", device)
    _ip("link", "set", device, "up")
    tag = f"fleet-net-{record['name']}"
    for direction in (("-i", device, "!", "-o", device), ("!", "-i", device, "-o", device)):
        rule = ["FORWARD", *direction, "-m", "comment", "--comment", tag, "-j", "DROP"]
        checked = _iptables("-C", *rule)
        if checked is not None and checked.returncode != 0:
            _iptables("-I", *rule)


def ensure(store, name=DEFAULT_NETWORK, subnet=None):
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
            record = {"name": name, "id": hashlib.sha256(os.urandom(32)).hexdigest(),
                      "subnet": str(network), "gateway": str(next(network.hosts())),
                      "bridge": _device(name)}
            _write(os.path.join(_dir(store), f"{name}.json"), record)
        _bring_up(record)
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
        tag = f"fleet-net-{name}"
        device = record["bridge"]
        for direction in (("-i", device, "!", "-o", device), ("!", "-i", device, "-o", device)):
            _iptables("-D", "FORWARD", *direction, "-m", "comment", "--comment", tag,
                      "-j", "DROP")
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


def attach(store, name, container_id):
    """Give the container an address on network ``name`` and its namespace; return its
    settings (IPAddress, Gateway, IPPrefixLen, MacAddress, NetworkID, netns)."""
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
    except NetworkError:
        detach(store, name, container_id)
        raise
    return {"IPAddress": address, "Gateway": record["gateway"],
            "IPPrefixLen": network.prefixlen, "MacAddress": _mac(address),
            "NetworkID": record["id"], "netns": os.path.join(NETNS_DIR, ns)}


def detach(store, name, container_id):
    """Remove the container's namespace (and its veth) and give its address back."""
    _ip("netns", "del", netns_name(container_id), check=False)
    _ip("link", "del", "fleetv" + container_id[:8], check=False)  # if the netns never got it
    ipam_path = os.path.join(_dir(store), f"{name}.ipam.json")
    with _Locked(store):
        used = _read(ipam_path, {})
        kept = {a: c for a, c in used.items() if c != container_id}
        if kept != used:
            _write(ipam_path, kept)

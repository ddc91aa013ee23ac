"""Container networks on one host: a Linux bridge per network, addresses handed out from
its subnet, a veth pair and a network namespace per container (netns.py, netlink.py;
iproute2's ``ip`` for the bridges).

A network is STORE/networks/NAME.json (name, id, subnet, gateway, bridge device); its
addresses are STORE/networks/NAME.ipam.json ({address: container id}), changed only
under the host's /run/fleet/networks.lock, so an address is never handed out twice. The
default network is ``bridge`` on the device fleet0 (10.89.0.0/16); others (and the
default network of any other store) get a device named from a hash and, unless given
one, the first free 10.90.N.0/24.

A container's namespace is /run/netns/fleet-ID12 (``ip netns``): eth0 (the veth's inner
end, a Docker-style MAC from its address) with the address and a default route through
the gateway, lo up. Its PID 1 joins it (launch.py). Removing the namespace removes both
veth ends.

The rules (firewall.py: iptables or nftables) keep networks apart: IPv4 forwarding is a
host setting, so every fleet bridge gets rules (tag fleet-net-DEVICE: unique on the host,
where two stores may both have a network of one name) that drop traffic
between it and any other fleet bridge; outbound traffic is masqueraded behind the host's
address (a network option turns that off, and then nothing leaves the bridge); with icc
false, containers of one bridge reach each other only along links (tag fleet-link-ID12).
Published ports are DNAT rules (tag fleet-port-ID12), reachable from other machines and
from the host itself, 127.0.0.1 included (route_localnet on the bridge); a host without
a packet filter, or a network that asks for it, gets a userland proxy (proxy.py) instead.
STORE/networks/.ports.json records which container holds which host port; the host-wide
/run/fleet/ports.json says which store holds it, so that a port one store publishes by
NAT (no socket listens on it) is taken for every other store too. It lives in /run: after
a reboot no rule is left, and containers that restart publish their ports again.
"""

import _socket  # socket.py would import enum and selectors for nothing
import os

from agent_payload import tools
from agent_payload.digests import sha256_hex as _sha256_hex
from agent_payload.jsonfile import read_json, write_json
from agent_payload.oci.store import DEFAULT_ROOT, FileLock
from agent_payload.runtime import firewall, netlink, netns

DEFAULT_NETWORK = "bridge"
DEFAULT_DEVICE = "fleet0"
DEFAULT_SUBNET = "10.89.0.0/16"
AUTO_SUBNETS = "10.90.{}.0/24"
LOCK_DIR = "/run/fleet"


class NetworkError(Exception):
    """A network could not be made, joined or removed (one line)."""


def _ip(*args, check=True, commands=None):
    """Run ``ip ARGS`` (``commands``: lines for ``ip ARGS -batch -``, several commands in
    one process, as each costs ~3 ms); NetworkError with its message when it fails."""
    if tools.which("ip") is None:
        raise NetworkError("networks need iproute2's ip command (Debian/Ubuntu: iproute2)")
    if commands is not None:
        args += ("-batch", "-")
    proc = tools.run(["ip", *args], commands)
    if check and proc.returncode != 0:
        raise NetworkError(f"ip {' '.join(args)}: {proc.stderr.strip() or proc.returncode}")
    return proc


def _dir(store):
    path = os.path.join(store.root, "networks")
    os.makedirs(path, mode=0o700, exist_ok=True)
    return path


def _Locked(store):
    """The networks' lock (IPAM, records, subnets and bridges), held for the ``with``
    body: one for the host, as stores on one host share its routes and ports."""
    _dir(store)
    os.makedirs(LOCK_DIR, mode=0o700, exist_ok=True)
    return FileLock(os.path.join(LOCK_DIR, "networks.lock"))


def _check_name(name):
    if not name or len(name) > 64 or not all(c.isalnum() or c in "_.-" for c in name) \
            or not name[0].isalnum():
        raise NetworkError(f"{name!r} is not a network name ([a-zA-Z0-9][a-zA-Z0-9_.-]*)")


def _device(name, store_root=DEFAULT_ROOT):
    """The bridge's name: fleet0 for the default network of the default store; others
    from a hash (of the store too, so that two stores on a host never share a bridge)."""
    if store_root == DEFAULT_ROOT:
        if name == DEFAULT_NETWORK:
            return DEFAULT_DEVICE
        key = name
    else:
        key = f"{store_root}\0{name}"
    return "fl-" + _sha256_hex(key.encode())[:10]  # 13 of 15 chars


def get(store, name):
    """The network's record, or None."""
    return read_json(os.path.join(_dir(store), f"{name}.json"), None)


def list_networks(store):
    """Every network's record."""
    base = _dir(store)
    return [read_json(os.path.join(base, entry), {}) for entry in sorted(os.listdir(base))
            if entry.endswith(".json") and not entry.endswith(".ipam.json")
            and not entry.startswith(".")]


def _routed():
    """{subnet: device} of the host's IPv4 routes (a subnet in use on the host)."""
    import ipaddress  # making a network needs it; a container create does not

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
    import ipaddress

    taken = {ipaddress.ip_network(n["subnet"]) for n in list_networks(store) if n}
    taken |= set(_routed())
    for index in range(256):
        candidate = ipaddress.ip_network(AUTO_SUBNETS.format(index))
        if not any(candidate.overlaps(other) for other in taken):
            return str(candidate)
    raise NetworkError("no free 10.90.N.0/24 subnet left: give the network a subnet")


def net_tag(record):
    """The tag of a network's own rules."""
    return "fleet-net-" + record["bridge"]


def _rules(record):
    """The network's firewall rules (firewall.py's form), in the order they stand.

    Inbound, only replies and published ports (their accepts stand above these) reach
    the bridge. Between its containers, everything passes unless icc is false (then only
    links to exposed ports, whose accepts stand above). Outbound, with masquerading (the
    default) a container reaches other hosts through the host's address, but never
    another fleet network; without it, nothing leaves the bridge."""
    device, tag = record["bridge"], net_tag(record)
    rules = [{"chain": firewall.FORWARD, "in": "!" + device, "out": device, "action": "drop"},
             {"chain": firewall.FORWARD, "in": device, "out": device,
              "action": "accept" if record.get("icc", True) else "drop"}]
    if record.get("masquerade", True):
        rules += [
            {"chain": firewall.FORWARD, "in": device, "out": DEFAULT_DEVICE, "action": "drop"},
            {"chain": firewall.FORWARD, "in": device, "out": "fl-+", "action": "drop"},
            {"chain": firewall.FORWARD, "in": device, "action": "accept"},
            {"chain": firewall.POSTROUTING, "src": record["subnet"], "out": "!" + device,
             "action": "masquerade"},
        ]
    else:
        rules.append({"chain": firewall.FORWARD, "in": device, "action": "drop"})
    # the host's own connections to its published ports on 127.0.0.1 (route_localnet)
    rules.append({"chain": firewall.POSTROUTING, "out": device, "local_src": True,
                  "action": "masquerade"})
    return [dict(rule, tag=tag) for rule in rules]


def _sysctl(path, value):
    with open(os.path.join("/proc/sys", path), "w") as handle:
        handle.write(value)


def _bridge_filtering():
    """Traffic between ports of one bridge through the packet filter (br_netfilter), so
    that icc false can hold."""
    if not os.path.exists("/proc/sys/net/bridge"):
        tools.run(["modprobe", "br_netfilter"])
    if not os.path.exists("/proc/sys/net/bridge"):
        raise NetworkError("icc false needs the kernel module br_netfilter "
                           "(modprobe br_netfilter)")
    _sysctl("net/bridge/bridge-nf-call-iptables", "1")


def _bring_up(record):
    """Create the bridge (again, after a reboot) with its gateway address, and its rules."""
    device = record["bridge"]
    if _ip("link", "show", device, check=False).returncode != 0:
        _ip("link", "add", device, "type", "bridge")
        _ip("addr", "add", f"{record['gateway']}/{_prefixlen(record)}", "dev", device)
    _ip("link", "set", device, "up")
    if firewall.backend() is None:
        with open("/proc/sys/net/ipv4/ip_forward") as handle:
            if handle.read().strip() != "0":
                raise NetworkError("networks cannot be kept apart on this host: it forwards "
                                   "IP traffic and has neither iptables nor nftables "
                                   "(Debian/Ubuntu: apt-get install iptables)")
        return  # nothing is forwarded: no isolation to enforce, no way out either
    if not record.get("icc", True):
        _bridge_filtering()
    _sysctl(f"net/ipv4/conf/{device}/route_localnet", "1")
    if record.get("masquerade", True):
        _sysctl("net/ipv4/ip_forward", "1")  # a host setting, as Docker sets it
    try:
        firewall.remove(net_tag(record))  # a rerun never doubles them
        firewall.add(_rules(record))
    except firewall.FirewallError as exc:
        raise NetworkError(str(exc)) from None


def ensure(store, name=DEFAULT_NETWORK, subnet=None, masquerade=True, icc=True,
           userland_proxy=False, labels=None):
    """The network ``name`` (made if missing, its bridge up); its record. ``icc`` false:
    its containers reach each other only along links, on exposed ports.
    ``userland_proxy``: its published ports go through proxy.py, not the kernel's NAT."""
    _check_name(name)
    with _Locked(store):
        record = get(store, name)
        if record is None:
            import ipaddress

            default = name == DEFAULT_NETWORK and store.root == DEFAULT_ROOT
            chosen = subnet or (DEFAULT_SUBNET if default else _free_subnet(store))
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
            record = {"name": name, "id": _sha256_hex(os.urandom(32)),
                      "subnet": str(network), "gateway": str(next(network.hosts())),
                      "bridge": _device(name, store.root), "masquerade": bool(masquerade),
                      "icc": bool(icc), "userland_proxy": bool(userland_proxy),
                      "labels": dict(labels or {})}
            write_json(os.path.join(_dir(store), f"{name}.json"), record)
        if not os.path.isdir(f"/sys/class/net/{record['bridge']}"):
            _bring_up(record)  # new, or gone with a reboot (its rules went with it)
        return record


def remove(store, name):
    """Remove the network (refused while a container has an address on it)."""
    with _Locked(store):
        record = get(store, name)
        if record is None:
            return False
        used = read_json(os.path.join(_dir(store), f"{name}.ipam.json"), {})
        if used:
            raise NetworkError(f"network {name} is in use by {len(used)} container(s)")
        _ip("link", "del", record["bridge"], check=False)
        firewall.remove(net_tag(record))
        firewall.teardown()
        for suffix in (".json", ".ipam.json"):
            try:
                os.unlink(os.path.join(_dir(store), name + suffix))
            except FileNotFoundError:
                pass
        return True


# A container create works with a network's record, whose subnet ipaddress already
# checked and wrote in normal form: plain integers do, without ipaddress's imports
# (functools, collections: about a millisecond of every create).
def _number(address):
    a, b, c, d = (int(part) for part in address.split("."))
    return a << 24 | b << 16 | c << 8 | d


def _dotted(number):
    return f"{number >> 24}.{number >> 16 & 255}.{number >> 8 & 255}.{number & 255}"


def _prefixlen(record):
    return int(record["subnet"].partition("/")[2])


def _hosts(record):
    """The subnet's host addresses in order (no network or broadcast address)."""
    first = _number(record["subnet"].partition("/")[0])
    return (_dotted(n) for n in range(first + 1, first + (1 << 32 - _prefixlen(record)) - 1))


def _mac(address):
    return "02:42:" + ":".join(f"{_number(address) >> s & 255:02x}" for s in (24, 16, 8, 0))


def netns_name(container_id):
    """The container's ``ip netns`` name."""
    return "fleet-" + container_id[:12]


def attach(store, name, container_id, mappings=None, labels=None):
    """Give the container an address on network ``name`` (made with ``labels`` if new)
    and its namespace, and publish ``mappings`` (spec.parse_port's); return its settings
    (IPAddress, Gateway, IPPrefixLen, MacAddress, NetworkID, netns, Ports). The rest of
    the inside (lo up, the address, the default route) is left to whoever enters it
    first: the container's PID 1 (netlink.configure)."""
    record = ensure(store, name, labels=labels)
    prefixlen = _prefixlen(record)
    ipam_path = os.path.join(_dir(store), f"{name}.ipam.json")
    with _Locked(store):
        used = read_json(ipam_path, {})
        address = next((a for a in _hosts(record)
                        if a != record["gateway"] and a not in used), None)
        if address is None:
            raise NetworkError(f"network {name} has no address left")
        used[address] = container_id
        write_json(ipam_path, used)
    ns = netns_name(container_id)
    try:
        _add_namespace(ns, _outer(container_id), _mac(address), record["bridge"])
        ports = publish(store, container_id, address, mappings or [],
                        record.get("userland_proxy", False))
    except NetworkError:
        detach(store, name, container_id, published=True, linked=True)
        raise
    return {"IPAddress": address, "Ports": ports, "Gateway": record["gateway"],
            "IPPrefixLen": prefixlen, "MacAddress": _mac(address),
            "NetworkID": record["id"], "netns": netns.path_of(ns)}


def _outer(container_id):
    """The host's end of the container's veth pair."""
    return "fleetv" + container_id[:8]


def _add_namespace(ns, outer, mac, bridge):
    """The container's namespace ``ns`` with the inner end of a veth pair in it (eth0,
    ``mac``, up) and the host's end ``outer`` on ``bridge``, up; the address and route
    inside are left to PID 1 (netlink.configure). No process: what ip would do is done
    by netns.py and netlink.py, the pair from a thread in the new namespace."""
    try:
        master = _socket.if_nametoindex(bridge)  # looked up here, in the host's namespace
    except OSError as exc:
        raise NetworkError(f"the network's bridge {bridge}: {exc.strerror or exc}") from None
    try:
        host = netlink.Route()  # a socket stays in the namespace it was made in
        try:
            host_ns = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
            try:
                netns.add(ns, inside=lambda: netlink.add_veth(host, host_ns, outer, master,
                                                               mac))
            finally:
                os.close(host_ns)
        finally:
            host.close()
    except OSError as exc:
        raise NetworkError(f"network namespace {ns}: {exc.strerror or exc}") from None


def detach(store, name, container_id, published=True, linked=True):
    """Remove the container's ports (``published``), its openings to links (``linked``),
    its namespace (and its veth); give its address back."""
    if published:
        unpublish(store, container_id)
    if linked:
        firewall.remove(link_tag(container_id))
    # The host's end first: deleting it deletes the pair at once, while the namespace may
    # live on for a while after its name goes (sockets of the container still closing,
    # e.g. towards a linked container removed before it, hold it).
    # Best effort, as `ip -force`: neither is there when attach failed half-way.
    for undo, what in ((netlink.delete_link, _outer(container_id)),
                       (netns.remove, netns_name(container_id))):
        try:
            undo(what)
        except OSError:
            pass
    ipam_path = os.path.join(_dir(store), f"{name}.ipam.json")
    with _Locked(store):
        used = read_json(ipam_path, {})
        kept = {a: c for a, c in used.items() if c != container_id}
        if kept != used:
            write_json(ipam_path, kept)


def _free_port(host_ip, proto, wanted, published):
    """``wanted`` when it is free on the host (0: any free one); NetworkError if taken,
    by a process listening on it or by another container's published port."""

    kind = _socket.SOCK_STREAM if proto == "tcp" else _socket.SOCK_DGRAM
    where = f"{host_ip + ':' if host_ip else ''}{wanted}/{proto}"
    if wanted and f"{wanted}/{proto}" in published:
        raise NetworkError(f"port {where} is already published by container "
                           f"{published[f'{wanted}/{proto}'][:12]}")
    for _ in range(100):
        probe = _socket.socket(_socket.AF_INET, kind)
        try:
            probe.setsockopt(_socket.SOL_SOCKET, _socket.SO_REUSEADDR, 1)
            probe.bind((host_ip or "0.0.0.0", wanted))
            port = probe.getsockname()[1]
        except OSError as exc:
            raise NetworkError(f"port {where} is already taken on this host "
                               f"({exc.strerror})") from None
        finally:
            probe.close()
        if f"{port}/{proto}" not in published:
            return port
    raise NetworkError(f"no free {proto} port found on this host")


def port_tag(container_id):
    """The tag of a container's published-port rules."""
    return "fleet-port-" + container_id[:12]


def link_tag(container_id):
    """The tag of the rules that open a container's links (icc false)."""
    return "fleet-link-" + container_id[:12]


def _port_rules(tag, mapping, address):
    host, proto = mapping["host_port"], mapping["proto"]
    nat = {"dst": mapping["host_ip"], "proto": proto, "dport": host, "local_dst": True,
           "action": "dnat", "to": f"{address}:{mapping['port']}", "tag": tag}
    return [dict(nat, chain=firewall.PREROUTING), dict(nat, chain=firewall.OUTPUT),
            {"chain": firewall.FORWARD, "dst": address, "proto": proto,
             "dport": mapping["port"], "action": "accept", "tag": tag}]


def link_rules(container_id, device, address, targets):
    """Accept rules from the container at ``address`` to its links' exposed ports:
    ``targets`` is [(address, ["5432/tcp", ...])]."""
    rules = []
    for target, exposed in targets:
        for port in exposed:
            number, _, proto = str(port).partition("/")
            rules.append({"chain": firewall.FORWARD, "in": device, "out": device,
                          "src": address, "dst": target, "proto": proto or "tcp",
                          "dport": int(number), "action": "accept",
                          "tag": link_tag(container_id)})
    return rules


def open_links(store, name, container_id, address, targets):
    """Let the container reach its links' exposed ports on a network with icc false
    (replacing the rules it had: a target may have a new address)."""
    record = get(store, name)
    if record is None or record.get("icc", True) or firewall.backend() is None:
        return  # only a network with icc false has a container's link rules
    firewall.remove(link_tag(container_id))
    try:
        firewall.add(link_rules(container_id, record["bridge"], address, targets), first=True)
    except firewall.FirewallError as exc:
        raise NetworkError(str(exc)) from None


def _ports_path(store):
    _dir(store)
    return _ports_file(store.root)


def _ports_file(store_root):
    # in the networks directory: no network's name starts with "."
    return os.path.join(store_root, "networks", ".ports.json")


def _host_ports_path():
    return os.path.join(LOCK_DIR, "ports.json")


def _held_elsewhere(store, host_ports):
    """{"PORT/PROTO": container id} of the ports other stores publish on this host, from
    the host-wide record, each checked against its store's own record: an entry whose
    store was removed without unpublishing (or no longer lists it) holds nothing."""
    held, records = {}, {}
    for key, entry in host_ports.items():
        root = entry.get("store")
        if root == store.root:
            continue
        if root not in records:
            records[root] = read_json(_ports_file(root), {}) if root else {}
        if records[root].get(key) == entry.get("container"):
            held[key] = entry["container"]
    return held


def publish(store, container_id, address, mappings, userland=False):
    """Publish the container's ports on the host: the kernel's NAT, or proxy.py's
    userland proxy (asked for, or no packet filter on the host); return Docker's
    NetworkSettings.Ports ({"80/tcp": [{"HostIp", "HostPort"}]})."""
    if not mappings:
        return {}
    userland = userland or firewall.backend() is None
    tag, shown, chosen = port_tag(container_id), {}, []
    try:
        with _Locked(store):
            published = read_json(_ports_path(store), {})
            host_ports = read_json(_host_ports_path(), {})
            taken = dict(_held_elsewhere(store, host_ports), **published)
            for mapping in mappings:
                mapping = dict(mapping, host_port=_free_port(
                    mapping["host_ip"], mapping["proto"], mapping["host_port"], taken))
                key = f"{mapping['host_port']}/{mapping['proto']}"
                published[key] = taken[key] = container_id
                host_ports[key] = {"store": store.root, "container": container_id}
                chosen.append(mapping)
            write_json(_ports_path(store), published)
            write_json(_host_ports_path(), host_ports)
        if userland:
            _start_proxy(store, container_id, address, chosen)
        else:
            _sysctl("net/ipv4/ip_forward", "1")  # what reaches the port goes on to the bridge
            firewall.add([rule for m in chosen for rule in _port_rules(tag, m, address)],
                         first=True)
    except firewall.FirewallError as exc:
        unpublish(store, container_id)
        raise NetworkError(str(exc)) from None
    except BaseException:
        unpublish(store, container_id)
        raise
    for mapping in chosen:
        shown.setdefault(f"{mapping['port']}/{mapping['proto']}", []).append(
            {"HostIp": mapping["host_ip"] or "0.0.0.0", "HostPort": str(mapping["host_port"])})
    return shown


def _start_proxy(store, container_id, address, chosen):
    from agent_payload.runtime import proxy  # the kernel's NAT path never imports it

    try:
        proxy.start(os.path.join(store.root, "containers", container_id),
                    [dict(m, address=address) for m in chosen])
    except proxy.ProxyError as exc:
        raise NetworkError(str(exc)) from None


def unpublish(store, container_id):
    """Remove the container's NAT rules or proxy, and its ports from the record."""
    from agent_payload.runtime import proxy

    proxy.stop(os.path.join(store.root, "containers", container_id))
    firewall.remove(port_tag(container_id))
    with _Locked(store):
        published = read_json(_ports_path(store), {})
        kept = {port: owner for port, owner in published.items() if owner != container_id}
        if kept != published:
            write_json(_ports_path(store), kept)
        host_ports = read_json(_host_ports_path(), {})
        mine = {"store": store.root, "container": container_id}
        host_kept = {port: entry for port, entry in host_ports.items() if entry != mine}
        if host_kept != host_ports:
            write_json(_host_ports_path(), host_kept)

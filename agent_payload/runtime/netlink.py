"""A container's veth pair and network, over rtnetlink: what ``ip link add``, ``ip link
del``, ``ip addr add``, ``ip link set ... up`` and ``ip route add default`` do, without a
process (each ip run costs about 2 ms of CPU).

The payload makes the pair from inside the container's new namespace (``add_veth``,
netns.py), the host's end on the bridge, and removes it (``delete_link``).
The container's PID 1 calls ``configure`` right after it joins that namespace
(launch.py). A restarted PID 1, or one whose container an older payload made (it set up
the inside with ip), finds its address and route in place, which is no error.
"""

import _socket
import errno
import os
import struct

RTM_NEWLINK, RTM_DELLINK, RTM_NEWADDR, RTM_NEWROUTE = 16, 17, 20, 24
NLMSG_ERROR = 2
NLM_F_REQUEST, NLM_F_ACK, NLM_F_EXCL, NLM_F_CREATE = 0x1, 0x4, 0x200, 0x400
IFF_UP = 0x1
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MASTER, IFLA_LINKINFO, IFLA_NET_NS_FD = 1, 3, 10, 18, 28
IFLA_INFO_KIND, IFLA_INFO_DATA, VETH_INFO_PEER = 1, 2, 1
IFA_ADDRESS, IFA_LOCAL = 1, 2
RTA_GATEWAY = 5
RT_TABLE_MAIN, RTPROT_BOOT, RT_SCOPE_UNIVERSE, RTN_UNICAST = 254, 3, 0, 1
HEADER = struct.Struct("=LHHLL")  # nlmsghdr: length, type, flags, sequence, port


class NetlinkError(OSError):
    """The kernel refused a change (errno and what was asked)."""


def _attribute(kind, data):
    length = 4 + len(data)
    return struct.pack("=HH", length, kind) + data + b"\0" * (-length % 4)


class Route:
    """An rtnetlink socket of the calling process's network namespace."""

    def __init__(self):
        self.sock = _socket.socket(_socket.AF_NETLINK,
                                   _socket.SOCK_RAW | _socket.SOCK_CLOEXEC,
                                   _socket.NETLINK_ROUTE)
        self.sequence = 0

    def close(self):
        self.sock.close()

    def ask(self, kind, flags, body, what, done=(errno.EEXIST,)):
        """Send one request and wait for its acknowledgement; the errors in ``done``
        count as success."""
        self.sequence += 1
        self.sock.send(HEADER.pack(HEADER.size + len(body), kind,
                                    NLM_F_REQUEST | NLM_F_ACK | flags, self.sequence, 0) + body)
        while True:
            reply = self.sock.recv(65536)
            offset = 0
            while offset + HEADER.size <= len(reply):
                length, message, _flags, sequence, _port = HEADER.unpack_from(reply, offset)
                if message == NLMSG_ERROR and sequence == self.sequence:
                    code = -struct.unpack_from("=i", reply, offset + HEADER.size)[0]
                    if code and code not in done:
                        raise NetlinkError(code, f"{what}: {os.strerror(code)}")
                    return
                offset += max(HEADER.size, (length + 3) & ~3)


def _ifinfo(index=0, flags=0):
    """struct ifinfomsg: family unspecified, ``flags`` set (and only those changed)."""
    return struct.pack("=BxHiII", 0, 0, index, flags, flags)


def _name(name):
    return _attribute(IFLA_IFNAME, name.encode() + b"\0")


def add_veth(host, host_netns_fd, outer, master_index, mac, inner="eth0"):
    """Called in the container's namespace: make ``inner`` here (MAC ``mac``, up) with
    its peer ``outer`` in the namespace of ``host_netns_fd``, then put ``outer`` on the
    bridge ``master_index`` and up over ``host`` (a Route of that namespace): ``ip link
    add INNER address MAC up type veth peer name OUTER netns HOST``, ``ip -n HOST link set
    OUTER master BRIDGE up``. A name in use is an error.

    The inner end is up before the outer: the pair gets its carrier, and the bridge port
    its forwarding state, now. Brought up by PID 1 only, the port went on forwarding a
    moment after the app began (the kernel tells the bridge asynchronously), the app's
    first ARP request, for the gateway, was lost, and its first connections waited a
    second for the next one.
    """
    peer = _ifinfo() + _name(outer) + _attribute(IFLA_NET_NS_FD, struct.pack("=I", host_netns_fd))
    info = (_attribute(IFLA_INFO_KIND, b"veth")
            + _attribute(IFLA_INFO_DATA, _attribute(VETH_INFO_PEER, peer)))
    here = Route()
    try:
        here.ask(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL,
                 _ifinfo(flags=IFF_UP) + _name(inner)
                 + _attribute(IFLA_ADDRESS, bytes.fromhex(mac.replace(":", "")))
                 + _attribute(IFLA_LINKINFO, info),
                 f"ip link add {inner} type veth peer name {outer}", done=())
    finally:
        here.close()
    host.ask(RTM_NEWLINK, 0,
             _ifinfo(flags=IFF_UP) + _name(outer)
             + _attribute(IFLA_MASTER, struct.pack("=I", master_index)),
             f"ip link set {outer} master up", done=())


def delete_link(name):
    """``ip link del NAME`` (both ends of a veth go); no such link is no error."""
    route = Route()
    try:
        route.ask(RTM_DELLINK, 0, _ifinfo() + _name(name), f"ip link del {name}",
                  done=(errno.ENODEV,))
    finally:
        route.close()


def configure(address, prefixlen, gateway, device="eth0"):
    """Bring up lo and ``device`` with ``address``/``prefixlen``, and route everything
    else through ``gateway``."""
    route = Route()
    try:
        for name in ("lo", device):
            index = _socket.if_nametoindex(name)
            route.ask(RTM_NEWLINK, 0, _ifinfo(index, IFF_UP), f"ip link set {name} up")
        packed = _socket.inet_aton(address)
        route.ask(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL,
                  struct.pack("=BBBBI", _socket.AF_INET, prefixlen, 0, RT_SCOPE_UNIVERSE,
                              index)
                  + _attribute(IFA_LOCAL, packed) + _attribute(IFA_ADDRESS, packed),
                  f"ip addr add {address}/{prefixlen} dev {device}")
        route.ask(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL,
                  struct.pack("=BBBBBBBBI", _socket.AF_INET, 0, 0, 0, RT_TABLE_MAIN,
                              RTPROT_BOOT, RT_SCOPE_UNIVERSE, RTN_UNICAST, 0)
                  + _attribute(RTA_GATEWAY, _socket.inet_aton(gateway)),
                  f"ip route add default via {gateway}")
    finally:
        route.close()

"""nf_tables' ruleset generation, read over nfnetlink: a number the kernel bumps with
every committed change to any nf_tables table (iptables-nft's included).

A payload kept between commands (the controller's ControlPersist) knew that fleet's
chains and jumps were in place when it last looked (iptables-save, a process). If the
generation is still the one it saw then, nothing changed since, and the next command
need not look again (firewall.py). None where there is no nf_tables to ask.
"""

import _socket
import struct

from agent_payload.runtime.netlink import HEADER as _HEADER
from agent_payload.runtime.netlink import NLM_F_REQUEST

NETLINK_NETFILTER = 12
NFNL_SUBSYS_NFTABLES = 10
NFT_MSG_NEWGEN, NFT_MSG_GETGEN = 15, 16
NFTA_GEN_ID = 1
_NFGENMSG = struct.Struct("=BBH")  # family, version, resource id


def generation():
    """The current ruleset generation, or None when nf_tables cannot tell it."""
    try:
        sock = _socket.socket(_socket.AF_NETLINK, _socket.SOCK_RAW | _socket.SOCK_CLOEXEC,
                              NETLINK_NETFILTER)
    except OSError:
        return None
    try:
        body = _NFGENMSG.pack(_socket.AF_UNSPEC, 0, 0)
        sock.send(_HEADER.pack(_HEADER.size + len(body), NFNL_SUBSYS_NFTABLES << 8 |
                               NFT_MSG_GETGEN, NLM_F_REQUEST, 1, 0) + body)
        sock.settimeout(1.0)
        reply = sock.recv(4096)
    except OSError:
        return None
    finally:
        sock.close()
    return parse_generation(reply)


def parse_generation(reply):
    """The NFTA_GEN_ID of a NEWGEN message in ``reply``, else None (an error answer)."""
    if len(reply) < _HEADER.size + _NFGENMSG.size:
        return None
    length, kind = _HEADER.unpack_from(reply)[:2]
    if kind != NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_NEWGEN:
        return None
    offset = _HEADER.size + _NFGENMSG.size
    end = min(length, len(reply))
    while offset + 4 <= end:
        size, attribute = struct.unpack_from("=HH", reply, offset)
        if size < 4:
            return None
        if attribute & 0x3FFF == NFTA_GEN_ID and size >= 8:
            return struct.unpack_from(">I", reply, offset + 4)[0]
        offset += (size + 3) & ~3
    return None

"""network: a container network on the host (a bridge with a subnet), present or absent.

Options:
  name: the network's name ("bridge" is the default network, on device fleet0).
  subnet: its IPv4 subnet (default: the first free 10.90.N.0/24; 10.89.0.0/16 for
      bridge). An existing network keeps its subnet: a different one is an error.
  masquerade: containers reach other hosts through the host's address (default true;
      false: nothing leaves the network).
  icc: containers of the network reach each other freely (default true); false: only
      along links, on the target's exposed ports (needs the br_netfilter module).
  userland_proxy: publish its containers' ports with a userland proxy instead of the
      kernel's NAT (default false; the proxy is also what a host without iptables and
      nftables gets).
  labels: a mapping kept with a new network.
  state: present (default) or absent (refused while a container is attached).
  store: the content store's root (default /var/lib/fleet).

Returns ``network``: Name, Id, Driver (bridge), Subnet, Gateway, Bridge (device).
"""

from agent_payload.oci.store import Store, StoreError
from agent_payload.runtime import network

ARGUMENT_SPEC = {
    "name": {"type": "str", "required": True},
    "subnet": {"type": "str"},
    "masquerade": {"type": "bool", "default": True},
    "icc": {"type": "bool", "default": True},
    "userland_proxy": {"type": "bool", "default": False},
    "labels": {"type": "dict", "default": {}},
    "state": {"type": "str", "default": "present", "choices": ["present", "absent"]},
    "store": {"type": "path", "default": "/var/lib/fleet"},
}


def shown(record):
    """The network as fleet shows it (docker network inspect's main fields)."""
    return {"Name": record["name"], "Id": record["id"], "Driver": "bridge",
            "Subnet": record["subnet"], "Gateway": record["gateway"],
            "Bridge": record["bridge"], "Masquerade": record.get("masquerade", True),
            "ICC": record.get("icc", True), "UserlandProxy": record.get("userland_proxy", False),
            "Labels": record.get("labels") or {}}


def run(params, ctx):
    """Make or remove the network."""
    name = params["name"]
    try:
        store = Store(params["store"])
        existing = network.get(store, name)
        if params["state"] == "absent":
            if existing is not None and not ctx.check_mode:
                network.remove(store, name)
            return {"changed": existing is not None}
        if existing is not None:
            had = {key: existing.get(key, key != "userland_proxy")  # older records lack them
                   for key in ("masquerade", "icc", "userland_proxy")}
            differs = [f"{key} {str(value).lower()}" for key, value in had.items()
                       if value != params[key]]
            if params.get("subnet") and params["subnet"] != existing["subnet"]:
                differs.insert(0, f"subnet {existing['subnet']}")
            if differs:
                return {"failed": True, "changed": False,
                        "msg": f"network {name} exists with {', '.join(differs)} "
                               "(remove it first to change that)"}
            if not ctx.check_mode:
                network.ensure(store, name)  # its bridge back after a reboot
            return {"changed": False, "network": shown(existing)}
        if ctx.check_mode:
            return {"changed": True}
        return {"changed": True, "network": shown(network.ensure(
            store, name, params.get("subnet"), params["masquerade"], params["icc"],
            params["userland_proxy"], {k: str(v) for k, v in params["labels"].items()}))}
    except (network.NetworkError, StoreError, OSError) as exc:
        return {"failed": True, "changed": False, "msg": str(exc)}

"""network: a container network on the host (a bridge with a subnet), present or absent.

Options:
  name: the network's name ("bridge" is the default network, on device fleet0).
  subnet: its IPv4 subnet (default: the first free 10.90.N.0/24; 10.89.0.0/16 for
      bridge). An existing network keeps its subnet: a different one is an error.
  masquerade: containers reach other hosts through the host's address (default true;
      false: nothing leaves the network).
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
    "state": {"type": "str", "default": "present", "choices": ["present", "absent"]},
    "store": {"type": "path", "default": "/var/lib/fleet"},
}


def shown(record):
    """The network as fleet shows it (docker network inspect's main fields)."""
    return {"Name": record["name"], "Id": record["id"], "Driver": "bridge",
            "Subnet": record["subnet"], "Gateway": record["gateway"],
            "Bridge": record["bridge"], "Masquerade": record.get("masquerade", True)}


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
            if params.get("subnet") and params["subnet"] != existing["subnet"]:
                return {"failed": True, "changed": False,
                        "msg": f"network {name} exists with subnet {existing['subnet']}, "
                               f"not {params['subnet']} (remove it first)"}
            if not ctx.check_mode:
                network.ensure(store, name)  # its bridge back after a reboot
            return {"changed": False, "network": shown(existing)}
        if ctx.check_mode:
            return {"changed": True}
        return {"changed": True, "network": shown(network.ensure(
            store, name, params.get("subnet"), params["masquerade"]))}
    except (network.NetworkError, StoreError, OSError) as exc:
        return {"failed": True, "changed": False, "msg": str(exc)}

"""network_info: the host's container networks and the containers attached to them.

Options:
  store: the content store's root (default /var/lib/fleet).

Returns ``networks``: [{Name, Id, Driver, Subnet, Gateway, Bridge, Containers}]
(Containers: {container id: address}). Never changes anything.
"""

import json
import os

from agent_payload.modules.network import shown as network_shown
from agent_payload.oci.store import Store, StoreError
from agent_payload.runtime import network

ARGUMENT_SPEC = {"store": {"type": "path", "default": "/var/lib/fleet"}}


def run(params, ctx):
    """List the networks."""
    try:
        store = Store(params["store"])
        shown = []
        for record in network.list_networks(store):
            if not record:
                continue
            try:
                with open(os.path.join(store.root, "networks",
                                       f"{record['name']}.ipam.json")) as handle:
                    used = json.load(handle)
            except (OSError, ValueError):
                used = {}
            shown.append(dict(network_shown(record),
                              Containers={cid: ip for ip, cid in sorted(used.items())}))
    except (StoreError, OSError) as exc:
        return {"failed": True, "changed": False, "msg": str(exc)}
    return {"changed": False, "networks": shown}

"""volume_info: the host's volumes (named and anonymous) and who uses them.

Options:
  store: the content store's root (default /var/lib/fleet).

Returns ``volumes``: [{Name, Driver, Mountpoint, Scope, UsedBy}]. Never changes anything.
"""

from agent_payload.oci.store import Store, StoreError
from agent_payload.runtime import volumes

ARGUMENT_SPEC = {"store": {"type": "path", "default": "/var/lib/fleet"}}


def run(params, ctx):
    """List the volumes."""
    try:
        return {"changed": False, "volumes": volumes.list_volumes(Store(params["store"]))}
    except StoreError as exc:
        return {"failed": True, "changed": False, "msg": str(exc)}

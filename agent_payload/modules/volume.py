"""volume: a named volume on the host (STORE/volumes/NAME/_data), present or absent.

Options:
  name: the volume's name ([a-zA-Z0-9][a-zA-Z0-9_.-]+).
  state: present (default) or absent (refused while a container uses it, unless force).
  force: remove it even when containers use it.
  labels: a mapping kept with a new volume (docker volume create --label).
  store: the content store's root (default /var/lib/fleet).

Returns ``volume`` as docker volume inspect shows it (Name, Driver, Mountpoint, Scope),
with UsedBy: the containers that mount it.
"""

from agent_payload.oci.store import Store, StoreError
from agent_payload.runtime import volumes
from agent_payload.runtime.volumes import VolumeError

ARGUMENT_SPEC = {
    "name": {"type": "str", "required": True},
    "state": {"type": "str", "default": "present", "choices": ["present", "absent"]},
    "force": {"type": "bool", "default": False},
    "labels": {"type": "dict", "default": {}},
    "store": {"type": "path", "default": "/var/lib/fleet"},
}


def run(params, ctx):
    """Make or remove the volume."""
    name = params["name"]
    try:
        store = Store(params["store"])
        exists = bool([v for v in volumes.list_volumes(store) if v["Name"] == name])
        if params["state"] == "present":
            if not exists and not ctx.check_mode:
                volumes.create(store, name, {k: str(v) for k, v in params["labels"].items()})
            return {"changed": not exists, "volume": volumes.describe(store, name)}
        if exists and not ctx.check_mode:
            volumes.remove(store, name, params["force"])
        return {"changed": exists}
    except (VolumeError, StoreError, OSError) as exc:
        return {"failed": True, "changed": False, "msg": str(exc)}

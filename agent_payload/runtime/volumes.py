"""Named volumes: STORE/volumes/NAME/_data, as Docker lays them out.

A volume is made on first use by a container (run.prepare_volumes) or by the volume
module; it outlives the containers that use it and goes only when removed, never while a
container uses it unless forced. Anonymous volumes (a 64-hex name) belong to their
container and go with it.
"""

import os

from agent_payload import jsonfile
from agent_payload.oci.store import remove_tree
from agent_payload.runtime import containers, spec
from agent_payload.runtime.run import VOLUME_LABELS, volume_path


class VolumeError(Exception):
    """A volume operation failed (one line naming the volume)."""


def data_path(store, name):
    """The directory containers see of volume ``name``."""
    return volume_path(store.root, name)


def _check_name(name):
    try:
        spec.parse_volume(f"{name}:/check")
    except spec.SpecError:
        raise VolumeError(f"{name!r} is not a volume name ([a-zA-Z0-9][a-zA-Z0-9_.-]+)") \
            from None


def users(store, name):
    """Names of the containers whose mounts include volume ``name``."""
    return sorted(config["name"] for _, config in containers.list_all(store)
                  if any(m.get("volume") == name for m in config.get("mounts") or []))


def labels_of(store, name):
    """The volume's labels ({} when it has none)."""
    path = os.path.join(os.path.dirname(data_path(store, name)), VOLUME_LABELS)
    return jsonfile.read_json(path, {}) or {}


def describe(store, name):
    """The volume as docker volume inspect shows it (plus UsedBy)."""
    return {"Name": name, "Driver": "local", "Mountpoint": data_path(store, name),
            "Scope": "local", "Labels": labels_of(store, name),
            "UsedBy": users(store, name)}


def create(store, name, labels=None):
    """Make the volume (with ``labels``); False when it exists already."""
    _check_name(name)
    path = data_path(store, name)
    if os.path.isdir(path):
        return False
    os.makedirs(path, mode=0o755)
    if labels:
        jsonfile.write_json(os.path.join(os.path.dirname(path), VOLUME_LABELS), labels)
    return True


def remove(store, name, force=False):
    """Remove the volume and its data; False when there is none."""
    _check_name(name)
    if not os.path.isdir(os.path.dirname(data_path(store, name))):
        return False
    using = users(store, name)
    if using and not force:
        raise VolumeError(f"volume {name} is in use by {', '.join(using)} (force removes it)")
    remove_tree(os.path.dirname(data_path(store, name)))
    return True


def list_volumes(store):
    """Every volume on the host, anonymous ones included."""
    base = os.path.join(store.root, "volumes")
    names = sorted(os.listdir(base)) if os.path.isdir(base) else []
    return [describe(store, name) for name in names]

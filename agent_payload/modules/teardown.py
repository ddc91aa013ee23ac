"""teardown: remove everything of one project on the host (what `fleet down` runs).

Options:
  project: the project (the fleet.project label of what its playbook made).
  volumes: also remove its named volumes: those made for it (labelled) and those its
      containers mounted, unless a container of another project still uses one.
  images: also remove the images its containers were made from, when no other
      container uses them.
  stop_timeout: seconds between the stop signal and SIGKILL (default 10).
  store: the content store's root (default /var/lib/fleet).

Containers go first (stopped, then removed with their anonymous volumes, ports and
addresses), then the project's networks, then what was asked for of volumes and images.
Returns ``removed``: {containers, networks, volumes, images} (names), and ``kept``:
[one line per object left with the reason]. Check mode reports without removing.
"""

from agent_payload import labels
from agent_payload.oci.store import Store, StoreError
from agent_payload.runtime import containers, network, volumes
from agent_payload.runtime.containers import ContainerError

ARGUMENT_SPEC = {
    "project": {"type": "str", "required": True},
    "volumes": {"type": "bool", "default": False},
    "images": {"type": "bool", "default": False},
    "stop_timeout": {"type": "int", "default": 10},
    "store": {"type": "path", "default": "/var/lib/fleet"},
}


def _of(project, found_labels):
    return (found_labels or {}).get(labels.PROJECT) == project


def run(params, ctx):
    """Remove the project's containers, networks and (if asked) volumes and images."""
    project, removed, kept = params["project"], {}, []
    try:
        store = Store(params["store"])
        mine = [(d, c) for d, c in containers.list_all(store) if labels.project_of(c) == project]
        used_volumes = {m["volume"] for _, c in mine for m in c.get("mounts") or []
                        if m.get("volume") and not m.get("anonymous")}
        used_images = {c.get("image_id") for _, c in mine}
        removed["containers"] = sorted(c["name"] for _, c in mine)
        if not ctx.check_mode:
            # linkers first: their connections close while what they link to still runs
            for directory, config in sorted(mine, key=lambda found: not found[1].get("links")):
                containers.remove(directory, config, force=True,
                                  stop_timeout=params["stop_timeout"])
        removed["networks"] = []
        for name in sorted(r["name"] for r in network.list_networks(store)
                           if r and _of(project, r.get("labels"))):
            try:
                if not ctx.check_mode:
                    network.remove(store, name)
                removed["networks"].append(name)
            except network.NetworkError as exc:  # another project's container on it
                kept.append(f"network {name}: {exc}")
        removed["volumes"] = []
        if params["volumes"]:
            for found in volumes.list_volumes(store):
                if found["Name"] not in used_volumes and not _of(project, found["Labels"]):
                    continue
                others = found["UsedBy"] if ctx.check_mode else \
                    volumes.users(store, found["Name"])
                others = [n for n in others if n not in removed["containers"]]
                if others:
                    kept.append(f"volume {found['Name']}: in use by {', '.join(others)}")
                    continue
                removed["volumes"].append(found["Name"])
                if not ctx.check_mode:
                    volumes.remove(store, found["Name"])
        removed["images"] = _images(store, used_images, removed["containers"], kept,
                                    ctx.check_mode) if params["images"] else []
    except (ContainerError, network.NetworkError, volumes.VolumeError, StoreError,
            OSError) as exc:
        return {"failed": True, "changed": bool(any(removed.values())),
                "removed": removed, "msg": f"project {project}: {exc}"}
    return {"changed": any(removed.values()), "removed": removed, "kept": kept}


def _images(store, image_ids, gone, kept, check_mode):
    """Remove the images ``image_ids`` no container but the ``gone`` ones uses."""
    removed = []
    for image_id in sorted(i for i in image_ids if i):
        try:
            record = store.load_image(image_id)
        except StoreError:
            continue  # gone already
        users = [n for n in store.containers_using(image_id) if n not in gone]
        shown = (record.get("repo_tags") or [image_id])[0]
        if users:
            kept.append(f"image {shown}: in use by {', '.join(users)}")
            continue
        removed.append(shown)
        if not check_mode:
            store.remove_image(image_id)
    if removed and not check_mode:
        with store.lock():
            store.gc()
    return removed

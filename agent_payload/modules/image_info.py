"""image_info: the images in the host's content store, as docker inspect shows them.

Options:
  name: only this image (a reference, repo digest or id prefix); all when omitted.
  store: the content store's root (default /var/lib/fleet).

Returns ``images``: a list of image inspect objects. Never changes anything.
"""

from agent_payload.modules.image import inspect
from agent_payload.oci.store import Store, StoreError

ARGUMENT_SPEC = {
    "name": {"type": "str"},
    "store": {"type": "path", "default": "/var/lib/fleet"},
}


def run(params, ctx):
    """List the store's images (or the one named)."""
    try:
        store = Store(params["store"])
        if params.get("name"):
            record = store.find_image(params["name"])
            records = [record] if record else []
        else:
            records = store.list_images()
    except StoreError as exc:
        return {"failed": True, "changed": False, "msg": str(exc)}
    return {"changed": False, "images": [inspect(r, store) for r in records]}

"""image: pull an image into the host's content store, or remove it.

Options:
  name: the image reference as Docker users write it (busybox, host:port/repo:tag,
      repo@sha256:...).
  state: present (default) or absent.
  force: with state=absent, remove the image's names even when a container uses it
      (default false: refuse). The container keeps the image, untagged, and its layers.
  pull: missing (default: only when the store lacks the image) or always (ask the
      registry, and pull when its manifest changed).
  platform: os/arch[/variant] to pull instead of the host's own.
  registry_auth: {username, password} for the image's registry (never echoed).
  insecure_registries: registries (host:port) reached over plain HTTP.
  ca_file: a CA bundle on the host to verify the registry's TLS certificate.
  store: the content store's root (default /var/lib/fleet).

Layers are fetched in parallel (verified by digest), unpacked once per chain id into
overlay lower directories shared between images, and checked against the config's
rootfs.diff_ids; a failed pull leaves the store as it was, except that a blob's download
so far is kept for the next pull to resume (with a Range request). Progress events:
``{layer, done, total}`` while downloading, ``{layer, status}`` per layer.

Returns ``image``: the image as docker inspect shows it (Id, RepoTags, RepoDigests,
Created, Architecture, Os, Config, RootFS, Size).
"""

import os
import re

from agent_payload import threads
from agent_payload.modules._pull_options import PULL_OPTIONS
from agent_payload.oci.platform import PlatformError, parse_platform
from agent_payload.oci.reference import ReferenceError, parse_reference
from agent_payload.oci.registry import RegistryClient, RegistryError
from agent_payload.oci.store import Store, StoreError
from agent_payload.oci.unpack import UnpackError, chain_id, unpack_layer

ARGUMENT_SPEC = {
    "name": {"type": "str", "required": True},
    "state": {"type": "str", "default": "present", "choices": ["present", "absent"]},
    "force": {"type": "bool", "default": False},
    "pull": {"type": "str", "default": "missing", "choices": ["missing", "always"]},
    "platform": {"type": "str"},
    **PULL_OPTIONS,
    "store": {"type": "path", "default": "/var/lib/fleet"},
}


_IMAGE_ID = re.compile(r"^(sha256:)?[0-9a-f]{1,64}$")


def compression_of(media_type):
    """gzip / zstd / none from a layer's media type."""
    if media_type.endswith("gzip"):
        return "gzip"
    if media_type.endswith("zstd"):
        return "zstd"
    return "none"


def inspect(record, store=None):
    """The image as docker inspect shows it (GraphDriver when the store is known)."""
    config = record.get("config") or {}
    graph = {"Name": "overlay", "Data": {}}
    if store is not None and record.get("layers"):
        # overlayfs wants the topmost layer first.
        graph["Data"]["LowerDir"] = ":".join(store.layer_path(chain)
                                             for chain in reversed(record["layers"]))
    return {
        "Id": record["id"],
        "RepoTags": list(record.get("repo_tags") or []),
        "RepoDigests": list(record.get("repo_digests") or []),
        "Created": config.get("created"),
        "Architecture": config.get("architecture"),
        "Variant": config.get("variant"),
        "Os": config.get("os"),
        "Config": config.get("config") or {},
        "RootFS": {"Type": "layers", "Layers": list((config.get("rootfs") or {})
                                                     .get("diff_ids") or [])},
        "Size": record.get("size", 0),
        "GraphDriver": graph,
    }


def run(params, ctx):
    """Make the image present (pulling what is missing) or absent."""
    try:
        ref = parse_reference(params["name"])
        platform = parse_platform(params["platform"]) if params.get("platform") else None
    except (ReferenceError, PlatformError) as exc:
        return {"failed": True, "changed": False, "msg": str(exc)}
    try:
        store = Store(params["store"])
        with store.lock():
            if params["state"] == "absent":
                return _remove(store, ref, params["name"], params["force"], ctx)
            return _present(store, ref, platform, params, ctx)
    except (RegistryError, StoreError, UnpackError) as exc:
        return {"failed": True, "changed": False, "msg": str(exc)}


def _remove(store, ref, name, force, ctx):
    record = store.find_image(str(ref))
    if record is None and _IMAGE_ID.match(name.strip()):
        # An image id (or prefix) parses as a repository name; docker rmi takes both.
        record = store.find_image(name.strip())
    if record is None:
        return {"changed": False, "msg": f"{ref.familiar} is not present"}
    tag = _tag(ref)
    tags = list(record.get("repo_tags") or [])
    others = [t for t in tags if t != tag]
    if tag in tags and others:
        # Like docker rmi: a name of an image that has others only loses that name (the
        # image stays, so a container using it is not concerned).
        if not ctx.check_mode:
            store.save_image(dict(record, repo_tags=others))
        return {"changed": True, "image": inspect(record)}
    users = store.containers_using(record["id"])
    if users:
        shown = ", ".join(users)
        what = "container" if len(users) == 1 else "containers"
        if not force:
            return {"failed": True, "changed": False,
                    "msg": f"unable to remove image {ref.familiar}: in use by {what} "
                           f"{shown} (force removes its names only)"}
        # The containers find their layers through the image's record, so it stays (and
        # gc keeps its layers and blobs); only its names go, as docker rmi -f does for an
        # image a running container uses.
        if not tags and not record.get("repo_digests"):
            return {"changed": False, "image": inspect(record),
                    "msg": f"image {record['id']} has no names; kept for {what} {shown}"}
        if not ctx.check_mode:
            store.save_image(dict(record, repo_tags=[], repo_digests=[]))
        return {"changed": True, "image": inspect(record),
                "msg": f"untagged {ref.familiar}; image {record['id']} kept for {what} "
                       f"{shown}"}
    if not ctx.check_mode:
        store.remove_image(record["id"])
        store.gc()
    return {"changed": True, "image": inspect(record)}


def _tag(ref):
    return str(ref).split("@")[0] if ref.tag else None


def _present(store, ref, platform, params, ctx):
    existing = store.find_image(str(ref))
    if existing is not None and params["pull"] == "missing":
        return {"changed": False, "image": inspect(existing, store)}
    if ctx.check_mode and existing is None:
        return {"changed": True, "msg": f"would pull {ref.familiar}"}
    auth = params.get("registry_auth")
    client = RegistryClient(
        ref, credentials=(auth["username"], auth["password"]) if auth else None,
        insecure_registries=params["insecure_registries"], ca_file=params.get("ca_file"))
    manifest_digest, manifest, config, layers = client.resolve(ref, platform)
    image_id = manifest["config"]["digest"]
    repo_digest = f"{ref.registry}/{ref.repository}@{manifest_digest}"
    if existing is not None and existing.get("manifest_digest") == manifest_digest:
        return {"changed": False, "image": inspect(existing, store)}
    if ctx.check_mode:
        return {"changed": True, "msg": f"would pull {ref.familiar} ({manifest_digest})"}
    diff_ids = list((config.get("rootfs") or {}).get("diff_ids") or [])
    if len(diff_ids) != len(layers):
        raise RegistryError(f"pull {ref.familiar}: the config lists {len(diff_ids)} layers, "
                            f"the manifest {len(layers)}")
    chains = [chain_id(diff_ids[:i + 1]) for i in range(len(layers))]
    size = sum(int(layer.get("size") or 0) for layer in layers)
    wanted = [layer for layer, chain in zip(layers, chains)
              if not store.has_layer(chain) and not store.has_blob(layer["digest"])]
    downloads = _download(store, client, ref, wanted, ctx)
    try:
        for index, layer in enumerate(layers):
            ctx.check_cancelled()
            _unpack_layer(store, ref, layer, diff_ids[index], chains[index], ctx, downloads)
    finally:
        for done, _ in downloads.values():  # no thread may outlive the store's lock
            done.wait()
    tags = [t for t in [_tag(ref)] if t]
    if store.find_image(image_id) is not None:
        old = store.load_image(image_id)
        tags = sorted(set(tags) | set(old.get("repo_tags") or []))
    record = {"id": image_id, "manifest_digest": manifest_digest, "config": config,
              "config_digest": image_id, "repo_tags": tags, "repo_digests": [repo_digest],
              "layers": chains, "blobs": [layer["digest"] for layer in layers], "size": size}
    store.save_image(record)
    return {"changed": True, "image": inspect(record, store)}


PARALLEL_DOWNLOADS = 4


def _download(store, client, ref, layers, ctx):
    """Fetch the blobs of ``layers`` into the store, PARALLEL_DOWNLOADS at a time.

    Returns {digest: (done Event, outcome dict)}; an outcome holds "error" on failure.
    """
    pending = threads.Inbox()
    downloads = {}
    for layer in layers:
        if layer["digest"] not in downloads:
            downloads[layer["digest"]] = (threads.Event(), {})
            pending.put(layer)

    def worker():
        while True:
            try:
                layer = pending.get(0)
            except threads.InputTimeout:
                return
            done, outcome = downloads[layer["digest"]]
            try:
                _fetch_blob(store, client, ref, layer, ctx)
            except BaseException as exc:  # handed to the unpacking thread
                outcome["error"] = exc
            finally:
                done.set()

    for _ in range(min(PARALLEL_DOWNLOADS, len(downloads))):
        threads.start(worker)
    return downloads


def _fetch_blob(store, client, ref, layer, ctx):
    """Download one layer blob into the store, resuming what an earlier pull left.

    When resumed bytes fail the digest check, the store drops them and the blob is
    fetched once more from 0: they, not the registry, may be what was wrong (a crash
    can leave a partial file whose tail never reached the disk).
    """
    digest = layer["digest"]
    for attempt in (1, 2):
        resumed = 0
        try:
            with store.blob_writer(digest, layer.get("size")) as blob:
                resumed = blob.size
                client.fetch_blob(ref, layer, blob, cancelled=ctx.cancelled,
                                  progress=lambda d, t: ctx.progress(layer=digest, done=d,
                                                                     total=t))
            return
        except (RegistryError, StoreError):
            # A partial download that is still there was cut off, not found bad.
            if attempt == 2 or not resumed or ctx.cancelled() or \
                    os.path.exists(store.partial_path(digest)):
                raise


def _unpack_layer(store, ref, layer, diff_id, chain, ctx, downloads):
    digest = layer["digest"]
    if store.has_layer(chain):
        ctx.progress(layer=digest, status="exists")
        return
    if digest in downloads:
        done, outcome = downloads[digest]
        done.wait()
        if "error" in outcome:
            raise outcome["error"]
    ctx.progress(layer=digest, status="unpacking")

    def unpack(tmp_dir):
        with open(store.blob_path(digest), "rb") as handle:
            stats = unpack_layer(handle, tmp_dir, compression_of(layer.get("mediaType", "")),
                                 digest)
        if stats["diff_id"] != diff_id:
            raise UnpackError(f"layer {digest} of {ref.familiar}: its content is "
                              f"{stats['diff_id']}, the config says {diff_id}")

    store.add_layer(chain, unpack)
    ctx.progress(layer=digest, status="done")

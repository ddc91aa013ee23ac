"""The image module in-process against a fake registry: resumed pulls, removal while a
container uses the image (refused, or forced)."""

import json
import os

import pytest

from agent_payload import serve
from agent_payload.modules import image as image_module
from agent_payload.oci.store import Store
from tests.unit.modules.conftest import FakeCtx, call
from tests.unit.oci.fake_registry import FakeRegistry, noise


@pytest.fixture
def registry():
    with FakeRegistry() as reg:
        yield reg


@pytest.fixture
def store(tmp_path):
    return Store(str(tmp_path / "fleet"))


def _pull(registry, store, name, ctx=None):
    params = {"name": name, "store": store.root, "insecure_registries": [registry.address]}
    ctx = ctx or FakeCtx()
    try:
        return serve.call_module("image", params, ctx), ctx
    except serve.Cancelled:  # cancelled between layers rather than inside a download
        return {"failed": True, "msg": "cancelled"}, ctx


def _app(registry, tag="latest"):
    """An image of two layers, the top one big enough to be cut off half-way."""
    return registry.add_image("app", tag, [{"etc/base": b"base\n"},
                                           {"big.bin": noise(900_000)}])


def test_every_option_is_documented():
    for option in image_module.ARGUMENT_SPEC:
        assert option in image_module.__doc__, option


class CancelAfterFirstChunk(FakeCtx):
    """Cancels the request as soon as a chunk of ``layer`` has arrived (the controller
    going away mid-pull)."""

    def __init__(self, layer):
        super().__init__()
        self.layer = layer

    def progress(self, **fields):
        super().progress(**fields)
        if fields.get("layer") == self.layer and fields.get("done"):
            self.cancel_event.set()


@pytest.mark.parametrize("how", ["connection dropped", "cancelled"])
def test_an_interrupted_pull_resumes_the_blob_with_a_range_request(registry, store, how):
    app = _app(registry)
    big = app["layers"][1]
    ctx = None
    if how == "connection dropped":
        registry.cut[big] = 400_000
    else:
        ctx = CancelAfterFirstChunk(big)
    first, _ = _pull(registry, store, app["name"], ctx)
    assert first["failed"] and "\n" not in first["msg"], first
    assert store.find_image(app["name"]) is None and not store.has_blob(big)
    kept = os.path.getsize(store.partial_path(big))
    assert 0 < kept < len(app["blobs"][1])
    # Downloads only (the small layer's too when the cancel caught it mid-way).
    left = os.listdir(store.tmp_dir)
    assert os.path.basename(store.partial_path(big)) in left
    assert all(n.startswith("blob-") and n.endswith(".partial") for n in left), left

    second, ctx = _pull(registry, store, app["name"])
    assert second["changed"] and not second["failed"], second
    assert second["image"]["Id"] == app["id"]
    assert registry.blob_requests(big) == [None, f"bytes={kept}-"]
    dones = [e["done"] for e in ctx.events if e.get("layer") == big and "done" in e]
    assert dones[0] > kept and dones[-1] == len(app["blobs"][1])
    with open(os.path.join(store.layer_path(store.find_image(app["name"])["layers"][1]),
                           "big.bin"), "rb") as fh:
        assert fh.read() == noise(900_000)
    assert os.listdir(store.tmp_dir) == []


def test_a_corrupt_partial_download_is_fetched_again_from_0_in_the_same_pull(registry, store):
    app = _app(registry)
    big = app["layers"][1]
    with open(store.partial_path(big), "wb") as fh:
        fh.write(b"\0" * 4096)  # a crash left zeros where data should be
    result, _ = _pull(registry, store, app["name"])
    assert result["changed"] and not result["failed"], result
    assert registry.blob_requests(big) == ["bytes=4096-", None]
    assert store.has_blob(big) and os.listdir(store.tmp_dir) == []


def test_a_registry_serving_bad_content_fails_once_restarted(registry, store):
    app = _app(registry)
    big = app["layers"][1]
    registry.blobs[big] = registry.blobs[big][:-4] + b"XXXX"
    with open(store.partial_path(big), "wb") as fh:
        fh.write(registry.blobs[big][:4096])
    result, _ = _pull(registry, store, app["name"])
    assert result["failed"] and f"blob {big}: digest mismatch" in result["msg"], result
    assert registry.blob_requests(big) == ["bytes=4096-", None]  # one restart, no more
    assert os.listdir(store.tmp_dir) == [] and not store.has_blob(big)


# -- removal while a container uses the image --------------------------------------------


def _container(store, directory, image_id, name=None):
    path = os.path.join(store.containers_dir, directory)
    os.makedirs(path)
    record = {"Image": image_id}
    if name:
        record["Name"] = name
    with open(os.path.join(path, "config.json"), "w") as fh:
        json.dump(record, fh)


def _remove(store, name, check_mode=False, **params):
    result, _ = call("image", dict(params, name=name, state="absent", store=store.root),
                     check_mode=check_mode)
    return result


@pytest.fixture
def pulled(registry, store):
    app = registry.add_image("app", "latest", [{"etc/base": b"base\n"}, {"app": b"app\n"}])
    result, _ = _pull(registry, store, app["name"])
    assert result["changed"], result
    return dict(app, record=store.find_image(app["name"]))


def _content_kept(store, record):
    return (all(store.has_layer(c) for c in record["layers"]) and
            all(store.has_blob(b) for b in record["blobs"]))


@pytest.mark.parametrize("check_mode", [False, True])
def test_removing_an_image_a_container_uses_is_refused(store, pulled, check_mode):
    _container(store, "f00d", pulled["id"], name="/fleet-abc")
    result = _remove(store, pulled["name"], check_mode=check_mode)
    assert result == {"failed": True, "changed": False,
                      "msg": f"unable to remove image {pulled['name']}: in use by "
                             "container fleet-abc (force removes its names only)"}
    assert store.find_image(pulled["name"])["id"] == pulled["id"]
    assert _content_kept(store, pulled["record"])
    _container(store, "beef", pulled["id"])
    result = _remove(store, pulled["id"][7:19])  # by id prefix: same answer
    assert result["msg"].endswith("in use by containers beef, fleet-abc "
                                  "(force removes its names only)")


def test_forced_removal_untags_and_keeps_what_the_container_needs(store, pulled):
    _container(store, "f00d", pulled["id"], name="fleet-abc")
    result = _remove(store, pulled["name"], force=True)
    assert result["changed"] and not result["failed"], result
    assert result["msg"] == (f"untagged {pulled['name']}; image {pulled['id']} kept for "
                             "container fleet-abc")
    assert store.find_image(pulled["name"]) is None  # gone by name...
    kept = store.load_image(pulled["id"])  # ...kept, nameless, for the container
    assert kept["repo_tags"] == [] and kept["repo_digests"] == []
    with store.lock():
        store.gc()
    assert _content_kept(store, pulled["record"])
    # Again by name: nothing is there; by id: nothing more to do.
    assert _remove(store, pulled["name"], force=True)["changed"] is False
    again = _remove(store, pulled["id"], force=True)
    assert again["changed"] is False and not again["failed"] and "kept for" in again["msg"]
    # Once the container is gone the image can go, with its content.
    os.unlink(os.path.join(store.containers_dir, "f00d", "config.json"))
    gone = _remove(store, pulled["id"])
    assert gone["changed"] and not gone["failed"], gone
    assert store.list_images() == []
    assert not any(store.has_layer(c) for c in pulled["record"]["layers"])


def test_one_of_several_names_goes_even_while_a_container_uses_the_image(registry, store,
                                                                         pulled):
    other = f"{registry.address}/app:v1"
    registry.manifests[("app", "v1")] = registry.manifests[("app", "latest")]
    assert _pull(registry, store, other)[0]["changed"]
    _container(store, "f00d", pulled["id"])
    result = _remove(store, other)
    assert result["changed"] and not result["failed"], result
    assert store.load_image(pulled["id"])["repo_tags"] == [pulled["name"]]


def test_removal_without_containers_frees_the_content(store, pulled):
    result = _remove(store, pulled["name"])
    assert result["changed"] and not result["failed"], result
    assert store.list_images() == [] and os.listdir(store.layers_dir) == []
    assert os.listdir(store.blobs_dir) == []

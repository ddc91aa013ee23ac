"""Tests of agent_payload.oci.store: blobs, layers, image records, gc, lock."""

import hashlib
import json
import multiprocessing
import os
import stat
import threading
import time

import pytest

from agent_payload.oci.registry import Cancelled, RegistryClient, RegistryError
from agent_payload.oci.store import Store, StoreError
from agent_payload.oci.unpack import chain_id
from tests.unit.oci.fake_registry import FakeRegistry, noise


def sha(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture
def store(tmp_path):
    return Store(str(tmp_path / "fleet"))


def test_layout_and_permissions(store):
    assert stat.S_IMODE(os.stat(store.root).st_mode) == 0o700
    for sub in ("blobs/sha256", "layers/sha256", "images", "tmp"):
        assert os.path.isdir(os.path.join(store.root, sub))


def test_blob_writer_verifies_and_renames(store):
    data = b"blob content"
    digest = sha(data)
    assert not store.has_blob(digest)
    with store.blob_writer(digest, size=len(data)) as f:
        f.write(data[:4])
        f.write(data[4:])
    assert store.has_blob(digest)
    with open(store.blob_path(digest), "rb") as fh:
        assert fh.read() == data
    assert os.listdir(store.tmp_dir) == []


def test_blob_writer_mismatch_removes_temp(store):
    digest = sha(b"expected")
    with pytest.raises(StoreError, match=f"blob {digest}: content has digest"):
        with store.blob_writer(digest) as f:
            f.write(b"something else")
    assert not store.has_blob(digest)
    assert os.listdir(store.tmp_dir) == []


def test_blob_writer_size_mismatch(store):
    data = b"abc"
    with pytest.raises(StoreError, match="3 bytes, expected 4"):
        with store.blob_writer(sha(data), size=4) as f:
            f.write(data)
    assert not store.has_blob(sha(data))


def test_blob_writer_exception_keeps_the_partial_download_for_the_next_writer(store):
    data = b"0123456789" * 1000
    digest = sha(data)
    with pytest.raises(RuntimeError):
        with store.blob_writer(digest, size=len(data)) as f:
            f.write(data[:3000])
            raise RuntimeError("download cut off")
    assert not store.has_blob(digest)
    assert os.listdir(store.tmp_dir) == ["blob-" + digest[7:] + ".partial"]
    assert os.path.getsize(store.partial_path(digest)) == 3000
    with store.blob_writer(digest, size=len(data)) as f:
        assert f.size == 3000  # what the first writer left
        assert f.seek(0, os.SEEK_END) == 3000
        f.seek(0)
        assert f.read() == data[:3000]
        f.write(data[3000:])
    with open(store.blob_path(digest), "rb") as fh:
        assert fh.read() == data
    assert stat.S_IMODE(os.stat(store.blob_path(digest)).st_mode) == 0o644
    assert os.listdir(store.tmp_dir) == []


def test_blob_writer_exception_with_nothing_written_leaves_nothing(store):
    digest = sha(b"x")
    with pytest.raises(RuntimeError):
        with store.blob_writer(digest):
            raise RuntimeError("registry unreachable")
    assert os.listdir(store.tmp_dir) == []


def test_blob_writer_truncated_to_zero_means_bad_and_is_removed(store):
    digest = sha(b"good")
    with pytest.raises(RuntimeError):
        with store.blob_writer(digest) as f:
            f.write(b"bad!")
            f.truncate(0)  # what fetch_blob does when the digest does not match
            raise RuntimeError("digest mismatch")
    assert os.listdir(store.tmp_dir) == []


def test_blob_writer_wrong_partial_content_is_removed_on_verification(store):
    data = b"the real blob"
    digest = sha(data)
    with open(store.partial_path(digest), "wb") as fh:
        fh.write(b"THE")  # not what the blob starts with
    with pytest.raises(StoreError, match="content has digest"):
        with store.blob_writer(digest) as f:
            f.write(data[3:])
    assert not store.has_blob(digest)
    assert os.listdir(store.tmp_dir) == []
    with store.blob_writer(digest) as f:
        assert f.size == 0
        f.write(data)
    assert store.has_blob(digest)


def test_blob_file_truncate_keeps_the_hash_in_step(store):
    data = b"abcdefghij"
    with store.blob_writer(sha(data)) as f:
        f.write(b"abcdeXXXX")
        assert f.truncate(5) == 5 and f.size == 5
        f.seek(2)  # writes append whatever the position
        f.write(b"fghij")
        assert f.hash.hexdigest() == hashlib.sha256(data).hexdigest()
    with open(store.blob_path(sha(data)), "rb") as fh:
        assert fh.read() == data


def test_gc_removes_partial_downloads(store):
    digest = sha(b"abc")
    with pytest.raises(RuntimeError):
        with store.blob_writer(digest) as f:
            f.write(b"a")
            raise RuntimeError("cut")
    with store.lock():
        removed = store.gc()
    assert removed["tmp"] == ["blob-" + digest[7:] + ".partial"]
    assert os.listdir(store.tmp_dir) == []


@pytest.mark.parametrize("bad", ["sha256:abc", "md5:" + "a" * 32, "sha256:../../etc/passwd",
                                 "sha256:" + "A" * 64, ""])
def test_invalid_digests_refused(store, bad):
    with pytest.raises(StoreError, match="invalid"):
        store.blob_path(bad)
    with pytest.raises(StoreError, match="invalid"):
        store.layer_path(bad)


CHAIN = "sha256:" + "1" * 64


def test_add_layer_success(store):
    def fill(tmp):
        assert os.path.dirname(tmp) == store.tmp_dir
        assert stat.S_IMODE(os.stat(tmp).st_mode) == 0o755
        with open(os.path.join(tmp, "file"), "w") as f:
            f.write("content")

    assert not store.has_layer(CHAIN)
    path = store.add_layer(CHAIN, fill)
    assert path == store.layer_path(CHAIN) and store.has_layer(CHAIN)
    with open(os.path.join(path, "file")) as f:
        assert f.read() == "content"
    assert os.listdir(store.tmp_dir) == []
    # present: unpack_fn is not called again
    assert store.add_layer(CHAIN, lambda tmp: pytest.fail("called")) == path


def test_add_layer_failure_cleans_up(store):
    def fail(tmp):
        os.makedirs(os.path.join(tmp, "a/b"))
        os.chmod(os.path.join(tmp, "a"), 0o000)
        raise RuntimeError("bad layer")

    with pytest.raises(RuntimeError, match="bad layer"):
        store.add_layer(CHAIN, fail)
    assert not store.has_layer(CHAIN)
    assert os.listdir(store.tmp_dir) == []


def test_add_layer_created_meanwhile(store):
    def racing(tmp):
        # another process finishes the same layer while we unpack
        os.makedirs(os.path.join(store.layer_path(CHAIN), "theirs"))
        with open(os.path.join(tmp, "ours"), "w") as f:
            f.write("ours")

    path = store.add_layer(CHAIN, racing)
    assert os.listdir(path) == ["theirs"]
    assert os.listdir(store.tmp_dir) == []


def test_add_layer_concurrent_threads(store):
    results, errors = [], []

    def fill(tmp):
        time.sleep(0.05)
        with open(os.path.join(tmp, "f"), "w") as f:
            f.write("x")

    def worker():
        try:
            results.append(store.add_layer(CHAIN, fill))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert set(results) == {store.layer_path(CHAIN)}
    assert os.listdir(store.layer_path(CHAIN)) == ["f"]
    assert os.listdir(store.tmp_dir) == []


def _hold_lock(root, ready, release):
    with Store(root).lock():
        ready.set()
        release.wait(10)


def test_lock_is_exclusive_across_processes(store):
    ctx = multiprocessing.get_context("fork")
    ready, release = ctx.Event(), ctx.Event()
    proc = ctx.Process(target=_hold_lock, args=(store.root, ready, release))
    proc.start()
    try:
        assert ready.wait(10)
        got = []

        def take():
            with store.lock():
                got.append(time.monotonic())

        t = threading.Thread(target=take)
        t.start()
        time.sleep(0.2)
        assert got == []  # still blocked by the other process
        release.set()
        t.join(10)
        assert len(got) == 1
    finally:
        release.set()
        proc.join(10)


def _record(n, tags=(), digests=(), layers=(), blobs=()):
    image_id = "sha256:" + hashlib.sha256(f"config{n}".encode()).hexdigest()
    return {
        "id": image_id,
        "manifest_digest": "sha256:" + hashlib.sha256(f"manifest{n}".encode()).hexdigest(),
        "repo_tags": list(tags),
        "repo_digests": list(digests),
        "layers": list(layers),
        "blobs": list(blobs),
        "config": {"config": {"Cmd": ["sh"]}},
        "size": 10,
        "created": "2024-01-01T00:00:00Z",
    }


def test_image_records_find(store):
    busy = _record(1, tags=["10.231.7.1:5000/busybox:latest"],
                   digests=["10.231.7.1:5000/busybox@sha256:" + "d" * 64])
    other = _record(2, tags=["10.231.7.1:5000/layers:latest", "10.231.7.1:5000/layers:v1"])
    store.save_image(busy)
    store.save_image(other)
    assert store.load_image(busy["id"]) == busy
    assert [r["id"] for r in store.list_images()] == sorted([busy["id"], other["id"]])
    assert store.find_image("10.231.7.1:5000/busybox:latest")["id"] == busy["id"]
    assert store.find_image("10.231.7.1:5000/busybox")["id"] == busy["id"]
    assert store.find_image("10.231.7.1:5000/layers:v1")["id"] == other["id"]
    assert store.find_image("10.231.7.1:5000/busybox@sha256:" + "d" * 64)["id"] == busy["id"]
    assert store.find_image("10.231.7.1:5000/busybox@sha256:" + "e" * 64) is None
    assert store.find_image(busy["id"])["id"] == busy["id"]
    assert store.find_image(busy["manifest_digest"])["id"] == busy["id"]
    assert store.find_image(busy["id"][7:19])["id"] == busy["id"]
    assert store.find_image("sha256:" + other["id"][7:15])["id"] == other["id"]
    assert store.find_image("nosuch:latest") is None
    assert store.find_image("0123456789abcdef0123") is None
    with pytest.raises(StoreError, match="no image"):
        store.load_image("sha256:" + "0" * 64)


def test_ambiguous_prefix(store):
    a, b = _record(1), _record(2)
    a["id"] = "sha256:ab" + "0" * 62
    b["id"] = "sha256:ab" + "1" * 62
    store.save_image(a)
    store.save_image(b)
    with pytest.raises(StoreError, match="ambiguous"):
        store.find_image("ab")
    assert store.find_image("ab0")["id"] == a["id"]


def test_tag_moves_to_new_image(store):
    old = _record(1, tags=["reg/app:latest", "reg/app:1"])
    new = _record(2, tags=["reg/app:latest"])
    store.save_image(old)
    store.save_image(new)
    assert store.find_image("reg/app:latest")["id"] == new["id"]
    assert store.load_image(old["id"])["repo_tags"] == ["reg/app:1"]


def test_records_written_atomically(store):
    store.save_image(_record(1))
    assert os.listdir(store.tmp_dir) == []
    assert all(n.endswith(".json") for n in os.listdir(store.images_dir))


def test_remove_image_and_gc(store):
    shared_blob, only_a, only_b = b"shared layer", b"layer a", b"layer b"
    for data in (shared_blob, only_a, only_b):
        with store.blob_writer(sha(data)) as f:
            f.write(data)
    base = chain_id([sha(b"diff0")])
    a_top = chain_id([sha(b"diff0"), sha(b"diffA")])
    b_top = chain_id([sha(b"diff0"), sha(b"diffB")])
    orphan = "sha256:" + "9" * 64
    for c in (base, a_top, b_top, orphan):
        store.add_layer(c, lambda tmp: None)
    a = _record(1, tags=["a:latest"], layers=[base, a_top], blobs=[sha(shared_blob), sha(only_a)])
    b = _record(2, tags=["b:latest"], layers=[base, b_top], blobs=[sha(shared_blob), sha(only_b)])
    store.save_image(a)
    store.save_image(b)
    os.mkdir(os.path.join(store.tmp_dir, "layer-stale"))

    with store.lock():
        removed = store.gc()
    assert removed["layers"] == [orphan]
    assert removed["blobs"] == []
    assert removed["tmp"] == ["layer-stale"]

    assert store.remove_image(a["id"]) is True
    assert store.remove_image(a["id"]) is False
    with store.lock():
        removed = store.gc()
    assert removed["blobs"] == [sha(only_a)]
    assert removed["layers"] == [a_top]
    assert store.has_layer(base) and store.has_layer(b_top)
    assert store.has_blob(sha(shared_blob)) and store.has_blob(sha(only_b))
    assert os.listdir(store.tmp_dir) == []


def test_gc_respects_in_use(store, monkeypatch):
    layer = "sha256:" + "7" * 64
    store.add_layer(layer, lambda tmp: None)
    monkeypatch.setattr(store, "in_use", lambda c: c == layer)
    assert store.gc()["layers"] == []
    assert store.has_layer(layer)


def test_chain_id_values():
    # the bottom layer's chain id is its diff id; above, sha256 of "<parent chain> <diff>"
    d0 = "sha256:" + "a" * 64
    d1 = "sha256:" + "b" * 64
    assert chain_id([d0]) == d0
    expected = "sha256:" + hashlib.sha256(f"{d0} {d1}".encode()).hexdigest()
    assert chain_id([d0, d1]) == expected


# -- resuming a blob download with RegistryClient.fetch_blob ------------------------------


@pytest.fixture
def registry():
    with FakeRegistry() as reg:
        yield reg


def _published(registry, size=700_000):
    """A blob of ``size`` bytes in ``registry``: (client, descriptor, data)."""
    data = noise(size)
    registry.blobs[sha(data)] = data
    client = RegistryClient(registry.address, insecure_registries=[registry.address])
    return client, {"digest": sha(data), "size": len(data)}, data


def _download(store, client, descriptor):
    with store.blob_writer(descriptor["digest"], descriptor["size"]) as blob:
        client.fetch_blob("repo", descriptor, blob)


def test_a_download_cut_off_resumes_with_a_range_request(store, registry):
    client, descriptor, data = _published(registry)
    digest = descriptor["digest"]
    registry.cut[digest] = 300_000  # the connection drops after that much
    with pytest.raises(RegistryError, match=f"blob {digest}: got 300000 of {len(data)} bytes"):
        _download(store, client, descriptor)
    assert not store.has_blob(digest)
    assert os.path.getsize(store.partial_path(digest)) == 300_000
    _download(store, client, descriptor)
    assert registry.blob_requests(digest) == [None, "bytes=300000-"]
    with open(store.blob_path(digest), "rb") as fh:
        assert fh.read() == data
    assert os.listdir(store.tmp_dir) == []


def test_a_cancelled_download_is_kept_and_resumed(store, registry):
    client, descriptor, data = _published(registry)
    digest = descriptor["digest"]
    seen = []
    with pytest.raises(Cancelled):
        with store.blob_writer(digest, descriptor["size"]) as blob:
            client.fetch_blob("repo", descriptor, blob, progress=lambda d, t: seen.append(d),
                              cancelled=lambda: bool(seen))
    kept = os.path.getsize(store.partial_path(digest))
    assert 0 < kept == seen[-1] < len(data)
    _download(store, client, descriptor)
    assert registry.blob_requests(digest) == [None, f"bytes={kept}-"]
    assert store.has_blob(digest) and os.listdir(store.tmp_dir) == []


def test_a_corrupt_partial_download_is_removed_and_the_retry_starts_from_0(store, registry):
    client, descriptor, data = _published(registry)
    digest = descriptor["digest"]
    with open(store.partial_path(digest), "wb") as fh:
        fh.write(bytes(b ^ 0xFF for b in data[:1000]))  # same length, wrong bytes
    with pytest.raises(RegistryError, match=f"blob {digest}: digest mismatch"):
        _download(store, client, descriptor)
    assert not store.has_blob(digest)
    assert os.listdir(store.tmp_dir) == []  # verified bad: dropped
    _download(store, client, descriptor)
    assert registry.blob_requests(digest) == ["bytes=1000-", None]
    with open(store.blob_path(digest), "rb") as fh:
        assert fh.read() == data


def test_a_registry_ignoring_range_restarts_the_download(store, registry):
    client, descriptor, data = _published(registry)
    digest = descriptor["digest"]
    with open(store.partial_path(digest), "wb") as fh:
        fh.write(data[:5000])
    registry.ignore_range = True
    _download(store, client, descriptor)
    with open(store.blob_path(digest), "rb") as fh:
        assert fh.read() == data
    assert os.listdir(store.tmp_dir) == []


def test_a_partial_download_longer_than_the_blob_starts_over(store, registry):
    client, descriptor, data = _published(registry, size=10_000)
    digest = descriptor["digest"]
    with open(store.partial_path(digest), "wb") as fh:
        fh.write(data + b"trailing junk")
    _download(store, client, descriptor)
    assert registry.blob_requests(digest) == [None]
    assert store.has_blob(digest) and os.listdir(store.tmp_dir) == []


# -- containers: the records the store reads, in_use, gc -------------------------------


def _container(store, directory, record):
    path = os.path.join(store.containers_dir, directory)
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "config.json"), "w") as fh:
        fh.write(record if isinstance(record, str) else json.dumps(record))


def test_containers_using_an_image(store):
    a, b = _record(1), _record(2)
    assert store.list_containers() == [] and store.containers_using(a["id"]) == []
    _container(store, "c1", {"Image": a["id"], "Name": "/web-1"})
    _container(store, "c2", {"Image": a["id"]})
    _container(store, "c3", {"Image": b["id"], "Name": "db"})
    _container(store, "c4", {"Image": "busybox:latest"})  # not an image id: uses none
    os.makedirs(os.path.join(store.containers_dir, "c5"))  # being created: no record yet
    _container(store, ".c6-tmp", {"Image": a["id"]})  # hidden: not a container
    assert store.list_containers() == [
        {"id": "c1", "name": "web-1", "image": a["id"]},
        {"id": "c2", "name": "c2", "image": a["id"]},
        {"id": "c3", "name": "db", "image": b["id"]},
        {"id": "c4", "name": "c4", "image": None},
    ]
    assert store.containers_using(a["id"]) == ["c2", "web-1"]
    assert store.containers_using(b["id"]) == ["db"]
    assert store.containers_using(_record(3)["id"]) == []


@pytest.mark.parametrize("content, message", [
    ("{not json", "is not valid JSON"), ("[1, 2]", "is not a JSON object")])
def test_an_unreadable_container_record_is_an_error(store, content, message):
    _container(store, "broken", content)
    path = os.path.join(store.containers_dir, "broken", "config.json")
    with pytest.raises(StoreError, match=f"^container record {path} {message}"):
        store.containers_using(_record(1)["id"])


def test_in_use_follows_container_to_image_to_layers(store):
    base, top, other = ("sha256:" + c * 64 for c in "abc")
    image = _record(1, layers=[base, top])
    store.save_image(image)
    assert not store.in_use(base)
    _container(store, "c1", {"Image": image["id"]})
    assert store.in_use(base) and store.in_use(top) and not store.in_use(other)
    store.remove_image(image["id"])
    assert not store.in_use(base)  # its record gone: nothing tells which layers


def test_gc_keeps_the_layers_of_a_container_whose_image_record_is_unreadable(store):
    base = "sha256:" + "a" * 64
    store.add_layer(base, lambda tmp: None)
    image = _record(1, layers=[base])
    store.save_image(image)
    _container(store, "c1", {"Image": image["id"]})
    with open(store._image_file(image["id"]), "w") as fh:
        fh.write("{torn")  # list_images skips it, in_use must not
    with store.lock():
        assert store.gc()["layers"] == []
    assert store.has_layer(base)
    os.unlink(store._image_file(image["id"]))
    with store.lock():
        assert store.gc()["layers"] == [base]

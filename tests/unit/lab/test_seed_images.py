"""Unit tests for fleet.lab.seed_images: deterministic, valid layouts (no root, no registry)."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import stat
import tarfile

import pytest

from fleet.lab import seed_images as si

pytestmark = pytest.mark.skipif(
    not os.access(si.BUSYBOX, os.X_OK), reason=f"{si.BUSYBOX} missing (busybox-static)"
)


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    work = str(tmp_path_factory.mktemp("seed"))
    return work, si.build_seed_layouts(work)


class Layout:
    """Reads blobs and manifests of a built seed image."""

    def __init__(self, work: str, image: si.SeedImage):
        self.work, self.image = work, image
        ref = si.source_ref(work, image)
        if ref.startswith("dir:"):
            self.dir = ref[4:]
            self.manifest_bytes = self.read_file("manifest.json")
        else:
            self.dir = None
            self.manifest_bytes = self.blob(image.digest)

    def read_file(self, name: str) -> bytes:
        with open(os.path.join(self.dir, name), "rb") as f:
            return f.read()

    def blob(self, digest: str) -> bytes:
        hexd = digest.split(":", 1)[1]
        if self.dir is not None:
            return self.read_file(hexd)
        with open(os.path.join(self.work, "oci", "blobs", "sha256", hexd), "rb") as f:
            return f.read()

    def manifests(self):
        """Yield (manifest dict, raw) for the image, or for each child of an index."""
        top = json.loads(self.manifest_bytes)
        if top.get("mediaType") == si.MT_OCI_INDEX:
            for desc in top["manifests"]:
                raw = self.blob(desc["digest"])
                assert sha(raw) == desc["digest"] and len(raw) == desc["size"]
                yield json.loads(raw), raw
        else:
            yield top, self.manifest_bytes


def by_ref(images):
    return {image.ref: image for image in images}


def test_expected_images(built):
    _, images = built
    assert [i.ref for i in images] == [
        "busybox:latest", "busybox:oci", "layers:latest", "multiarch:latest"]
    types = {i.ref: i.media_type for i in images}
    assert types["busybox:latest"] == si.MT_DOCKER_MANIFEST
    assert types["busybox:oci"] == si.MT_OCI_MANIFEST
    assert types["layers:latest"] == si.MT_DOCKER_MANIFEST
    assert types["multiarch:latest"] == si.MT_OCI_INDEX


def test_deterministic(built, tmp_path):
    work, images = built
    again = si.build_seed_layouts(str(tmp_path))
    assert again == images
    for image in images:
        a, b = Layout(work, image), Layout(str(tmp_path), image)
        assert a.manifest_bytes == b.manifest_bytes
        for (manifest, _), _ in zip(a.manifests(), b.manifests()):
            for desc in [manifest["config"]] + manifest["layers"]:
                assert a.blob(desc["digest"]) == b.blob(desc["digest"])


def test_manifests_configs_and_layers_are_consistent(built):
    work, images = built
    arch, _ = si.host_platform()
    for image in images:
        layout = Layout(work, image)
        assert sha(layout.manifest_bytes) == image.digest
        for manifest, _ in layout.manifests():
            assert manifest["schemaVersion"] == 2
            oci = manifest["mediaType"] == si.MT_OCI_MANIFEST
            assert manifest["mediaType"] in (si.MT_OCI_MANIFEST, si.MT_DOCKER_MANIFEST)
            assert manifest["config"]["mediaType"] == (
                si.MT_OCI_CONFIG if oci else si.MT_DOCKER_CONFIG)
            raw_config = layout.blob(manifest["config"]["digest"])
            assert sha(raw_config) == manifest["config"]["digest"]
            assert len(raw_config) == manifest["config"]["size"]
            config = json.loads(raw_config)
            assert config["os"] == "linux"
            assert config["config"]["Cmd"] == ["sh"]
            assert config["config"]["Env"][0].startswith("PATH=")
            assert config["rootfs"]["type"] == "layers"
            assert len(config["history"]) == len(manifest["layers"])
            diff_ids = []
            for desc in manifest["layers"]:
                assert desc["mediaType"] == (si.MT_OCI_LAYER if oci else si.MT_DOCKER_LAYER)
                blob = layout.blob(desc["digest"])
                assert sha(blob) == desc["digest"] and len(blob) == desc["size"]
                assert blob[:2] == b"\x1f\x8b" and blob[4:8] == b"\0\0\0\0"  # gzip, mtime 0
                diff_ids.append(sha(gzip.decompress(blob)))
            assert config["rootfs"]["diff_ids"] == diff_ids
    busybox = Layout(work, by_ref(images)["busybox:latest"])
    manifest, _ = next(busybox.manifests())
    assert json.loads(busybox.blob(manifest["config"]["digest"]))["architecture"] == arch


def test_busybox_and_oci_share_layer_and_config(built):
    work, images = built
    refs = by_ref(images)
    docker, _ = next(Layout(work, refs["busybox:latest"]).manifests())
    oci, _ = next(Layout(work, refs["busybox:oci"]).manifests())
    assert docker["config"]["digest"] == oci["config"]["digest"]
    assert [d["digest"] for d in docker["layers"]] == [d["digest"] for d in oci["layers"]]


def test_multiarch_index(built):
    work, images = built
    layout = Layout(work, by_ref(images)["multiarch:latest"])
    index = json.loads(layout.manifest_bytes)
    platforms = {(d["platform"]["architecture"], d["platform"].get("variant"))
                 for d in index["manifests"]}
    assert {("amd64", None), ("arm64", "v8")} <= platforms
    for desc, (manifest, _) in zip(index["manifests"], layout.manifests()):
        config = json.loads(layout.blob(manifest["config"]["digest"]))
        assert config["architecture"] == desc["platform"]["architecture"]
        assert config.get("variant") == desc["platform"].get("variant")
    # the OCI layout names both OCI images
    with open(os.path.join(work, "oci", "index.json"), "rb") as f:
        names = {m["annotations"]["org.opencontainers.image.ref.name"]
                 for m in json.load(f)["manifests"]}
    assert names == {"busybox-oci", "multiarch-latest"}


def layer_tars(work, image):
    layout = Layout(work, image)
    manifest, _ = next(layout.manifests())
    return [gzip.decompress(layout.blob(d["digest"])) for d in manifest["layers"]]


def members(raw: bytes):
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        return tar.getmembers()


def test_busybox_layer(built):
    work, images = built
    (raw,) = layer_tars(work, by_ref(images)["busybox:latest"])
    entries = {m.name: m for m in members(raw)}
    assert entries["bin/busybox"].isfile() and entries["bin/busybox"].mode == 0o755
    assert entries["bin/sh"].issym() and entries["bin/sh"].linkname == "/bin/busybox"
    assert entries["tmp"].isdir() and entries["tmp"].mode == 0o1777
    assert entries["home/user"].uid == 1000
    assert "etc/passwd" in entries and "etc/group" in entries
    assert len([m for m in entries.values() if m.issym()]) > 100
    assert all(m.mtime == si.EPOCH for m in entries.values())
    names = [m.name for m in members(raw)]
    for name in names:  # parents come first
        parent = os.path.dirname(name)
        assert not parent or names.index(parent) < names.index(name)


def test_layers_tar_entries(built):
    work, images = built
    tars = layer_tars(work, by_ref(images)["layers:latest"])
    assert len(tars) == 4
    content, deletes, readd = (members(raw) for raw in tars[1:])
    c = {m.name: m for m in content}
    assert c["data/hardlink.txt"].islnk() and c["data/hardlink.txt"].linkname == "data/file.txt"
    assert c["data/symlink.txt"].issym() and c["data/symlink.txt"].linkname == "file.txt"
    assert (c["data/symlink.txt"].uid, c["data/symlink.txt"].gid) == (1000, 1000)
    assert c["usr/local/bin/suid-tool"].mode == 0o4755
    assert c["usr/local/bin/sgid-tool"].mode == 0o2755
    assert (c["data"].uid, c["data"].gid) == (1000, 1000)
    d = [m.name for m in deletes]
    for name in ("etc/.wh.to-delete.conf", "var/lib/.wh.gone", "opt/old/.wh..wh..opq",
                 ".wh.readd.txt"):
        assert name in d
    # the opaque marker precedes the directory's new content
    assert d.index("opt/old/.wh..wh..opq") < d.index("opt/old/new.txt")
    r = {m.name: m for m in readd}
    assert r["readd.txt"].mode == 0o600 and r["readd.txt"].uid == 1000


def union(tars):
    """Apply layers in order to an in-memory tree: path -> (TarInfo, data)."""
    tree = {}

    def drop(path):
        for key in [k for k in tree if k == path or k.startswith(path + "/")]:
            del tree[key]

    for raw in tars:
        with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
            for m in tar.getmembers():
                name = m.name.rstrip("/")
                parent, base = os.path.split(name)
                if base == ".wh..wh..opq":
                    for key in [k for k in tree if k.startswith(parent + "/")]:
                        del tree[key]
                    continue
                if base.startswith(".wh."):
                    drop(os.path.join(parent, base[4:]))
                    continue
                if not m.isdir() or name not in tree or not tree[name][0].isdir():
                    drop(name)
                data = tar.extractfile(m).read() if m.isfile() else None
                if m.islnk():
                    data = tree[m.linkname][1]
                tree[name] = (m, data)
    return tree


def test_union_matches_expected(built):
    work, images = built
    tree = union(layer_tars(work, by_ref(images)["layers:latest"]))
    for path, want in si.EXPECTED_LAYERS_UNION.items():
        key = path.lstrip("/")
        assert key in tree, path
        m, data = tree[key]
        kind = "dir" if m.isdir() else "symlink" if m.issym() else "file"
        assert kind == want["type"], path
        if "mode" in want:
            assert m.mode == want["mode"], path
        if "uid" in want:
            assert (m.uid, m.gid) == (want["uid"], want["gid"]), path
        if "target" in want:
            assert m.linkname == want["target"], path
        if "content" in want:
            assert data == want["content"], path
        if "hardlink_of" in want:
            assert m.islnk() and m.linkname == want["hardlink_of"].lstrip("/"), path
    for path in si.EXPECTED_LAYERS_ABSENT:
        assert path.lstrip("/") not in tree, path


def test_compare_rootfs_on_an_extraction(built, tmp_path):
    """Extract layers naively (no root: no chown) and check compare_rootfs agrees."""
    work, images = built
    root = str(tmp_path / "rootfs")
    os.mkdir(root)
    dir_modes = {}
    for raw in layer_tars(work, by_ref(images)["layers:latest"]):
        with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
            for m in tar.getmembers():
                name = m.name.rstrip("/")
                full = os.path.join(root, name)
                parent, base = os.path.split(full)
                if base == ".wh..wh..opq":
                    for child in os.listdir(parent):
                        path = os.path.join(parent, child)
                        if os.path.isdir(path) and not os.path.islink(path):
                            shutil.rmtree(path)
                        else:
                            os.unlink(path)
                    continue
                if base.startswith(".wh."):
                    target = os.path.join(parent, base[4:])
                    if os.path.isdir(target) and not os.path.islink(target):
                        shutil.rmtree(target)
                    elif os.path.lexists(target):
                        os.unlink(target)
                    continue
                if m.isdir():
                    os.makedirs(full, exist_ok=True)
                    os.chmod(full, 0o755)
                    dir_modes[full] = m.mode  # chmod after children exist
                    continue
                if os.path.lexists(full):
                    os.unlink(full)
                if m.issym():
                    os.symlink(m.linkname, full)
                elif m.islnk():
                    os.link(os.path.join(root, m.linkname), full)
                else:
                    with open(full, "wb") as f:
                        f.write(tar.extractfile(m).read())
                    os.chmod(full, m.mode)
    for path, mode in dir_modes.items():
        if os.path.isdir(path):
            os.chmod(path, mode)
    try:
        assert si.compare_rootfs(root, check_owner=False) == []
    finally:
        for dirpath, _, _ in os.walk(root):
            os.chmod(dirpath, stat.S_IRWXU)


def test_compare_rootfs_reports_differences(tmp_path):
    problems = si.compare_rootfs(str(tmp_path))
    assert any(p.startswith("/data/file.txt: missing") for p in problems)
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "to-delete.conf").write_text("x")
    assert "/etc/to-delete.conf: present, expected absent" in si.compare_rootfs(str(tmp_path))


def test_gzip_is_reproducible():
    data = b"fleet" * 1000
    assert si._gzip(data) == si._gzip(data)
    assert gzip.decompress(si._gzip(data)) == data

"""Unpack the lab's ``layers:latest`` seed image layer by layer and mount it with overlayfs.

Needs root (device-node whiteouts, trusted xattrs, mount) and /bin/busybox; it does not
use the lab: the seed layouts are built into a temp dir.
"""

import hashlib
import json
import os
import shutil
import subprocess

import pytest

from agent_payload.oci.store import Store
from agent_payload.oci.unpack import chain_id, unpack_layer
from fleet.lab import seed_images

pytestmark = [pytest.mark.integration]

if os.geteuid() != 0:
    pytest.skip("needs root (overlay mount, whiteout device nodes)", allow_module_level=True)
if not os.path.exists(seed_images.BUSYBOX):
    pytest.skip(f"needs {seed_images.BUSYBOX} (busybox-static)", allow_module_level=True)


def _layers_image(work_dir):
    images = seed_images.build_seed_layouts(str(work_dir))
    image = next(i for i in images if i.ref == "layers:latest")
    layout = seed_images.source_ref(str(work_dir), image).split(":", 1)[1]
    with open(os.path.join(layout, "manifest.json"), "rb") as f:
        manifest = json.loads(f.read())
    with open(os.path.join(layout, manifest["config"]["digest"].split(":", 1)[1]), "rb") as f:
        config = json.loads(f.read())
    return layout, manifest, config


def _mount_and_compare(lower_dirs, mnt):
    """Mount lower dirs (bottom first) read-only at mnt and compare with the expectation."""
    os.makedirs(mnt)
    lowerdir = ":".join(reversed(lower_dirs))  # topmost first
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", f"lowerdir={lowerdir}", mnt],
                   check=True, capture_output=True)
    try:
        problems = seed_images.compare_rootfs(mnt)
        assert problems == []
        # every whiteout and opaque marker became overlay metadata, never a file
        for root, dirs, files in os.walk(mnt):
            for name in dirs + files:
                assert not name.startswith(".wh."), os.path.join(root, name)
        st = os.lstat(os.path.join(mnt, "usr/local/bin/suid-tool"))
        assert st.st_mode & 0o4000
    finally:
        subprocess.run(["umount", mnt], check=True)


def test_layers_latest_unpacks_to_expected_union(tmp_path):
    layout, manifest, config = _layers_image(tmp_path / "seed")
    diff_ids = config["rootfs"]["diff_ids"]
    assert len(manifest["layers"]) == len(diff_ids) == 4
    lower = []
    for i, desc in enumerate(manifest["layers"]):
        dest = tmp_path / f"L{i + 1}"
        dest.mkdir()
        os.chmod(dest, 0o755)
        with open(os.path.join(layout, desc["digest"].split(":", 1)[1]), "rb") as f:
            stats = unpack_layer(f, str(dest), "gzip", desc["digest"])
        assert stats["diff_id"] == diff_ids[i]
        assert stats["warnings"] == []
        lower.append(str(dest))
    # layer 2 carries the whiteouts: a 0/0 char device and an opaque dir
    gone = os.lstat(os.path.join(lower[2], "var/lib/gone"))
    assert gone.st_rdev == os.makedev(0, 0)
    assert os.getxattr(os.path.join(lower[2], "opt/old"), "trusted.overlay.opaque") == b"y"
    _mount_and_compare(lower, str(tmp_path / "mnt"))


def test_layers_latest_through_store(tmp_path):
    layout, manifest, config = _layers_image(tmp_path / "seed")
    store = Store(str(tmp_path / "fleet"))
    diff_ids = config["rootfs"]["diff_ids"]
    chains = [chain_id(diff_ids[:i + 1]) for i in range(len(diff_ids))]
    with store.lock():
        for desc, chain, diff_id in zip(manifest["layers"], chains, diff_ids):
            with open(os.path.join(layout, desc["digest"].split(":", 1)[1]), "rb") as src:
                with store.blob_writer(desc["digest"], size=desc["size"]) as f:
                    shutil.copyfileobj(src, f)

            def fill(tmp, desc=desc, diff_id=diff_id):
                with open(store.blob_path(desc["digest"]), "rb") as blob:
                    stats = unpack_layer(blob, tmp, "gzip", desc["digest"])
                assert stats["diff_id"] == diff_id

            store.add_layer(chain, fill)
        cfg_digest = "sha256:" + hashlib.sha256(json.dumps(config).encode()).hexdigest()
        store.save_image({"id": cfg_digest, "layers": chains, "repo_tags": ["layers:latest"],
                          "blobs": [d["digest"] for d in manifest["layers"]]})
    record = store.find_image("layers")
    _mount_and_compare([store.layer_path(c) for c in record["layers"]],
                       str(tmp_path / "mnt"))

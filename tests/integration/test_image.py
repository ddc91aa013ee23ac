"""The image module on a lab host: pulls from the lab's three registries into the store."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from fleet.lab.registries import load_credentials
from fleet.transport.session import Session
from tests.integration.conftest import LAB_MARKS
from tests.integration.helpers import lab_targets, ssh_run

pytestmark = LAB_MARKS

@pytest.fixture
def store(lab):
    """A store path of this test's own on the hosts (tests may run side by side)."""
    import uuid
    path = f"/var/lib/fleet/fleet-test-{uuid.uuid4().hex[:8]}"
    yield path
    config, state = lab
    for host in state.hosts:
        ssh_run(config, host.address, f"rm -rf {path}")


@pytest.fixture
def session(lab, lab_inventory):
    target = lab_targets(lab_inventory)[0]
    session = Session.open(target)
    yield session
    session.close()


def registry(lab, name):
    return next(r for r in lab[1].registries if r["name"] == name)


def pull(session, name, store, **params):
    events = []
    result = session.call("image", dict(params, name=name, store=store),
                          on_progress=events.append, timeout=120)
    return result, events


def test_pull_twice_from_the_plain_registry(lab, session, store):
    plain = registry(lab, "plain")
    name = f"{plain['address']}/busybox:latest"
    first, events = pull(session, name, store, insecure_registries=[plain["address"]])
    assert first["changed"] and not first["failed"], first
    image = first["image"]
    assert image["Id"].startswith("sha256:") and image["RepoTags"] == [name]
    assert image["Config"]["Cmd"] == ["sh"] and len(image["RootFS"]["Layers"]) == 1
    assert any(e.get("status") == "done" for e in events)
    second, events = pull(session, name, store, insecure_registries=[plain["address"]])
    assert second["changed"] is False and second["image"]["Id"] == image["Id"]
    # The OCI-manifest variant shares the layer: nothing new is unpacked.
    oci, events = pull(session, f"{plain['address']}/busybox:oci", store,
                       insecure_registries=[plain["address"]])
    assert oci["changed"] and any(e.get("status") == "exists" for e in events)
    config, state = lab
    count = ssh_run(config, state.hosts[0].address, f"ls {store}/layers/sha256 | wc -l")
    assert count.strip() == "1"


def test_layers_multiarch_auth_and_removal(lab, session, store):
    config, state = lab
    user, password = load_credentials(config.state_dir)
    plain, basic, token = (registry(lab, n) for n in ("plain", "basic", "token"))
    result, _ = pull(session, f"{plain['address']}/layers:latest", store,
                     insecure_registries=[plain["address"]])
    assert result["changed"] and len(result["image"]["RootFS"]["Layers"]) == 4, result
    result, _ = pull(session, f"{plain['address']}/multiarch:latest", store,
                     insecure_registries=[plain["address"]])
    assert result["image"]["Architecture"] in ("amd64", "arm64"), result
    result, _ = pull(session, f"{plain['address']}/multiarch:latest", store,
                     platform="linux/s390x",
                     insecure_registries=[plain["address"]], pull="always")
    assert result["failed"] and "available" in result["msg"]
    auth = {"username": user, "password": password}
    result, _ = pull(session, f"{basic['address']}/busybox:latest", store, registry_auth=auth,
                     ca_file=basic["ca_file"])
    assert not result["failed"], result
    result, _ = pull(session, f"{token['address']}/busybox:latest", store, registry_auth=auth,
                     insecure_registries=[token["address"]])
    assert not result["failed"], result
    refused, _ = pull(session, f"{token['address']}/busybox:oci", store,
                      insecure_registries=[token["address"]],
                      registry_auth={"username": user, "password": "wrong-" + password})
    assert refused["failed"] and password not in refused["msg"]
    gone = session.call("image", {"name": f"{plain['address']}/layers:latest",
                                  "state": "absent", "store": store})
    assert gone["changed"]
    again = session.call("image", {"name": f"{plain['address']}/layers:latest",
                                   "state": "absent", "store": store})
    assert again["changed"] is False


def test_bad_reference_and_unknown_tag(lab, session, store):
    plain = registry(lab, "plain")
    result, _ = pull(session, "Not/Valid:Name", store)
    assert result["failed"] and "invalid image reference" in result["msg"]
    result, _ = pull(session, f"{plain['address']}/busybox:nope", store,
                     insecure_registries=[plain["address"]])
    assert result["failed"] and "busybox:nope" in result["msg"] and "\n" not in result["msg"]


def test_playbook_pull_uses_the_stored_login(lab, lab_inventory, tmp_path, monkeypatch, store):
    config, state = lab
    user, password = load_credentials(config.state_dir)
    basic = registry(lab, "basic")
    env_config = tmp_path / "config.json"
    env = dict(os.environ, FLEET_CONFIG=str(env_config))
    login = subprocess.run([sys.executable, "-m", "fleet", "login", basic["address"], "-u", user,
                            "--password-stdin"], input=password + "\n", text=True, env=env,
                           capture_output=True)
    assert login.returncode == 0 and password not in login.stdout + login.stderr
    book = tmp_path / "pull.yml"
    book.write_text(textwrap.dedent(f"""
        - hosts: lab01
          gather_facts: false
          tasks:
            - image:
                name: {basic['address']}/busybox:latest
                ca_file: "{{{{ fleet_registry_ca_file }}}}"
                store: {store}
        """))
    try:
        run = subprocess.run([sys.executable, "-m", "fleet", "apply", str(book), "-i",
                              lab_inventory, "-o", "json", "-v"], env=env, capture_output=True,
                             text=True, timeout=120)
        assert run.returncode == 0, run.stdout[-2000:] + run.stderr
        assert password not in run.stdout + run.stderr
        assert json.loads(run.stdout)["stats"]["lab01"]["changed"] == 1
    finally:
        ssh_run(config, state.hosts[0].address, f"rm -rf {store}")


def test_image_cli_pull_ls_rm(lab, lab_inventory):
    config, state = lab
    plain = registry(lab, "plain")
    # The default store: an image no other test puts there (tests may run side by side).
    name = f"{plain['address']}/multiarch:latest"

    def fleet(*args):
        proc = subprocess.run([sys.executable, "-m", "fleet", "image", *args, "-i",
                               lab_inventory, "-o", "json"], capture_output=True, text=True,
                              timeout=120)
        return proc.returncode, json.loads(proc.stdout)["hosts"]

    try:
        code, hosts = fleet("pull", "all", name)
        assert code == 0 and all(h["ok"] for h in hosts), hosts
        code, hosts = fleet("ls", "all")
        assert all(any(name in i["RepoTags"] for i in h["images"]) for h in hosts)
        code, hosts = fleet("rm", "all", name)
        assert code == 0 and all(h["changed"] for h in hosts)
        code, hosts = fleet("pull", "all", f"{registry(lab, 'token')['address']}/busybox:latest")
        assert code == 2 and all("authentication" in h["msg"] for h in hosts)
    finally:
        fleet("rm", "all", name)


def test_pulled_layers_stack_into_the_expected_rootfs(lab, session, tmp_path, store):
    """Pull layers:latest on a host, stack its store's layer dirs with overlayfs, and
    compare with what Docker would show (whiteouts, opaque dir, re-added path...)."""
    from fleet.lab.seed_images import compare_rootfs
    config, state = lab
    plain = registry(lab, "plain")
    result, _ = pull(session, f"{plain['address']}/layers:latest", store,
                     insecure_registries=[plain["address"]])
    assert result["changed"], result
    # The host's /var/lib/fleet is this directory of the machine (the lab binds it).
    on_disk = config.host_dir(state.hosts[0].index) / "var-lib-fleet" / store.split("/")[-1]
    record = json.loads(next((on_disk / "images").glob("*.json")).read_text())
    lowers = [str(on_disk / "layers" / "sha256" / chain[7:]) for chain in record["layers"]]
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                    "lowerdir=" + ":".join(reversed(lowers)), str(mnt)], check=True)
    try:
        assert compare_rootfs(str(mnt)) == []
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def _push_layer_image(lab, tmp_path, entries, tag):
    """Push a one-layer OCI image made of ``entries`` [(TarInfo, bytes or None)] to the
    plain registry; return its name."""
    import gzip
    import hashlib
    import io
    import tarfile
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    tar_bytes = raw.getvalue()
    layer = gzip.compress(tar_bytes, mtime=0)
    layout = tmp_path / "layout"
    blobs = layout / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def blob(data):
        digest = hashlib.sha256(data).hexdigest()
        (blobs / digest).write_bytes(data)
        return "sha256:" + digest, len(data)

    layer_digest, layer_size = blob(layer)
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                         "rootfs": {"type": "layers", "diff_ids": [
                             "sha256:" + hashlib.sha256(tar_bytes).hexdigest()]}}).encode()
    config_digest, config_size = blob(config)
    manifest = json.dumps({"schemaVersion": 2,
                           "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                      "digest": config_digest, "size": config_size},
                           "layers": [{"mediaType":
                                       "application/vnd.oci.image.layer.v1.tar+gzip",
                                       "digest": layer_digest, "size": layer_size}]}).encode()
    manifest_digest, manifest_size = blob(manifest)
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest_digest,
        "size": manifest_size, "annotations": {"org.opencontainers.image.ref.name": tag}}]}))
    address = registry(lab, "plain")["address"]
    name = f"{address}/fleet-test/evil:{tag}"
    subprocess.run(["skopeo", "--insecure-policy", "copy", "--quiet", "--dest-tls-verify=false",
                    f"oci:{layout}:{tag}", f"docker://{name}"], check=True, capture_output=True)
    return name


@pytest.mark.parametrize("entry", ["../fleet-evil", "/fleet-evil-abs", "link/fleet-evil",
                                   "hardlink:fleet-evil-shadow"])
def test_malicious_layer_is_refused_and_the_host_untouched(lab, session, tmp_path, entry,
                                                            store):
    import tarfile
    import uuid
    config, state = lab
    entries = []
    if entry.startswith("link/"):
        link = tarfile.TarInfo("link")
        link.type, link.linkname = tarfile.SYMTYPE, "/var/lib/fleet"
        entries.append((link, None))
    if entry.startswith("hardlink:"):
        evil = tarfile.TarInfo(entry.split(":", 1)[1])
        evil.type, evil.linkname = tarfile.LNKTYPE, "/etc/shadow"
        entries.append((evil, None))
    else:
        evil = tarfile.TarInfo(entry)
        evil.size = 5
        entries.append((evil, b"evil\n"))
    name = _push_layer_image(lab, tmp_path, entries, uuid.uuid4().hex[:10])
    shadow_links = ssh_run(config, state.hosts[0].address, "stat -c %h /etc/shadow")
    result, _ = pull(session, name, store,
                         insecure_registries=[registry(lab, "plain")["address"]])
    assert result["failed"], result
    assert "fleet-evil" in result["msg"] and "\n" not in result["msg"], result
    host_dir = config.host_dir(state.hosts[0].index) / "var-lib-fleet"
    assert not (host_dir / "fleet-evil").exists()
    assert not list(host_dir.glob("**/fleet-evil*"))
    on_disk = host_dir / store.split("/")[-1]
    assert list((on_disk / "tmp").iterdir()) == []
    assert list((on_disk / "layers" / "sha256").iterdir()) == []
    assert ssh_run(config, state.hosts[0].address, "stat -c %h /etc/shadow") == shadow_links


def test_a_pull_cut_off_half_way_keeps_only_downloads_and_can_be_repeated(lab, lab_inventory,
                                                                          store):
    import fcntl
    import time
    config, state = lab
    plain = registry(lab, "plain")
    name = f"{plain['address']}/layers:latest"
    target = lab_targets(lab_inventory)[1]
    first = Session.open(target)
    request = first.start("image", {"name": name, "store": store,
                                    "insecure_registries": [plain["address"]]})
    for kind, _ in request.events(timeout=60):
        if kind == "progress":
            break
    first.close()  # the controller goes away mid-pull
    on_disk = config.host_dir(state.hosts[1].index) / "var-lib-fleet" / store.split("/")[-1]
    try:
        # The cancelled pull is over when it lets go of the store's lock.
        with open(on_disk / ".lock", "a") as lock:
            deadline = time.monotonic() + 10
            while True:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    assert time.monotonic() < deadline, "the cut-off pull still holds the lock"
                    time.sleep(0.1)
            # Only blob downloads stay behind (for the next pull to resume), no layer dir.
            left = [p.name for p in (on_disk / "tmp").iterdir()]
            assert all(n.startswith("blob-") and n.endswith(".partial") for n in left), left
            assert list((on_disk / "images").iterdir()) == []
        again = Session.open(target)
        try:
            result = again.call("image", {"name": name, "store": store,
                                          "insecure_registries": [plain["address"]]},
                                timeout=120)
        finally:
            again.close()
        assert not result["failed"] and len(result["image"]["RootFS"]["Layers"]) == 4, result
        assert len(list((on_disk / "layers" / "sha256").iterdir())) == 4
        assert list((on_disk / "tmp").iterdir()) == []
    finally:
        ssh_run(config, state.hosts[1].address, f"rm -rf {store}")


def test_a_tampered_blob_is_refused_and_the_store_unchanged(lab, session, tmp_path, store):
    import tarfile
    import uuid
    config, state = lab
    good = tarfile.TarInfo("hello.txt")
    good.size = 6
    name = _push_layer_image(lab, tmp_path, [(good, b"hello\n")], uuid.uuid4().hex[:10])
    manifest = json.loads((tmp_path / "layout" / "index.json").read_text())
    manifest_hex = manifest["manifests"][0]["digest"][7:]
    layer_digest = json.loads((tmp_path / "layout" / "blobs" / "sha256" / manifest_hex)
                              .read_text())["layers"][0]["digest"][7:]
    data = (config.state_dir / "registries" / "plain" / "storage" / "docker" / "registry" /
            "v2" / "blobs" / "sha256" / layer_digest[:2] / layer_digest / "data")
    original = data.read_bytes()
    data.write_bytes(original[:-4] + b"XXXX")  # same size, other content
    try:
        result, _ = pull(session, name, store,
                         insecure_registries=[registry(lab, "plain")["address"]])
    finally:
        data.write_bytes(original)
    assert result["failed"] and layer_digest[:12] in result["msg"], result
    on_disk = config.host_dir(state.hosts[0].index) / "var-lib-fleet" / store.split("/")[-1]
    assert list((on_disk / "tmp").iterdir()) == []
    assert list((on_disk / "blobs" / "sha256").iterdir()) == []
    assert list((on_disk / "images").iterdir()) == []

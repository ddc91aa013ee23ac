"""Integration tests: the lab registries (plain, basic+TLS, token) and their seed images.

Needs root, docker-registry, skopeo and busybox-static; skipped cleanly otherwise. One
module-scoped lab runs on 127.0.0.1 with free ports in a temporary STATE.
"""

from __future__ import annotations

import base64
import dataclasses
import gzip
import hashlib
import http.client
import io
import json
import os
import random
import re
import shutil
import socket
import ssl
import subprocess
import tarfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import List
from urllib.parse import urlencode, urlsplit

import pytest

from fleet.lab import registries as reg
from fleet.lab import seed_images as si

pytestmark = [
    pytest.mark.integration,
    pytest.mark.xdist_group("lab"),  # on the lab worker, away from the unit tests
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(shutil.which("docker-registry") is None, reason="needs docker-registry"),
    pytest.mark.skipif(shutil.which("skopeo") is None, reason="needs skopeo"),
    pytest.mark.skipif(not os.access(si.BUSYBOX, os.X_OK), reason="needs busybox-static"),
]

ACCEPT = ", ".join([
    si.MT_DOCKER_MANIFEST, si.MT_OCI_MANIFEST, si.MT_OCI_INDEX,
    "application/vnd.docker.distribution.manifest.list.v2+json",
])
FIRST_RUN_BUDGET = 10.0  # seconds for start + seed on a fresh STATE (measured ~1 s)


@dataclass
class Lab:
    state: str
    registries: List[reg.RegistryInfo]
    images: List[si.SeedImage]
    first_run_seconds: float

    def get(self, name: str) -> reg.RegistryInfo:
        return next(r for r in self.registries if r.name == name)


def free_base_port(count: int = 4) -> int:
    """A base port with ``count`` consecutive free ports on 127.0.0.1."""
    for _ in range(200):
        base = random.randrange(20000, 60000 - count)
        socks = []
        try:
            for port in range(base, base + count):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free ports")


def processes_mentioning(text: str) -> List[int]:
    """PIDs of live processes whose command line contains ``text``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if text.encode() in f.read():
                    found.append(int(entry))
        except OSError:
            pass
    return found


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    state = str(tmp_path_factory.mktemp("lab-state"))
    base = free_base_port()
    t0 = time.monotonic()
    try:
        infos = reg.start_registries(state, "127.0.0.1", base)
        images = si.seed_registries(state, infos)
    except BaseException:
        reg.stop_registries(state)
        raise
    elapsed = time.monotonic() - t0
    yield Lab(state, infos, images, elapsed)
    reg.stop_registries(state)
    assert processes_mentioning(state) == []


def request(info: reg.RegistryInfo, path: str, headers=None, url=None):
    """GET on a registry (or an absolute ``url``); returns (status, headers, body)."""
    target = urlsplit(url or info.url + path)
    if target.scheme == "https":
        ctx = ssl.create_default_context(cafile=info.ca_file)
        conn = http.client.HTTPSConnection(target.hostname, target.port, timeout=10,
                                           context=ctx)
    else:
        conn = http.client.HTTPConnection(target.hostname, target.port, timeout=10)
    try:
        conn.request("GET", target.path + ("?" + target.query if target.query else ""),
                     headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.headers, resp.read()
    finally:
        conn.close()


def basic_header(user: str, password: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def challenge(header: str) -> dict:
    return dict(re.findall(r'(\w+)="([^"]*)"', header))


def test_registries_described(lab):
    assert [r.name for r in lab.registries] == ["plain", "basic", "token"]
    plain, basic, token = lab.registries
    assert plain.url == f"http://{plain.address}" and plain.auth == "none" and not plain.tls
    assert basic.url == f"https://{basic.address}" and basic.tls and basic.auth == "basic"
    assert basic.ca_file and os.path.exists(basic.ca_file)
    assert token.auth == "token" and not token.tls
    assert os.stat(basic.credentials_file).st_mode & 0o777 == 0o600
    assert all(r.pid > 0 and r.alive for r in lab.registries)


def test_first_run_is_fast(lab):
    assert lab.first_run_seconds < FIRST_RUN_BUDGET


def test_plain_is_anonymous(lab):
    status, _, _ = request(lab.get("plain"), "/v2/")
    assert status == 200


def test_basic_needs_credentials_over_verified_tls(lab):
    info = lab.get("basic")
    status, headers, _ = request(info, "/v2/")
    assert status == 401
    assert headers["WWW-Authenticate"].startswith("Basic ")
    user, password = reg.load_credentials(lab.state)
    assert user == "fleet"
    assert request(info, "/v2/", basic_header(user, password))[0] == 200
    assert request(info, "/v2/", basic_header(user, password + "x"))[0] == 401


def test_token_flow(lab):
    info = lab.get("token")
    status, headers, _ = request(info, "/v2/")
    assert status == 401
    assert headers["WWW-Authenticate"].startswith("Bearer ")
    ch = challenge(headers["WWW-Authenticate"])
    assert ch["realm"].startswith("http://") and ch["service"]

    image = next(i for i in lab.images if i.ref == "busybox:latest")
    path = f"/v2/{image.repo}/manifests/{image.tag}"
    status, headers, _ = request(info, path, {"Accept": ACCEPT})
    assert status == 401
    scope = challenge(headers["WWW-Authenticate"])["scope"]
    assert scope == "repository:busybox:pull"

    token_url = ch["realm"] + "?" + urlencode({"service": ch["service"], "scope": scope})
    user, password = reg.load_credentials(lab.state)
    status, _, body = request(info, "", basic_header(user, password), url=token_url)
    assert status == 200
    answer = json.loads(body)
    assert answer["token"] == answer["access_token"] and answer["expires_in"] == 300
    assert answer["issued_at"].endswith("Z")
    status, headers, body = request(
        info, path, {"Accept": ACCEPT, "Authorization": "Bearer " + answer["token"]})
    assert status == 200
    assert headers["Docker-Content-Digest"] == image.digest
    assert "sha256:" + hashlib.sha256(body).hexdigest() == image.digest

    # anonymous: a token granting nothing; wrong password: 401 from the token service
    status, _, body = request(info, "", url=token_url)
    assert status == 200
    anon = json.loads(body)["token"]
    status, _, _ = request(info, path, {"Accept": ACCEPT, "Authorization": "Bearer " + anon})
    assert status == 401
    assert request(info, "", basic_header(user, "wrong"), url=token_url)[0] == 401


def skopeo_raw(lab: Lab, info: reg.RegistryInfo, image: si.SeedImage, tmp: str) -> bytes:
    argv = ["skopeo", "inspect", "--raw"]
    if info.auth == "none":
        argv.append("--no-creds")
    else:
        argv += ["--authfile", os.path.join(tmp, "auth.json")]
    if info.tls:
        argv += ["--cert-dir", os.path.join(tmp, "certs"), "--tls-verify=true"]
    else:
        argv.append("--tls-verify=false")
    argv.append(f"docker://{info.address}/{image.ref}")
    proc = subprocess.run(argv, capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode()[-300:]
    return proc.stdout


def test_skopeo_sees_every_seed_image_everywhere(lab, tmp_path):
    user, password = reg.load_credentials(lab.state)
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    auths = {r.address: {"auth": token} for r in lab.registries if r.auth != "none"}
    (tmp_path / "auth.json").write_text(json.dumps({"auths": auths}))
    (tmp_path / "certs").mkdir()
    shutil.copy(lab.get("basic").ca_file, tmp_path / "certs" / "ca.crt")
    jobs = [(r, i) for r in lab.registries for i in lab.images]
    with ThreadPoolExecutor(max_workers=6) as pool:
        raws = list(pool.map(lambda job: skopeo_raw(lab, job[0], job[1], str(tmp_path)), jobs))
    for (info, image), raw in zip(jobs, raws):
        assert "sha256:" + hashlib.sha256(raw).hexdigest() == image.digest, (info.name, image.ref)
        assert json.loads(raw)["mediaType"] == image.media_type


def test_reseed_is_a_fast_noop(lab, monkeypatch):
    def no_skopeo(argv, env):
        raise AssertionError("re-seed ran skopeo: " + " ".join(argv[:3]))

    monkeypatch.setattr(si, "_run_skopeo", no_skopeo)
    t0 = time.monotonic()
    again = si.seed_registries(lab.state, lab.registries)
    assert time.monotonic() - t0 < 1.0
    assert again == lab.images


def test_restart_reuses_running_processes(lab):
    t0 = time.monotonic()
    base = int(lab.get("plain").address.rsplit(":", 1)[1])
    again = reg.start_registries(lab.state, "127.0.0.1", base)
    assert time.monotonic() - t0 < 2.0
    assert [r.pid for r in again] == [r.pid for r in lab.registries]
    status = reg.registry_status(lab.state)
    assert [(r.name, r.pid, r.alive) for r in status] == [(r.name, r.pid, True) for r in again]


def test_push_failure_names_image_and_registry(lab):
    _, password = reg.load_credentials(lab.state)
    closed = free_base_port(1)
    nowhere = dataclasses.replace(lab.get("token"), name="nowhere",
                                  address=f"127.0.0.1:{closed}", url=f"http://127.0.0.1:{closed}")
    with pytest.raises(si.SeedError) as err:
        si.seed_registries(lab.state, [nowhere])
    message = str(err.value)
    assert "\n" not in message and password not in message
    assert "to nowhere (127.0.0.1:" in message and "connection refused" in message
    assert re.search(r"pushing (busybox|layers|multiarch):\w+ ", message)


def test_layers_image_unions_as_expected_on_overlay(lab, tmp_path):
    """Extract layers:latest into overlay lower dirs, mount them, compare the union."""
    work = next(os.path.join(lab.state, "seed", d)
                for d in os.listdir(os.path.join(lab.state, "seed")) if d.startswith("layouts-"))
    image = next(i for i in lab.images if i.ref == "layers:latest")
    src = si.source_ref(work, image)[len("dir:"):]
    with open(os.path.join(src, "manifest.json"), "rb") as f:
        manifest = json.load(f)
    lowers = []
    for n, desc in enumerate(manifest["layers"]):
        layer_dir = tmp_path / f"l{n}"
        layer_dir.mkdir()
        with open(os.path.join(src, desc["digest"].split(":", 1)[1]), "rb") as f:
            raw = gzip.decompress(f.read())
        with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
            for m in tar.getmembers():
                parent, base = os.path.split(os.path.join(str(layer_dir), m.name.rstrip("/")))
                if base == ".wh..wh..opq":
                    os.setxattr(parent, "trusted.overlay.opaque", b"y")
                elif base.startswith(".wh."):
                    os.mknod(os.path.join(parent, base[4:]), 0o600 | 0o020000, os.makedev(0, 0))
                elif hasattr(tarfile, "fully_trusted_filter"):
                    tar.extract(m, str(layer_dir), numeric_owner=True, filter="fully_trusted")
                else:
                    tar.extract(m, str(layer_dir), numeric_owner=True)
        lowers.append(str(layer_dir))
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    mount = subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                            "lowerdir=" + ":".join(reversed(lowers)), str(mnt)],
                           capture_output=True)
    if mount.returncode != 0:
        pytest.skip("overlay mount not available: " + mount.stderr.decode().strip())
    try:
        assert si.compare_rootfs(str(mnt)) == []
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def test_failed_start_names_instance_and_leaves_nothing(tmp_path):
    state = str(tmp_path / "state")
    base = free_base_port()
    blocker = socket.socket()
    blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    blocker.bind(("127.0.0.1", base))
    blocker.listen(1)
    try:
        with pytest.raises(reg.RegistryError) as err:
            reg.start_registries(state, "127.0.0.1", base)
    finally:
        blocker.close()
    message = str(err.value)
    assert "\n" not in message
    assert "registry plain" in message and "address already in use" in message
    assert processes_mentioning(state) == []
    assert all(not r.alive for r in reg.registry_status(state))


def test_stop_leaves_no_process(tmp_path):
    state = str(tmp_path / "state")
    infos = reg.start_registries(state, "127.0.0.1", free_base_port())
    assert len(processes_mentioning(state)) == 4
    stopped = reg.stop_registries(state)
    assert stopped == ["plain", "basic", "token", "tokenserver"]
    assert processes_mentioning(state) == []
    assert [r.alive for r in reg.registry_status(state)] == [False] * 3
    assert reg.stop_registries(state) == []
    assert os.path.isdir(os.path.join(state, "registries", infos[0].name, "storage"))


def test_libtrust_kid_matches_the_spec_example():
    """The JWT spec's example key has kid PYYO:TEWU:…; ours must compute the same."""
    from cryptography.hazmat.primitives.asymmetric import ec

    from fleet.lab.tokenserver import libtrust_key_id

    def num(text):
        return int.from_bytes(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)), "big")

    key = ec.EllipticCurvePublicNumbers(
        num("m7zUpx3b-zmVE5cymSs64POG9QcyEpJaYCD82-549_Q"),
        num("dU3biz8sZ_8GPB-odm8Wxz3lNDr1xcAQQPQaOcr1fmc"),
        ec.SECP256R1(),
    ).public_key()
    assert libtrust_key_id(key) == "PYYO:TEWU:V7JH:26JV:AQTZ:LJC3:SXVJ:XGHA:34F2:2LAQ:ZRMK:Z7Q6"


def test_pki_reuses_and_extends_certificates(tmp_path):
    from fleet.lab import pki

    d = str(tmp_path / "pki")
    first = pki.ensure_server_cert(d, ["10.231.0.1", "localhost"])
    with open(first.cert, "rb") as f:
        pem = f.read()
    assert pki.ensure_server_cert(d, ["10.231.0.1"]) == first
    with open(first.cert, "rb") as f:
        assert f.read() == pem  # reused
    pki.ensure_server_cert(d, ["127.0.0.1"])
    assert pki.cert_names(first.cert) == ["localhost", "10.231.0.1", "127.0.0.1"]
    assert os.stat(first.key).st_mode & 0o777 == 0o600
    ctx = ssl.create_default_context(cafile=os.path.join(d, pki.CA_CERT))
    ctx.load_cert_chain(first.cert, first.key)  # key matches, CA loads

"""The payload's registry client against the real lab registries (plain, basic+TLS, token).

The first tests run a tiny local HTTP server instead (auth headers, redirects, resume,
cancel); they need no lab.
"""

import hashlib
import http.server
import io
import json
import os
import tempfile
import threading

import pytest

from agent_payload.oci.platform import host_platform
from agent_payload.oci.reference import parse_reference
from agent_payload.oci.registry import (
    AuthError,
    Cancelled,
    NoMatchingPlatform,
    RegistryClient,
    RegistryError,
    parse_challenge,
)
from fleet.lab.registries import load_credentials
from tests.integration.conftest import LAB_MARKS

pytestmark = LAB_MARKS

# -- a tiny local registry ------------------------------------------------------------

BLOB = bytes(range(256)) * 4096  # 1 MiB
BLOB_DIGEST = "sha256:" + hashlib.sha256(BLOB).hexdigest()
BASIC = "Basic dTpzZWNyZXQtcGFzcw=="  # u:secret-pass


class Handler(http.server.BaseHTTPRequestHandler):
    """Serves /v2/repo/blobs/<digest> behind Basic auth, redirected to /storage."""

    seen = []  # (path, Authorization header, Range header)
    ignore_range = False

    def log_message(self, *args):
        pass

    def do_GET(self):
        auth = self.headers.get("Authorization")
        self.seen.append((self.path, auth, self.headers.get("Range")))
        if self.path.startswith("/v2/"):
            if auth != BASIC:
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="local"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(307)
            other = self.server.other_port
            self.send_header("Location", f"http://localhost:{other}/storage/blob?sig=1")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        start = 0
        ranged = self.headers.get("Range")
        if ranged and not self.ignore_range:
            start = int(ranged.split("=")[1].rstrip("-"))
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(BLOB) - 1}/{len(BLOB)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(BLOB) - start))
        self.end_headers()
        self.wfile.write(BLOB[start:])


@pytest.fixture
def local():
    """A server on 127.0.0.1 (registry) whose redirects point at localhost (storage)."""
    Handler.seen = []
    Handler.ignore_range = False
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.other_port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    address = f"127.0.0.1:{server.server_address[1]}"
    yield address
    server.shutdown()
    server.server_close()


def test_parse_challenge():
    header = ('Bearer realm="http://10.0.0.1:5003/token",service="reg",'
              'scope="repository:busybox:pull"')
    assert parse_challenge(header) == [("bearer", {
        "realm": "http://10.0.0.1:5003/token", "service": "reg",
        "scope": "repository:busybox:pull"})]
    assert parse_challenge('Basic realm="a \\"q\\"", Bearer realm=x') == [
        ("basic", {"realm": 'a "q"'}), ("bearer", {"realm": "x"})]


def test_basic_auth_and_redirect_strips_authorization(local):
    client = RegistryClient(local, credentials={local: ("u", "secret-pass")},
                            insecure_registries=[local])
    out = io.BytesIO()
    assert client.fetch_blob("repo", {"digest": BLOB_DIGEST, "size": len(BLOB)}, out) == len(BLOB)
    assert out.getvalue() == BLOB
    registry_hits = [s for s in Handler.seen if s[0].startswith("/v2/")]
    storage_hits = [s for s in Handler.seen if s[0].startswith("/storage")]
    assert registry_hits[0][1] is None and registry_hits[-1][1] == BASIC
    assert storage_hits and all(auth is None for _, auth, _ in storage_hits)


def test_local_anonymous_refused_one_line(local):
    client = RegistryClient(local, insecure_registries=[local])
    with pytest.raises(AuthError) as info:
        client.fetch_blob("repo", BLOB_DIGEST, io.BytesIO())
    assert str(info.value) == (f"authentication to {local} failed for repo:latest: "
                               "registry requires credentials (401)")


def test_local_resume_and_range_ignored(local):
    client = RegistryClient(local, credentials=("u", "secret-pass"),
                            insecure_registries=["127.0.0.1"])
    descriptor = {"digest": BLOB_DIGEST, "size": len(BLOB)}
    calls = []
    with tempfile.TemporaryFile() as f:
        f.write(BLOB[:1000])
        client.fetch_blob("repo", descriptor, f, progress=lambda d, t: calls.append((d, t)))
        f.seek(0)
        assert f.read() == BLOB
    assert ("/storage/blob?sig=1", None, "bytes=1000-") in Handler.seen
    assert calls[-1] == (len(BLOB), len(BLOB)) and calls[0][0] > 1000
    Handler.ignore_range = True
    with tempfile.TemporaryFile() as f:
        f.write(BLOB[:5000])
        client.fetch_blob("repo", descriptor, f)
        f.seek(0)
        assert f.read() == BLOB


def test_local_cancel_and_mismatch(local):
    client = RegistryClient(local, credentials=("u", "secret-pass"),
                            insecure_registries=[local])
    with pytest.raises(Cancelled, match=r"^pull repo:latest from 127\.0\.0\.1:\d+: blob .*"
                                        r"cancelled$"):
        client.fetch_blob("repo", BLOB_DIGEST, io.BytesIO(), cancelled=lambda: True)
    wrong = "sha256:" + "0" * 64
    out = io.BytesIO()
    with pytest.raises(RegistryError, match=f"blob {wrong}: digest mismatch"):
        client.fetch_blob("repo", wrong, out)
    assert out.getvalue() == b""
    with pytest.raises(RegistryError, match="more than the expected 10 bytes"):
        client.fetch_blob("repo", {"digest": BLOB_DIGEST, "size": 10}, io.BytesIO())


def test_network_error_names_host():
    client = RegistryClient("127.0.0.1:9", insecure_registries=["127.0.0.1:9"], timeout=5)
    with pytest.raises(RegistryError) as info:
        client.get_manifest("busybox:latest")
    assert str(info.value).startswith(
        "pull busybox:latest from 127.0.0.1:9: cannot reach 127.0.0.1:9: ")


# -- the lab registries ---------------------------------------------------------------


def _registry(lab, name):
    _, state = lab
    for info in state.registries:
        info = info if isinstance(info, dict) else vars(info)
        if info["name"] == name:
            return info
    raise AssertionError(f"no {name} registry in the lab")


def _client(lab, name, with_credentials=True):
    config, _ = lab
    info = _registry(lab, name)
    credentials = load_credentials(str(config.state_dir)) if with_credentials else None
    insecure = [] if info["tls"] else [info["address"]]
    return info["address"], RegistryClient(info["address"], credentials=credentials,
                                           insecure_registries=insecure,
                                           ca_file=info.get("ca_file"))


def _check_layers(client, address, repo, layers):
    for layer in layers:
        with tempfile.TemporaryFile() as f:
            size = client.fetch_blob(f"{address}/{repo}", layer, f)
            assert size == layer["size"]
            f.seek(0)
            assert "sha256:" + hashlib.sha256(f.read()).hexdigest() == layer["digest"]


@pytest.mark.parametrize("tag", ["latest", "oci"])
def test_plain_resolve_and_fetch(lab, tag):
    address, client = _client(lab, "plain", with_credentials=False)
    media_type, digest, raw, parsed = client.get_manifest(f"{address}/busybox:{tag}")
    assert digest == "sha256:" + hashlib.sha256(raw).hexdigest()
    assert media_type == ("application/vnd.docker.distribution.manifest.v2+json"
                          if tag == "latest" else "application/vnd.oci.image.manifest.v1+json")
    manifest_digest, manifest, config, layers = client.resolve(f"busybox:{tag}")
    assert manifest_digest == digest and manifest == parsed
    assert config["rootfs"]["type"] == "layers" and layers
    _check_layers(client, address, "busybox", layers)
    # by digest as well
    again = client.get_manifest(f"{address}/busybox@{digest}")
    assert again[1] == digest


def test_plain_four_layers(lab):
    address, client = _client(lab, "plain", with_credentials=False)
    _, _, config, layers = client.resolve(parse_reference(f"{address}/layers:latest"))
    assert len(layers) == 4 and len(config["rootfs"]["diff_ids"]) == 4
    _check_layers(client, address, "layers", layers)


def test_basic_over_tls(lab):
    address, client = _client(lab, "basic")
    assert client.scheme == "https"
    _, _, config, layers = client.resolve("busybox:latest")
    assert config["architecture"]
    _check_layers(client, address, "busybox", layers)


def test_basic_wrong_password_and_no_ca(lab):
    config, _ = lab
    info = _registry(lab, "basic")
    user, password = load_credentials(str(config.state_dir))
    client = RegistryClient(info["address"], credentials=(user, "not-" + password),
                            ca_file=info["ca_file"])
    with pytest.raises(AuthError) as info_error:
        client.get_manifest("busybox:latest")
    text = str(info_error.value)
    assert text == (f"authentication to {info['address']} failed for busybox:latest: "
                    "credentials rejected (401)")
    no_ca = RegistryClient(info["address"], credentials=(user, password))
    with pytest.raises(RegistryError, match=r"^pull busybox:latest from .*: TLS error"):
        no_ca.get_manifest("busybox:latest")


def test_token_auth(lab):
    address, client = _client(lab, "token")
    _, _, _, layers = client.resolve("busybox:oci")
    _check_layers(client, address, "busybox", layers)


def test_token_anonymous_refused(lab):
    config, _ = lab
    _, password = load_credentials(str(config.state_dir))
    address, client = _client(lab, "token", with_credentials=False)
    with pytest.raises(AuthError) as info:
        client.get_manifest("busybox:latest")
    text = str(info.value)
    assert text.startswith(f"authentication to {address} failed for busybox:latest: ")
    assert "\n" not in text and password not in text


def test_multiarch(lab):
    address, client = _client(lab, "plain", with_credentials=False)
    media_type, index_digest, _, index = client.get_manifest("multiarch:latest")
    assert media_type == "application/vnd.oci.image.index.v1+json"
    digest, manifest, config, _ = client.resolve("multiarch:latest")
    mine = host_platform()
    assert config["architecture"] == mine.architecture
    assert digest != index_digest and digest in [m["digest"] for m in index["manifests"]]
    arm_digest, _, arm_config, _ = client.resolve("multiarch:latest", "linux/arm64")
    assert arm_config["architecture"] == "arm64"
    with pytest.raises(NoMatchingPlatform) as info:
        client.resolve("multiarch:latest", "linux/s390x")
    assert str(info.value) == (f"pull multiarch:latest from {address}: no linux/s390x image "
                               "for multiarch:latest (available: linux/amd64, linux/arm64/v8)")


@pytest.mark.parametrize("name", ["plain", "token"])
def test_unknown_tag(lab, name):
    address, client = _client(lab, name)
    with pytest.raises(RegistryError) as info:
        client.get_manifest("busybox:nope")
    assert str(info.value) == f"pull busybox:nope from {address}: manifest unknown (404)"


def _biggest_layer(client):
    _, _, _, layers = client.resolve("busybox:latest")
    return max(layers, key=lambda layer: layer["size"])


def test_resume(lab):
    address, client = _client(lab, "plain", with_credentials=False)
    layer = _biggest_layer(client)
    whole = io.BytesIO()
    client.fetch_blob("busybox", layer, whole)
    data = whole.getvalue()
    with tempfile.NamedTemporaryFile() as f:
        f.write(data[: len(data) // 2])
        f.flush()
        seen = []
        client.fetch_blob("busybox", layer, f, progress=lambda d, t: seen.append((d, t)))
        assert os.path.getsize(f.name) == layer["size"]
        f.seek(0)
        assert f.read() == data
        assert seen[-1] == (layer["size"], layer["size"])


def test_corrupt_partial_file(lab):
    address, client = _client(lab, "plain", with_credentials=False)
    layer = _biggest_layer(client)
    with tempfile.TemporaryFile() as f:
        f.write(b"\0" * (layer["size"] // 2))
        with pytest.raises(RegistryError) as info:
            client.fetch_blob("busybox", layer, f)
        text = str(info.value)
        assert text.startswith(f"pull busybox:latest from {address}: blob {layer['digest']}: "
                               "digest mismatch")
        assert f.seek(0, 2) == 0  # truncated: nothing to keep


def test_config_is_json_verified(lab):
    _, client = _client(lab, "plain", with_credentials=False)
    _, manifest, config, _ = client.resolve("busybox:latest")
    raw = io.BytesIO()
    client.fetch_blob("busybox", manifest["config"], raw)
    assert json.loads(raw.getvalue()) == config

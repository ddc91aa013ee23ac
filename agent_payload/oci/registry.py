"""A client for the OCI distribution API over http.client (standard library only).

Anonymous, Basic and Bearer-token auth; manifests in Docker schema2 and OCI formats;
indexes / manifest lists resolved by platform; blobs streamed to a file, verified by
digest and size as they arrive, resumable with ``Range``. Errors are RegistryError whose
str() is one line naming the image reference and the registry; credentials never appear
in messages or return values.
"""

import base64
import hashlib
import http.client
import io
import json
import re
import socket
import ssl
from dataclasses import replace
from typing import Callable, Dict, Iterable, List, Optional, Tuple, Union
from urllib.parse import urlencode, urljoin, urlsplit

from .platform import PlatformError, choose_manifest, host_platform
from .reference import (
    DOCKER_HUB,
    DOCKER_HUB_API,
    Reference,
    ReferenceError,
    is_registry_host,
    parse_reference,
)

MT_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MT_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MT_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MT_DOCKER_SCHEMA1 = ("application/vnd.docker.distribution.manifest.v1+json",
                     "application/vnd.docker.distribution.manifest.v1+prettyjws")
IMAGE_TYPES = (MT_OCI_MANIFEST, MT_DOCKER_MANIFEST)
INDEX_TYPES = (MT_OCI_INDEX, MT_DOCKER_LIST)
ACCEPT = ", ".join(IMAGE_TYPES + INDEX_TYPES)

MAX_MANIFEST = 4 * 1024 * 1024
MAX_CONFIG = 32 * 1024 * 1024
MAX_REDIRECTS = 5
CHUNK = 256 * 1024
USER_AGENT = "fleet-payload"
_REDIRECTS = (301, 302, 303, 307, 308)
_HASHES = {"sha256": hashlib.sha256, "sha512": hashlib.sha512}

Credentials = Union[None, Tuple[str, str], Dict[str, Tuple[str, str]]]


class RegistryError(Exception):
    """A registry operation failed; str() is a single line."""

    def __init__(self, message: str):
        """Collapse ``message`` onto one line."""
        super().__init__(" ".join(str(message).split()))


class AuthError(RegistryError):
    """The registry refused our (lack of) credentials."""


class Cancelled(RegistryError):
    """``cancelled()`` returned True while a blob was streaming."""


class NoMatchingPlatform(RegistryError, PlatformError):
    """An index has no manifest for the wanted platform."""


def parse_challenge(header: str) -> List[Tuple[str, Dict[str, str]]]:
    """Parse a ``WWW-Authenticate`` value into ``[(scheme lowercased, {param: value})]``.

    Handles quoted values with escapes and several challenges in one header.
    """
    token = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
    pattern = re.compile(
        r"\s*(?:(?P<scheme>" + token + r")(?=\s+" + token + r"\s*=|\s*,|\s*$)\s*)?"
        r"(?:(?P<key>" + token + r")\s*=\s*(?P<value>\"(?:[^\"\\]|\\.)*\"|[^\s,]*))?\s*,?")
    challenges: List[Tuple[str, Dict[str, str]]] = []
    position = 0
    text = header or ""
    while position < len(text):
        match = pattern.match(text, position)
        if not match or match.end() == position:
            break
        position = match.end()
        if match.group("scheme"):
            challenges.append((match.group("scheme").lower(), {}))
        if match.group("key") and challenges:
            value = match.group("value")
            if value.startswith('"'):
                value = re.sub(r"\\(.)", r"\1", value[1:-1])
            challenges[-1][1][match.group("key").lower()] = value
    return challenges


def digest_of(data: bytes, algorithm: str = "sha256") -> str:
    """``algorithm:hex`` of ``data``."""
    return algorithm + ":" + _HASHES[algorithm](data).hexdigest()


def _hasher(digest: str):
    algorithm = digest.partition(":")[0]
    factory = _HASHES.get(algorithm)
    return factory() if factory else None


def _reason(status: int, body: bytes, fallback: str) -> str:
    """The registry's error message for a failed response, one line, no body dumps."""
    try:
        errors = json.loads(body.decode("utf-8")).get("errors") or []
        messages = [str(e.get("message") or e.get("code")) for e in errors if isinstance(e, dict)]
    except (ValueError, AttributeError, UnicodeDecodeError):
        messages = []
    text = "; ".join(m for m in messages if m) or fallback or "error"
    return f"{text[:200]} ({status})"


class RegistryClient:
    """Talks to one registry (distribution API v2) on behalf of the payload.

    ``reference_or_registry`` is a Reference, an image reference text or a registry
    ``host[:port]``. ``credentials`` is ``(user, password)`` or ``{registry: (user,
    password)}``. HTTPS is used unless the registry is in ``insecure_registries`` (exact
    ``host:port`` or host); certificates are verified against the system CAs plus
    ``ca_file``.
    """

    def __init__(self, reference_or_registry, credentials: Credentials = None,
                 insecure_registries: Iterable[str] = (), ca_file: Optional[str] = None,
                 timeout: float = 30):
        """Set up the client; nothing is contacted yet."""
        if isinstance(reference_or_registry, Reference):
            registry = reference_or_registry.registry
        elif isinstance(reference_or_registry, str) and is_registry_host(reference_or_registry):
            registry = reference_or_registry
        else:
            registry = parse_reference(reference_or_registry).registry
        self.registry = DOCKER_HUB if registry == "index.docker.io" else registry
        self.api_host = DOCKER_HUB_API if self.registry == DOCKER_HUB else self.registry
        self.timeout = timeout
        insecure = set(insecure_registries or ())
        host_only = self.registry.rsplit(":", 1)[0] if ":" in self.registry else self.registry
        self.scheme = "http" if (self.registry in insecure or host_only in insecure) else "https"
        self._credentials = self._pick_credentials(credentials)
        self._ssl = ssl.create_default_context()
        if ca_file:
            self._ssl.load_verify_locations(cafile=ca_file)
        self._auth: Dict[Tuple[str, str], str] = {}

    def __repr__(self) -> str:
        """No credentials in the representation."""
        return f"RegistryClient({self.registry!r}, scheme={self.scheme!r})"

    def _pick_credentials(self, credentials: Credentials) -> Optional[Tuple[str, str]]:
        if credentials is None:
            return None
        if isinstance(credentials, tuple):
            return credentials
        names = [self.registry, self.api_host]
        if self.registry == DOCKER_HUB:
            names += ["index.docker.io", "https://index.docker.io/v1/"]
        for name in names:
            if name in credentials:
                return tuple(credentials[name])  # type: ignore[return-value]
        return None

    # -- references ---------------------------------------------------------------

    def _ref(self, reference) -> Reference:
        if isinstance(reference, Reference):
            ref = reference
        else:
            try:
                ref = parse_reference(reference, default_registry=self.registry)
            except ReferenceError as e:
                raise RegistryError(str(e)) from None
        if ref.registry != self.registry:
            raise RegistryError(f"pull {ref.familiar}: belongs to registry {ref.registry}, "
                                f"not {self.registry}")
        return ref

    def _error(self, ref: Reference, message: str, kind=RegistryError) -> RegistryError:
        return kind(f"pull {ref.short} from {self.registry}: {message}")

    # -- HTTP -----------------------------------------------------------------------

    def _connect(self, scheme: str, netloc: str):
        if scheme == "https":
            return http.client.HTTPSConnection(netloc, timeout=self.timeout, context=self._ssl)
        return http.client.HTTPConnection(netloc, timeout=self.timeout)

    def _send(self, ref: Reference, method: str, url: str, headers: Dict[str, str]):
        """One request with redirects followed; returns (response, connection)."""
        headers = dict(headers)
        headers.setdefault("User-Agent", USER_AGENT)
        origin = urlsplit(url).netloc
        for _ in range(MAX_REDIRECTS + 1):
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https"):
                raise self._error(ref, f"unsupported URL scheme {parts.scheme!r}")
            if parts.netloc != origin:
                headers.pop("Authorization", None)  # never leak credentials to another host
            path = parts.path or "/"
            if parts.query:
                path += "?" + parts.query
            conn = self._connect(parts.scheme, parts.netloc)
            try:
                conn.request(method, path, headers=headers)
                response = conn.getresponse()
            except ssl.SSLError as e:
                conn.close()
                raise self._error(ref, f"TLS error talking to {parts.netloc}: "
                                       f"{e.reason or e}") from None
            except (OSError, http.client.HTTPException) as e:
                conn.close()
                text = e.strerror if isinstance(e, OSError) and e.strerror else (
                    str(e) or type(e).__name__)
                if isinstance(e, socket.timeout):
                    text = "timed out"
                raise self._error(ref, f"cannot reach {parts.netloc}: {text}") from None
            if response.status in _REDIRECTS:
                location = response.getheader("Location")
                response.read()
                conn.close()
                if not location:
                    raise self._error(ref, f"redirect ({response.status}) without Location")
                url = urljoin(url, location)
                if response.status == 303:
                    method = "GET"
                continue
            return response, conn
        raise self._error(ref, f"more than {MAX_REDIRECTS} redirects")

    def _request(self, ref: Reference, method: str, path: str,
                 headers: Optional[Dict[str, str]] = None):
        """An authenticated API request: returns (response, connection) of a non-401 answer."""
        url = f"{self.scheme}://{self.api_host}{path}"
        scope = f"repository:{ref.repository}:pull"
        key = (self.registry, scope)
        for attempt in range(2):
            sent = dict(headers or {})
            if key in self._auth:
                sent["Authorization"] = self._auth[key]
            response, conn = self._send(ref, method, url, sent)
            if response.status != 401:
                return response, conn
            challenges = response.msg.get_all("WWW-Authenticate") or []
            response.read()
            conn.close()
            if attempt:
                break
            self._auth[key] = self._authorize(ref, challenges, scope)
        self._auth.pop(key, None)
        why = "credentials rejected" if self._credentials else "registry requires credentials"
        raise self._auth_error(ref, f"{why} (401)")

    def _auth_error(self, ref: Reference, why: str) -> AuthError:
        return AuthError(f"authentication to {self.registry} failed for {ref.short}: {why}")

    def _basic(self) -> str:
        user, password = self._credentials  # type: ignore[misc]
        raw = f"{user}:{password}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")

    def _authorize(self, ref: Reference, headers: List[str], scope: str) -> str:
        """The Authorization value answering the challenges in ``headers``."""
        challenges = [c for header in headers for c in parse_challenge(header)]
        schemes = {scheme: params for scheme, params in reversed(challenges)}
        if "bearer" in schemes:
            return self._token(ref, schemes["bearer"], scope)
        if "basic" in schemes:
            if not self._credentials:
                raise self._auth_error(ref, "registry requires credentials (401)")
            return self._basic()
        shown = ", ".join(sorted(schemes)) or "none"
        raise self._auth_error(ref, f"unsupported authentication scheme ({shown})")

    def _token(self, ref: Reference, params: Dict[str, str], scope: str) -> str:
        realm = params.get("realm")
        if not realm or urlsplit(realm).scheme not in ("http", "https"):
            raise self._auth_error(ref, "Bearer challenge without a usable realm")
        query = {"scope": scope}
        if params.get("service"):
            query["service"] = params["service"]
        url = realm + ("&" if "?" in realm else "?") + urlencode(query)
        headers = {"Authorization": self._basic()} if self._credentials else {}
        response, conn = self._send(ref, "GET", url, headers)
        try:
            body = response.read(MAX_MANIFEST)
        finally:
            conn.close()
        host = urlsplit(realm).netloc
        if response.status in (401, 403):
            why = "credentials rejected" if self._credentials else "anonymous access refused"
            raise self._auth_error(ref, f"{why} by token service {host} ({response.status})")
        if response.status != 200:
            raise self._auth_error(ref, f"token service {host} answered {response.status}")
        try:
            answer = json.loads(body.decode("utf-8"))
            token = answer.get("token") or answer.get("access_token")
        except (ValueError, AttributeError, UnicodeDecodeError):
            token = None
        if not isinstance(token, str) or not token:
            raise self._auth_error(ref, f"token service {host} sent no token")
        return "Bearer " + token

    def _fail_response(self, ref: Reference, response, conn, what: str) -> RegistryError:
        try:
            body = response.read(64 * 1024)
        except (OSError, http.client.HTTPException):
            body = b""
        finally:
            conn.close()
        return self._error(ref, _reason(response.status, body, f"{what} {response.reason}"))

    # -- manifests ------------------------------------------------------------------

    def get_manifest(self, reference) -> Tuple[str, str, bytes, dict]:
        """Fetch a manifest: ``(media_type, digest, raw_bytes, parsed_json)``.

        A digest in the reference is verified over the raw bytes; otherwise the sha256
        is computed (``Docker-Content-Digest`` is only cross-checked). Docker schema1 and
        other unknown media types raise RegistryError.
        """
        ref = self._ref(reference)
        path = f"/v2/{ref.repository}/manifests/{ref.target}"
        response, conn = self._request(ref, "GET", path, {"Accept": ACCEPT})
        if response.status != 200:
            raise self._fail_response(ref, response, conn, "manifest")
        try:
            raw = response.read(MAX_MANIFEST + 1)
            header_digest = response.getheader("Docker-Content-Digest")
            content_type = (response.getheader("Content-Type") or "").split(";")[0].strip()
        except (OSError, http.client.HTTPException) as e:
            raise self._error(ref, f"reading manifest: {e or type(e).__name__}") from None
        finally:
            conn.close()
        if len(raw) > MAX_MANIFEST:
            raise self._error(ref, f"manifest larger than {MAX_MANIFEST} bytes")
        if ref.digest:
            hasher = _hasher(ref.digest)
            if hasher is None:
                raise self._error(ref, f"unsupported digest algorithm in {ref.digest}")
            hasher.update(raw)
            digest = ref.digest.partition(":")[0] + ":" + hasher.hexdigest()
            if digest != ref.digest:
                raise self._error(ref, f"manifest digest mismatch: got {digest}")
        else:
            digest = digest_of(raw)
        if header_digest and header_digest.startswith("sha256:") and header_digest != digest:
            raise self._error(ref, f"manifest digest {digest} does not match the registry's "
                                   f"Docker-Content-Digest {header_digest}")
        if content_type in MT_DOCKER_SCHEMA1:
            raise self._error(ref, "Docker schema1 manifests are not supported "
                                   "(push the image again with a current client)")
        try:
            parsed = json.loads(raw.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            raise self._error(ref, "manifest is not valid JSON") from None
        if not isinstance(parsed, dict):
            raise self._error(ref, "manifest is not a JSON object")
        media_type = parsed.get("mediaType") or content_type
        if media_type not in IMAGE_TYPES + INDEX_TYPES:
            if parsed.get("schemaVersion") == 1 or media_type in MT_DOCKER_SCHEMA1:
                raise self._error(ref, "Docker schema1 manifests are not supported "
                                       "(push the image again with a current client)")
            if "manifests" in parsed:
                media_type = MT_OCI_INDEX
            elif "config" in parsed and "layers" in parsed:
                media_type = MT_OCI_MANIFEST
            else:
                raise self._error(ref, f"unsupported manifest media type {media_type!r}")
        return media_type, digest, raw, parsed

    def resolve(self, reference, platform=None) -> Tuple[str, dict, dict, List[dict]]:
        """Resolve to the image for ``platform``: ``(manifest_digest, manifest, config,
        layers)``.

        An index / manifest list is followed with platform.choose_manifest (``platform``
        defaults to the host's); the config blob is fetched and verified by digest;
        ``layers`` are the manifest's layer descriptors, base layer first.
        """
        ref = self._ref(reference)
        media_type, digest, _, manifest = self.get_manifest(ref)
        if media_type in INDEX_TYPES:
            wanted = platform if platform is not None else host_platform()
            try:
                chosen = choose_manifest(manifest.get("manifests") or [], wanted, ref.short)
            except PlatformError as e:
                raise NoMatchingPlatform(f"pull {ref.short} from {self.registry}: {e}") from None
            child = chosen.get("digest")
            if not isinstance(child, str):
                raise self._error(ref, "index entry without a digest")
            try:
                child_ref = replace(ref, digest=parse_reference(
                    f"x@{child}").digest)
            except ReferenceError:
                raise self._error(ref, f"index entry has an invalid digest {child!r}") from None
            media_type, digest, _, manifest = self.get_manifest(child_ref)
            if media_type not in IMAGE_TYPES:
                raise self._error(ref, f"platform entry {child} is not an image manifest")
        config_desc = manifest.get("config")
        layers = manifest.get("layers")
        if not isinstance(config_desc, dict) or not isinstance(layers, list):
            raise self._error(ref, "image manifest lacks config or layers")
        size = config_desc.get("size")
        if isinstance(size, int) and size > MAX_CONFIG:
            raise self._error(ref, f"image config larger than {MAX_CONFIG} bytes")
        buffer = io.BytesIO()
        self.fetch_blob(ref, config_desc, buffer)
        try:
            config = json.loads(buffer.getvalue().decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            raise self._error(ref, "image config is not valid JSON") from None
        if not isinstance(config, dict):
            raise self._error(ref, "image config is not a JSON object")
        return digest, manifest, config, list(layers)

    # -- blobs ----------------------------------------------------------------------

    def fetch_blob(self, repository, descriptor_or_digest, dest_file,
                   progress: Optional[Callable[[int, Optional[int]], None]] = None,
                   cancelled: Optional[Callable[[], bool]] = None) -> int:
        """Stream a blob into ``dest_file`` (an open binary file), verifying it; return size.

        ``repository`` is a Reference or repository name in this registry;
        ``descriptor_or_digest`` a descriptor dict (``digest``, ``size``) or a digest.
        Chunks are hashed as they are written; ``progress(done, total)`` is called as
        they arrive and ``cancelled()`` between them (True raises Cancelled). When the
        file already holds N bytes (opened ``r+b``/``a+b``), they are hashed and the rest
        is requested with ``Range: bytes=N-``; a server that ignores Range restarts it
        from 0. On a digest mismatch or more bytes than the descriptor's size,
        RegistryError is raised and the file is truncated to 0 when possible; a body cut
        short raises RegistryError and keeps what arrived, for a later call to resume.
        Either way its content must not be used: the caller writes to a temporary file
        and renames it into place only after this returns.
        """
        ref = self._ref(repository)
        if isinstance(descriptor_or_digest, dict):
            digest = descriptor_or_digest.get("digest")
            total = descriptor_or_digest.get("size")
        else:
            digest, total = descriptor_or_digest, None
        if not isinstance(total, int) or isinstance(total, bool) or total < 0:
            total = None
        if not isinstance(digest, str):
            raise self._error(ref, "blob descriptor without a digest")
        hasher = _hasher(digest)
        if hasher is None or not re.fullmatch(r"[a-z0-9]+:[a-f0-9]{32,}", digest):
            raise self._error(ref, f"unsupported or invalid blob digest {digest!r}")

        done = self._existing(dest_file, hasher, total)
        if done == 0:
            hasher = _hasher(digest)
        if total is not None and done == total:
            return self._finish(ref, dest_file, digest, hasher, done, total)

        headers = {"Range": f"bytes={done}-"} if done else {}
        path = f"/v2/{ref.repository}/blobs/{digest}"
        response, conn = self._request(ref, "GET", path, headers)
        try:
            if done and response.status == 416:
                response.read()
                conn.close()
                self._truncate(dest_file, 0)
                done, hasher = 0, _hasher(digest)
                response, conn = self._request(ref, "GET", path, {})
            if response.status == 200 and done:
                self._truncate(dest_file, 0)  # Range ignored: start over
                done, hasher = 0, _hasher(digest)
            elif response.status == 206 and done:
                start = (response.getheader("Content-Range") or "").partition(" ")[2]
                if not start.startswith(f"{done}-"):
                    raise self._error(ref, f"blob {digest}: registry answered the wrong "
                                           f"range ({start or 'none'})")
            elif response.status not in (200, 206) or (response.status == 206 and not done):
                raise self._fail_response(ref, response, conn, f"blob {digest}")
            if total is None and response.status == 200:
                length = response.getheader("Content-Length")
                total = int(length) if length and length.isdigit() else None
            while True:
                if cancelled is not None and cancelled():
                    raise self._error(ref, f"blob {digest}: cancelled", Cancelled)
                try:
                    chunk = response.read(CHUNK)
                except (OSError, http.client.HTTPException) as e:
                    text = "timed out" if isinstance(e, socket.timeout) else (
                        str(e) or type(e).__name__)
                    raise self._error(ref, f"blob {digest}: reading from "
                                           f"{self.api_host}: {text}") from None
                if not chunk:
                    break
                done += len(chunk)
                if total is not None and done > total:
                    self._truncate(dest_file, 0)
                    raise self._error(ref, f"blob {digest}: more than the expected "
                                           f"{total} bytes")
                hasher.update(chunk)
                dest_file.write(chunk)
                if progress is not None:
                    progress(done, total)
        finally:
            conn.close()
        return self._finish(ref, dest_file, digest, hasher, done, total)

    def _existing(self, dest_file, hasher, total: Optional[int]) -> int:
        """Hash what ``dest_file`` already holds; return its length (0 when unusable)."""
        try:
            size = dest_file.seek(0, io.SEEK_END)
        except (OSError, ValueError):
            return 0
        if not size:
            return 0
        if total is not None and size > total:
            self._truncate(dest_file, 0)
            return 0
        try:
            dest_file.seek(0)
            while True:
                chunk = dest_file.read(CHUNK)
                if not chunk:
                    break
                hasher.update(chunk)
            dest_file.seek(0, io.SEEK_END)
        except (OSError, ValueError, io.UnsupportedOperation):
            self._truncate(dest_file, 0)  # cannot read it back: fetch it all again
            return 0
        return size

    @staticmethod
    def _truncate(dest_file, size: int) -> None:
        try:
            dest_file.seek(size)
            dest_file.truncate(size)
        except (OSError, ValueError, io.UnsupportedOperation):
            pass

    def _finish(self, ref: Reference, dest_file, digest: str, hasher, done: int,
                total: Optional[int]) -> int:
        if total is not None and done != total:
            # A body cut short is an interruption, not bad content: what arrived stays
            # for the next call to resume from (its digest check covers those bytes too).
            raise self._error(ref, f"blob {digest}: got {done} of {total} bytes")
        got = digest.partition(":")[0] + ":" + hasher.hexdigest()
        if got != digest:
            self._truncate(dest_file, 0)
            raise self._error(ref, f"blob {digest}: digest mismatch (got {got})")
        try:
            dest_file.flush()
        except (OSError, ValueError):
            pass
        return done

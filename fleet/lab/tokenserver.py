"""A small token service for the lab's Bearer-token registry (Docker token auth spec).

Run as ``python3 -m fleet.lab.tokenserver CONFIG.json``. The JSON config holds::

    {"bind": "10.231.0.1", "port": 5003, "issuer": "...", "service": "...",
     "htpasswd": "/path/htpasswd", "key": "/path/token-signer.key", "expires_in": 300}

``GET /token?service=S&scope=repository:NAME:pull,push`` (scope may repeat): a request
with valid Basic credentials (a bcrypt entry of the htpasswd file) gets every requested
action; an anonymous request gets a token that grants nothing (the spec's "intersection
with what the client may do", so clients see the registry's own 401); wrong credentials
get 401. The JWT is signed ES256 and its header carries the libtrust ``kid`` of the
signing key, which is how distribution 2.8 finds the key among its ``rootcertbundle``.
``GET /healthz`` answers 200 for readiness probes.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import hashlib
import json
import secrets
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socket import AF_INET6
from typing import Dict, List, Optional, Set, Tuple
from urllib.parse import parse_qs, urlsplit

import bcrypt
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

DEFAULT_EXPIRES_IN = 300


def libtrust_key_id(public_key) -> str:
    """Return the libtrust key ID of a public key (distribution's JWT ``kid``).

    SHA-256 of the DER SubjectPublicKeyInfo, first 240 bits, base32 without padding,
    in 12 groups of 4 characters joined by ``:``.
    """
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    text = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode("ascii").rstrip("=")
    return ":".join(text[i:i + 4] for i in range(0, len(text), 4))


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def sign_jwt(claims: dict, key: ec.EllipticCurvePrivateKey) -> str:
    """Return a compact JWS (ES256) of ``claims`` with a libtrust ``kid`` header."""
    header = {"typ": "JWT", "alg": "ES256", "kid": libtrust_key_id(key.public_key())}
    signing_input = ".".join(
        _b64url(json.dumps(part, separators=(",", ":")).encode("utf-8"))
        for part in (header, claims)
    )
    der = key.sign(signing_input.encode("ascii"), ec.ECDSA(hashes.SHA256()))
    r, s = decode_dss_signature(der)
    return signing_input + "." + _b64url(r.to_bytes(32, "big") + s.to_bytes(32, "big"))


def parse_scopes(values: List[str]) -> List[Tuple[str, str, List[str]]]:
    """Parse ``scope`` query values into (type, name, actions) triples.

    Each value may hold several space-separated scopes; a name may itself contain
    ``:`` (the type is before the first colon, the actions after the last one).
    """
    out = []
    for value in values:
        for item in value.split():
            if item.count(":") < 2:
                continue
            rtype, rest = item.split(":", 1)
            name, actions = rest.rsplit(":", 1)
            acts = sorted(set(a for a in actions.split(",") if a))
            out.append((rtype, name, acts))
    return out


def load_htpasswd(path: str) -> Dict[str, bytes]:
    """Return {user: bcrypt hash} from an htpasswd file (bcrypt entries only)."""
    users = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#") or ":" not in line:
                continue
            user, hashed = line.split(":", 1)
            if hashed.startswith(("$2a$", "$2b$", "$2y$")):
                users[user] = hashed.encode("ascii")
    return users


class TokenIssuer:
    """Authenticates requests and issues signed tokens (no HTTP here)."""

    def __init__(self, config: dict):
        self.issuer = config["issuer"]
        self.service = config["service"]
        self.expires_in = int(config.get("expires_in", DEFAULT_EXPIRES_IN))
        self.users = load_htpasswd(config["htpasswd"])
        with open(config["key"], "rb") as f:
            key = serialization.load_pem_private_key(f.read(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError("token signing key must be an EC P-256 key")
        self.key = key
        self._ok: Set[Tuple[str, str]] = set()  # (user, sha256) already checked
        self._lock = threading.Lock()

    def authenticate(self, authorization: Optional[str]) -> Tuple[bool, str]:
        """Return (ok, subject) for an Authorization header; no header is anonymous."""
        if not authorization:
            return True, ""
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() != "basic":
            return False, ""
        try:
            user, sep, password = base64.b64decode(value.strip()).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False, ""
        if not sep or user not in self.users:
            return False, ""
        digest = hashlib.sha256(f"{user}\0{password}".encode()).hexdigest()
        with self._lock:
            known = (user, digest) in self._ok
        if not known:
            if not bcrypt.checkpw(password.encode("utf-8"), self.users[user]):
                return False, ""
            with self._lock:
                self._ok.add((user, digest))
        return True, user

    def issue(self, subject: str, scopes: List[Tuple[str, str, List[str]]]) -> dict:
        """Return the token response body for an authenticated subject ("" = anonymous)."""
        now = int(time.time())
        access = [
            {"type": rtype, "name": name, "actions": actions if subject else []}
            for rtype, name, actions in scopes
        ]
        claims = {
            "iss": self.issuer,
            "sub": subject,
            "aud": self.service,
            "exp": now + self.expires_in,
            "nbf": now,
            "iat": now,
            "jti": secrets.token_hex(16),
            "access": access,
        }
        token = sign_jwt(claims, self.key)
        issued = datetime.datetime.fromtimestamp(now, datetime.timezone.utc)
        return {
            "token": token,
            "access_token": token,
            "expires_in": self.expires_in,
            "issued_at": issued.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }


class _Handler(BaseHTTPRequestHandler):
    server_version = "fleet-lab-token/1"
    protocol_version = "HTTP/1.1"
    issuer: TokenIssuer  # set on the subclass made by serve()

    def log_message(self, format, *args):  # noqa: A002 - signature of the base class
        return  # no access log; errors surface as HTTP answers

    def _send_json(self, status: int, body: dict, headers: Optional[dict] = None) -> None:
        data = json.dumps(body).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):  # noqa: N802 - http.server naming
        url = urlsplit(self.path)
        if url.path == "/healthz":
            self._send_json(200, {"status": "ok"})
            return
        if url.path != "/token":
            self._send_json(404, {"errors": [{"code": "NOT_FOUND", "message": "no such path"}]})
            return
        query = parse_qs(url.query)
        service = query.get("service", [self.issuer.service])[0]
        if service != self.issuer.service:
            self._send_json(
                400, {"errors": [{"code": "UNSUPPORTED", "message": "unknown service"}]}
            )
            return
        ok, subject = self.issuer.authenticate(self.headers.get("Authorization"))
        if not ok:
            self._send_json(
                401,
                {"errors": [{"code": "UNAUTHORIZED", "message": "invalid credentials"}]},
                {"WWW-Authenticate": 'Basic realm="fleet-lab-token"'},
            )
            return
        scopes = parse_scopes(query.get("scope", []))
        self._send_json(200, self.issuer.issue(subject, scopes))


def serve(config: dict) -> None:
    """Serve tokens forever with the given config (blocks)."""
    handler = type("Handler", (_Handler,), {"issuer": TokenIssuer(config)})
    server_class = ThreadingHTTPServer
    if ":" in config["bind"]:
        server_class = type("Server6", (ThreadingHTTPServer,), {"address_family": AF_INET6})
    httpd = server_class((config["bind"], int(config["port"])), handler)
    httpd.daemon_threads = True
    httpd.serve_forever()


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point: ``python3 -m fleet.lab.tokenserver CONFIG.json``."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        sys.stderr.write("usage: python3 -m fleet.lab.tokenserver CONFIG.json\n")
        return 2
    try:
        with open(argv[0], encoding="utf-8") as f:
            config = json.load(f)
        serve(config)
    except KeyboardInterrupt:
        return 0
    except Exception as e:  # one line in the log, read by the lab on failure
        sys.stderr.write(f"tokenserver: {type(e).__name__}: {e}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

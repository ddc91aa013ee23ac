"""Registry credentials on the controller, stored like Docker's config.json ``auths``.

``fleet login REGISTRY`` writes ``{"auths": {"REGISTRY": {"auth": base64("user:password")}}}``
to ``$FLEET_CONFIG`` or ~/.config/fleet/config.json (mode 0600, written atomically);
a Docker config.json can be pointed at too. Credentials are handed to the payload for
the image pulls that need them and never printed, logged or returned in results.
"""

import base64
import json
import os
from pathlib import Path

# Docker Hub's names, as users and docker's own config.json spell it.
DOCKER_HUB_ALIASES = ("docker.io", "index.docker.io", "registry-1.docker.io",
                      "index.docker.io/v1")


class CredentialsError(Exception):
    """The credentials file cannot be read or written; str() names the file."""


def config_path():
    """Where fleet keeps registry credentials."""
    return Path(os.environ.get("FLEET_CONFIG") or
                Path.home() / ".config" / "fleet" / "config.json")


def _key(registry):
    registry = registry.strip().rstrip("/")
    for prefix in ("https://", "http://"):
        if registry.startswith(prefix):
            registry = registry[len(prefix):]
    return "docker.io" if registry in DOCKER_HUB_ALIASES else registry


def _load(path):
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise CredentialsError(f"{path}: cannot read credentials: {exc}") from None
    if not isinstance(data, dict):
        raise CredentialsError(f"{path}: not a JSON object")
    return data


def _save(path, data):
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle, indent=2)
        handle.write("\n")
    os.replace(tmp, path)


def login(registry, user, password, path=None):
    """Store credentials for ``registry``; return the key they are stored under."""
    if not user or not password:
        raise CredentialsError("login needs a user name and a password")
    path = Path(path) if path else config_path()
    data = _load(path)
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    data.setdefault("auths", {})[_key(registry)] = {"auth": token}
    _save(path, data)
    return _key(registry)


def logout(registry, path=None):
    """Forget the credentials of ``registry``; return whether there were any."""
    path = Path(path) if path else config_path()
    data = _load(path)
    removed = data.get("auths", {}).pop(_key(registry), None) is not None
    if removed:
        _save(path, data)
    return removed


def lookup(registry, path=None):
    """(user, password) stored for ``registry``, or None."""
    path = Path(path) if path else config_path()
    entry = _load(path).get("auths", {}).get(_key(registry))
    if not entry:
        return None
    if entry.get("username") and entry.get("password"):
        return entry["username"], entry["password"]
    try:
        user, _, password = base64.b64decode(entry.get("auth", "")).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        raise CredentialsError(f"{path}: the entry for {_key(registry)} is not valid "
                               "base64 user:password") from None
    return (user, password) if user and password else None


def registries(path=None):
    """The registries that have stored credentials (names only, never secrets)."""
    path = Path(path) if path else config_path()
    return sorted(_load(path).get("auths", {}))

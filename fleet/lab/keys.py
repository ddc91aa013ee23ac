"""SSH keys for the lab: host keys, the client key, known_hosts and authorized_keys."""

import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519


def ensure_ed25519_key(path):
    """Create an OpenSSH ed25519 private key at ``path`` (0600) if missing.

    Returns the public key line ``ssh-ed25519 AAAA…``.
    """
    path = Path(path)
    if path.exists():
        key = serialization.load_ssh_private_key(path.read_bytes(), password=None)
    else:
        key = ed25519.Ed25519PrivateKey.generate()
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption())
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
        os.replace(tmp, path)
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                           serialization.PublicFormat.OpenSSH).decode()
    pub_path = path.with_name(path.name + ".pub")
    if not pub_path.exists():
        pub_path.write_text(public + "\n")
    return public


def known_hosts_text(entries):
    """known_hosts content for [(address, port, public key line)]."""
    lines = []
    for address, port, public in entries:
        name = address if port == 22 else f"[{address}]:{port}"
        lines.append(f"{name} {public}")
    return "\n".join(lines) + "\n"

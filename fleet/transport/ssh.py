"""SSH connections with paramiko: strict host keys, key files or the agent, timeouts.

Uses paramiko's Transport directly rather than SSHClient so that the known_hosts file
and the private key are parsed once per process and shared by every connection, and so
that each failure is classified into one readable line (unreachable, host key unknown
or changed, authentication refused).
"""

import base64
import dataclasses
import functools
import hashlib
import importlib.util
import os
import shlex
import socket
import sys
import threading
import types
from dataclasses import dataclass


def _import_paramiko():
    """Import paramiko without invoke and without importlib.metadata.

    paramiko.config imports invoke when installed (about 35 ms of asyncio, unittest.mock
    and more) only for ssh_config's ``Match exec``, which fleet never reads; and
    paramiko's ``__init__`` imports importlib.metadata (about 14 ms: email, zipfile,
    pathlib) only to read its own version. Both are kept out while paramiko imports: the
    version comes from the name of its dist-info directory instead."""
    stubs = {}
    if "invoke" not in sys.modules:
        stubs["invoke"] = None  # makes paramiko's optional ``import invoke`` fail fast
    if "importlib.metadata" not in sys.modules:
        stubs["importlib.metadata"] = _MetadataStub()
    sys.modules.update(stubs)
    try:
        import paramiko
    finally:
        for name in stubs:
            del sys.modules[name]
        if "importlib" in sys.modules and "importlib.metadata" in stubs:
            # ``from importlib import metadata`` also set the package's attribute
            sys.modules["importlib"].__dict__.pop("metadata", None)
    return paramiko


class _MetadataStub(types.ModuleType):
    """Stands in for importlib.metadata while paramiko imports: ``version`` only."""

    def __init__(self):
        super().__init__("importlib.metadata")

    @staticmethod
    def version(name):
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.origin:
            site = os.path.dirname(os.path.dirname(spec.origin))
            prefix = name + "-"
            for entry in os.listdir(site):
                if entry.startswith(prefix) and entry.endswith(".dist-info"):
                    return entry[len(prefix):-len(".dist-info")]
        return "0"


paramiko = _import_paramiko()

DEFAULT_KNOWN_HOSTS = "~/.ssh/known_hosts"
PREFERRED_CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")


class TransportError(Exception):
    """A host could not be reached or used; str() is the one-line reason."""

    unreachable = True


class HostKeyError(TransportError):
    """The host's key is unknown or differs from known_hosts."""


class AuthError(TransportError):
    """The host refused our credentials."""


class RemoteError(TransportError):
    """The host accepted us but could not start the payload (python, sudo)."""


@dataclass(frozen=True)
class Target:
    """Everything needed to reach one host."""

    name: str
    host: str
    port: int = 22
    user: str | None = None
    key_file: str | None = None
    python: str = "/usr/bin/python3"
    become: bool = False
    become_user: str = "root"
    become_password: str | None = None
    known_hosts: str | None = None
    connect_timeout: float = 10.0
    # Seconds a session stays open after a command, for the next one (ControlPersist);
    # 0: none (a connection per command), inf: until `fleet sessions close`.
    persist: float = 0.0
    # Where the keys come from without a key file: an ssh-agent's socket (None: this
    # process's $SSH_AUTH_SOCK; "": no agent) and the key files tried when the agent has
    # none (None: this process's ~/.ssh/id_*). Set by pinned_auth for a session that the
    # keeper opens, whose own environment is another command's.
    agent: str | None = None
    identities: tuple | None = None

    @property
    def user_or_default(self):
        return self.user or os.environ.get("USER") or "root"

    def __repr__(self):  # never show the become password
        return f"Target({self.user_or_default}@{self.host}:{self.port})"


def ssh_option(args, name):
    """The value of ``-o NAME=value`` (or ``-o "NAME value"``) in an ssh argument string
    such as Ansible's ``ansible_ssh_common_args``; the first one wins, as with ssh."""
    return _ssh_options(args or "").get(name.lower())


@functools.lru_cache(maxsize=64)
def _ssh_options(args):
    """{lower-case option name: value} of an ssh argument string, first one winning.
    Cached: every host of an inventory usually shares one string, and shlex is slow."""
    options = {}
    words = shlex.split(args)
    for index, word in enumerate(words):
        option = word
        if word == "-o" and index + 1 < len(words):
            option = words[index + 1]
        elif word.startswith("-o"):
            option = word[2:]
        else:
            continue
        # ssh accepts "Key=value" and "Key value" alike.
        key, _, value = option.partition("=") if "=" in option else option.partition(" ")
        if value.strip():
            options.setdefault(key.strip().lower(), value.strip())
    return options


def known_hosts_from_common_args(args):
    """UserKnownHostsFile from an Ansible ``ansible_ssh_common_args`` string, if set."""
    value = ssh_option(args, "UserKnownHostsFile")
    return value.split()[0] if value else None


_cache_lock = threading.Lock()


def _version(path):
    """What tells one state of the file at ``path`` from the next (None: no file). The
    parsed files are cached by it: a process that lives on (the session keeper) sees a
    known_hosts file the lab or the user rewrote."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return (info.st_mtime_ns, info.st_size, info.st_ino)


@functools.lru_cache(maxsize=16)
def _load_known_hosts(path, version):  # version: the cache key only
    keys = paramiko.HostKeys()
    try:
        keys.load(path)
    except FileNotFoundError:
        pass
    except (OSError, paramiko.SSHException) as exc:
        raise HostKeyError(f"cannot read known_hosts {path}: {exc}") from None
    return keys


def known_hosts(path):
    """The parsed known_hosts file at ``path`` (shared, read-only)."""
    path = os.path.expanduser(path)
    with _cache_lock:
        return _load_known_hosts(path, _version(path))


@functools.lru_cache(maxsize=16)
def _load_key(path, version):  # version: the cache key only
    try:
        return paramiko.PKey.from_path(path)
    except FileNotFoundError:
        raise AuthError(f"private key file {path} does not exist") from None
    except (paramiko.SSHException, ValueError, OSError) as exc:
        raise AuthError(f"cannot load private key {path}: {exc}") from None


def private_key(path):
    """The private key at ``path``, loaded once per process (and version of the file)."""
    path = os.path.expanduser(path)
    with _cache_lock:
        return _load_key(path, _version(path))


def fingerprint(key):
    """OpenSSH-style SHA256 fingerprint of a public key."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def _resolvable(host):
    """An ASCII host name as bytes: getaddrinfo then skips the idna codec, whose first use
    costs a process about 13 ms of imports."""
    return host.encode("ascii") if host.isascii() else host


def _host_key_name(target):
    return target.host if target.port == 22 else f"[{target.host}]:{target.port}"


def connect(target):
    """Open an authenticated paramiko Transport to ``target`` or raise TransportError."""
    where = f"{target.host}:{target.port}"
    known_path = os.path.expanduser(target.known_hosts or DEFAULT_KNOWN_HOSTS)
    expected = known_hosts(known_path).lookup(_host_key_name(target))
    try:
        sock = socket.create_connection((_resolvable(target.host), target.port),
                                        target.connect_timeout)
    except socket.timeout:
        raise TransportError(f"unreachable: connect to {where} timed out after "
                             f"{target.connect_timeout:g}s") from None
    except OSError as exc:
        raise TransportError(f"unreachable: connect to {where}: {exc.strerror or exc}") from None
    if not expected:  # checked once the host answers, so a dead host reads as unreachable
        sock.close()
        raise HostKeyError(f"host key for {_host_key_name(target)} not found in {known_path} "
                           "(strict host key checking)")
    # A request is often a frame sent as two writes (header, then body): with Nagle's
    # algorithm the second waited for the host's delayed ACK of the first, 40 ms.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    transport = paramiko.Transport(sock)
    try:
        transport.banner_timeout = target.connect_timeout
        options = transport.get_security_options()
        # Only ask for key types we can verify: the server then shows the one we know.
        options.key_types = list(expected.keys()) + [
            t for t in options.key_types if t not in expected]
        # AES-GCM first: an AEAD cipher needs no separate MAC, whose check paramiko does
        # byte by byte in Python (measurable with many small requests on many hosts).
        options.ciphers = PREFERRED_CIPHERS + tuple(
            c for c in options.ciphers if c not in PREFERRED_CIPHERS)
        transport.start_client(timeout=target.connect_timeout)
        _verify_host_key(transport.get_remote_server_key(), expected, target, known_path)
        _authenticate(transport, target, where)
        transport.set_keepalive(30)
        return transport
    except TransportError:
        transport.close()
        raise
    except (paramiko.SSHException, OSError, EOFError) as exc:
        transport.close()
        raise TransportError(f"unreachable: SSH handshake with {where} failed: "
                             f"{exc or type(exc).__name__}") from None


def _verify_host_key(key, expected, target, known_path):
    known = expected.get(key.get_name())
    if known is not None and known == key:
        return
    wanted = ", ".join(f"{t} {fingerprint(k)}" for t, k in expected.items())
    raise HostKeyError(
        f"host key for {_host_key_name(target)} changed: server sent {key.get_name()} "
        f"{fingerprint(key)}, {known_path} has {wanted} (possible man-in-the-middle; "
        "fix known_hosts if the host was reinstalled)")


DEFAULT_IDENTITIES = ("id_ed25519", "id_ecdsa", "id_rsa")


def default_identities():
    """This process's default key files that exist (~/.ssh/id_*, as ssh tries them)."""
    paths = (os.path.expanduser("~/.ssh/" + name) for name in DEFAULT_IDENTITIES)
    return tuple(path for path in paths if os.path.exists(path))


def pinned_auth(target):
    """``target`` with this process's key sources spelled out (its ssh-agent socket and
    default key files), for a connection another process makes for it."""
    if target.key_file:
        return target
    agent = target.agent if target.agent is not None else os.environ.get("SSH_AUTH_SOCK", "")
    identities = (target.identities if target.identities is not None
                  else default_identities())
    return dataclasses.replace(target, agent=agent, identities=tuple(identities))


def agent_keys(path=None):
    """The keys of the ssh-agent at socket ``path`` (None: $SSH_AUTH_SOCK; "": none).
    An agent that cannot be reached has no keys, as for ssh."""
    if path is None:
        return list(paramiko.Agent().get_keys())
    if not path:
        return []
    agent = paramiko.agent.AgentSSH()
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(path)
        agent._connect(conn)  # the keys keep the connection: they sign through it
    except (OSError, paramiko.SSHException):
        conn.close()
        return []
    return list(agent.get_keys())


def _authenticate(transport, target, where):
    user = target.user_or_default
    keys = []
    if target.key_file:
        keys.append(private_key(target.key_file))
    else:
        keys.extend(agent_keys(target.agent))
        if not keys:
            identities = (target.identities if target.identities is not None
                          else default_identities())
            keys.extend(private_key(path) for path in identities)
    if not keys:
        raise AuthError(f"no SSH key for {user}@{where}: set ansible_ssh_private_key_file or "
                        "load a key into ssh-agent")
    for key in keys:
        try:
            transport.auth_publickey(user, key)
        except paramiko.AuthenticationException:
            continue
        if transport.is_authenticated():
            return
    raise AuthError("authentication refused for {}@{} ({})".format(
        user, where, target.key_file or "agent/default keys"))

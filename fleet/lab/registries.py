"""The lab's real OCI registries: three distribution servers and one token service.

``start_registries(STATE, BIND)`` runs Debian's ``docker-registry`` (distribution 2.8)
three times, each with its own config and filesystem storage under
``STATE/registries/<name>/``:

========  =====================  ==========  ==============================
name      auth                   transport   address
========  =====================  ==========  ==============================
plain     anonymous              HTTP        BIND:BASE_PORT
basic     htpasswd (bcrypt)      HTTPS       BIND:BASE_PORT+1 (lab CA cert)
token     Bearer token           HTTP        BIND:BASE_PORT+2
========  =====================  ==========  ==============================

plus the token service (``fleet.lab.tokenserver``) on BIND:BASE_PORT+3. basic and token
share one lab user, ``fleet``, whose random password is generated once into
``STATE/registries/credentials.json`` (mode 0600). The CA and certificates live in
``STATE/pki`` (see ``fleet.lab.pki``).

Each process runs in its own session with stdout/stderr in a log file next to its
config, and its PID is recorded in ``STATE/registries/state.json``. Starting again
reuses a recorded process when it is alive, is ours (its command line names our config
file) and its config has not changed; stopping kills only recorded processes that pass
the same check. Storage is never deleted here.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import http.client
import ipaddress
import json
import os
import secrets
import shutil
import signal
import ssl
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, fields
from typing import Dict, List, Optional, Tuple

import bcrypt
import yaml

from fleet.lab import pki

USERNAME = "fleet"
REGISTRY_BINARY = "docker-registry"
TOKEN_SERVICE = "fleet-lab-registry"
TOKEN_ISSUER = "fleet-lab-token-service"
TOKENSERVER = "tokenserver"
START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
# bcrypt cost of the htpasswd entry: distribution checks it on every request with Basic
# auth, so the lab keeps it low (a push is dozens of requests). Lab-only password.
BCRYPT_ROUNDS = 5
STATE_VERSION = 1

# name, port offset, auth, tls
_INSTANCES: Tuple[Tuple[str, int, str, bool], ...] = (
    ("plain", 0, "none", False),
    ("basic", 1, "basic", True),
    ("token", 2, "token", False),
)
_TOKEN_PORT_OFFSET = 3


class RegistryError(Exception):
    """A lab registry could not be configured, started or stopped (one-line message)."""


@dataclass(frozen=True)
class RegistryInfo:
    """One running (or recorded) lab registry, as clients should address it.

    ``alive`` is True for what ``start_registries`` returns; ``registry_status`` sets it
    from a liveness check of the recorded PID.
    """

    name: str  # "plain" | "basic" | "token"
    address: str  # "10.231.0.1:5000" (what goes in an image reference)
    url: str  # "http://10.231.0.1:5000" / "https://..."
    auth: str  # "none" | "basic" | "token"
    tls: bool
    ca_file: Optional[str]  # path of the lab CA PEM when tls
    credentials_file: Optional[str]
    pid: int
    alive: bool = True


@dataclass
class _Proc:
    """What it takes to run (and recognise) one lab process."""

    name: str
    argv: List[str]
    config_path: str
    config_text: bytes
    digest: str
    log_path: str
    host: str
    port: int
    probe_path: str
    cafile: Optional[str]
    env: Dict[str, str]
    cwd: str


# Processes started by this Python process, so stop can reap them (no zombies).
_CHILDREN: Dict[int, subprocess.Popen] = {}


# --- public API ------------------------------------------------------------------------


def start_registries(state_dir: str, bind_addr: str, base_port: int = 5000) -> List[RegistryInfo]:
    """Start (or reuse) the plain, basic and token registries and the token service.

    Returns one RegistryInfo per registry, in the order plain, basic, token. Raises
    RegistryError naming the instance and the last line of its log when one does not
    come up within START_TIMEOUT seconds; processes started by the failed call are
    stopped again.
    """
    if not 0 < base_port <= 65535 - _TOKEN_PORT_OFFSET:
        raise RegistryError(f"base port {base_port} out of range")
    _validate_bind(bind_addr)
    binary = shutil.which(REGISTRY_BINARY)
    if binary is None:
        raise RegistryError(f"{REGISTRY_BINARY} not found (apt-get install docker-registry)")
    reg_dir = _reg_dir(state_dir)
    os.makedirs(reg_dir, mode=0o700, exist_ok=True)
    with _locked(reg_dir):
        try:
            procs, infos = _plan(state_dir, bind_addr, base_port, binary)
        except (pki.PKIError, OSError) as e:
            raise RegistryError(f"preparing lab registries: {e}") from None
        state = _load_state(reg_dir)
        recorded = state.get("processes", {})
        pids: Dict[str, int] = {}
        to_start: List[_Proc] = []
        for proc in procs:
            rec = recorded.get(proc.name) or {}
            pid = int(rec.get("pid") or 0)
            if pid and _is_ours(pid, proc.config_path):
                if rec.get("digest") == proc.digest:
                    pids[proc.name] = pid
                    continue
                _terminate([pid], {pid: proc.config_path})
            to_start.append(proc)
        started: Dict[str, int] = {}
        try:
            for proc in to_start:
                _write_if_changed(proc.config_path, proc.config_text, 0o600)
                started[proc.name] = _spawn(proc)
            pids.update(started)
            _wait_ready(procs, pids)
        except BaseException as e:
            _terminate(list(started.values()), {started[p.name]: p.config_path
                                                for p in to_start if p.name in started})
            for name in started:
                pids.pop(name, None)
            _save_state(reg_dir, bind_addr, base_port, procs, pids, infos)
            if isinstance(e, OSError):
                raise RegistryError(f"starting lab registries: {e}") from None
            raise
        _save_state(reg_dir, bind_addr, base_port, procs, pids, infos)
    return [_with_pid(info, pids[info.name], True) for info in infos]


def stop_registries(state_dir: str) -> List[str]:
    """Stop the recorded registry and token-service processes; return the names stopped.

    Only PIDs recorded in state.json whose command line names our config file are
    signalled (SIGTERM, then SIGKILL after STOP_TIMEOUT). Storage, configs and
    credentials stay; the caller decides whether to delete STATE.
    """
    reg_dir = _reg_dir(state_dir)
    if not os.path.isdir(reg_dir):
        return []
    with _locked(reg_dir):
        state = _load_state(reg_dir)
        processes = state.get("processes", {})
        ours: Dict[int, str] = {}
        names: Dict[int, str] = {}
        for name, rec in processes.items():
            pid = int(rec.get("pid") or 0)
            if pid and _is_ours(pid, rec.get("config", "")):
                ours[pid] = rec["config"]
                names[pid] = name
        _terminate(list(ours), ours)
        for rec in processes.values():
            rec["pid"] = 0
        for rec in state.get("registries", []):
            rec["pid"] = 0
        if state:
            _atomic_write(os.path.join(reg_dir, "state.json"),
                          json.dumps(state, indent=2).encode(), 0o644)
    order = [name for name, _, _, _ in _INSTANCES] + [TOKENSERVER]
    return sorted(names.values(), key=lambda n: order.index(n) if n in order else len(order))


def registry_status(state_dir: str) -> List[RegistryInfo]:
    """Return the registries recorded in state.json, with ``alive`` from a PID check.

    An empty list means the registries were never started in this STATE.
    """
    reg_dir = _reg_dir(state_dir)
    state = _load_state(reg_dir)
    processes = state.get("processes", {})
    names = {f.name for f in fields(RegistryInfo)}
    out = []
    for rec in state.get("registries", []):
        info = RegistryInfo(**{k: v for k, v in rec.items() if k in names})
        proc = processes.get(info.name, {})
        alive = bool(info.pid) and _is_ours(info.pid, proc.get("config", ""))
        if info.auth == "token":
            token = processes.get(TOKENSERVER, {})
            tpid = int(token.get("pid") or 0)
            alive = alive and bool(tpid) and _is_ours(tpid, token.get("config", ""))
        out.append(_with_pid(info, info.pid, alive))
    return out


def load_credentials(state_dir: str) -> Tuple[str, str]:
    """Return the lab registry user and password (basic and token registries)."""
    path = os.path.join(_reg_dir(state_dir), "credentials.json")
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        return str(data["username"]), str(data["password"])
    except (OSError, ValueError, KeyError) as e:
        raise RegistryError(f"cannot read lab registry credentials {path}: {e}") from None


# --- planning ---------------------------------------------------------------------------


def _reg_dir(state_dir: str) -> str:
    return os.path.join(os.path.abspath(state_dir), "registries")


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _plan(
    state_dir: str, bind_addr: str, base_port: int, binary: str
) -> Tuple[List[_Proc], List[RegistryInfo]]:
    """Write credentials and certificates; return the processes and infos wanted."""
    state_dir = os.path.abspath(state_dir)
    reg_dir = _reg_dir(state_dir)
    creds = _ensure_credentials(reg_dir)
    creds_file = os.path.join(reg_dir, "credentials.json")
    htpasswd = _ensure_htpasswd(reg_dir, creds["username"], creds["password"])
    pki_dir = os.path.join(state_dir, "pki")
    names = [bind_addr, "127.0.0.1", "localhost"]
    server = pki.ensure_server_cert(pki_dir, names)
    signer = pki.ensure_signing_cert(pki_dir)
    ca_file = os.path.join(pki_dir, pki.CA_CERT)
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    token_port = base_port + _TOKEN_PORT_OFFSET
    realm = f"http://{_hostport(bind_addr, token_port)}/token"

    procs: List[_Proc] = []
    infos: List[RegistryInfo] = []
    for name, offset, auth, tls in _INSTANCES:
        inst_dir = os.path.join(reg_dir, name)
        storage = os.path.join(inst_dir, "storage")
        os.makedirs(storage, mode=0o700, exist_ok=True)
        port = base_port + offset
        config: dict = {
            "version": 0.1,
            "log": {
                "level": "warn",
                "formatter": "text",
                "accesslog": {"disabled": True},
                "fields": {"service": "fleet-lab-registry", "instance": name},
            },
            "storage": {
                "filesystem": {"rootdirectory": storage},
                "delete": {"enabled": True},
                "maintenance": {"uploadpurging": {"enabled": False}},
            },
            "http": {
                "addr": _hostport(bind_addr, port),
                "secret": creds["http_secret"],
                "headers": {"X-Content-Type-Options": ["nosniff"]},
            },
            "health": {"storagedriver": {"enabled": False}},
        }
        inputs = []
        if tls:
            config["http"]["tls"] = {"certificate": server.cert, "key": server.key}
            inputs += [server.cert, server.key]
        if auth == "basic":
            config["auth"] = {"htpasswd": {"realm": "fleet-lab", "path": htpasswd}}
            inputs.append(htpasswd)
        elif auth == "token":
            config["auth"] = {
                "token": {
                    "realm": realm,
                    "service": TOKEN_SERVICE,
                    "issuer": TOKEN_ISSUER,
                    "rootcertbundle": signer.cert,
                }
            }
            inputs.append(signer.cert)
        config_path = os.path.join(inst_dir, "config.yml")
        text = yaml.safe_dump(config, sort_keys=False).encode()
        procs.append(_Proc(
            name=name,
            argv=[binary, "serve", config_path],
            config_path=config_path,
            config_text=text,
            digest=_digest(text, inputs + [binary]),
            log_path=os.path.join(inst_dir, "registry.log"),
            host=bind_addr,
            port=port,
            probe_path="/v2/",
            cafile=ca_file if tls else None,
            env=env,
            cwd=inst_dir,
        ))
        scheme = "https" if tls else "http"
        infos.append(RegistryInfo(
            name=name,
            address=_hostport(bind_addr, port),
            url=f"{scheme}://{_hostport(bind_addr, port)}",
            auth=auth,
            tls=tls,
            ca_file=ca_file if tls else None,
            credentials_file=creds_file if auth != "none" else None,
            pid=0,
        ))

    token_dir = os.path.join(reg_dir, "token")
    ts_config = {
        "bind": bind_addr,
        "port": token_port,
        "issuer": TOKEN_ISSUER,
        "service": TOKEN_SERVICE,
        "htpasswd": htpasswd,
        "key": signer.key,
        "expires_in": 300,
    }
    ts_path = os.path.join(token_dir, "tokenserver.json")
    ts_text = json.dumps(ts_config, indent=2).encode()
    ts_env = dict(env)
    pkg_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    ts_env["PYTHONPATH"] = os.pathsep.join(
        p for p in (pkg_root, env.get("PYTHONPATH", "")) if p
    )
    tokenserver_src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tokenserver.py")
    procs.append(_Proc(
        name=TOKENSERVER,
        argv=[sys.executable, "-m", "fleet.lab.tokenserver", ts_path],
        config_path=ts_path,
        config_text=ts_text,
        digest=_digest(ts_text, [htpasswd, signer.key, tokenserver_src, sys.executable]),
        log_path=os.path.join(token_dir, "tokenserver.log"),
        host=bind_addr,
        port=token_port,
        probe_path="/healthz",
        cafile=None,
        env=ts_env,
        cwd=token_dir,
    ))
    return procs, infos


def _digest(text: bytes, paths: List[str]) -> str:
    h = hashlib.sha256(text)
    for path in paths:
        h.update(b"\0" + path.encode())
        with open(path, "rb") as f:
            h.update(hashlib.sha256(f.read()).digest())
    return h.hexdigest()


def _ensure_credentials(reg_dir: str) -> dict:
    path = os.path.join(reg_dir, "credentials.json")
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        if all(isinstance(data.get(k), str) and data[k]
               for k in ("username", "password", "http_secret")):
            if os.stat(path).st_mode & 0o077:
                os.chmod(path, 0o600)
            return data
    except (OSError, ValueError):
        pass
    data = {
        "username": USERNAME,
        "password": secrets.token_urlsafe(18),
        "http_secret": secrets.token_hex(32),
    }
    _atomic_write(path, (json.dumps(data, indent=2) + "\n").encode(), 0o600)
    return data


def _ensure_htpasswd(reg_dir: str, user: str, password: str) -> str:
    path = os.path.join(reg_dir, "htpasswd")
    try:
        with open(path, encoding="utf-8") as f:
            line = f.read().strip()
        name, _, hashed = line.partition(":")
        if name == user and "\n" not in line and bcrypt.checkpw(password.encode(), hashed.encode()):
            return path
    except (OSError, ValueError):
        pass
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=BCRYPT_ROUNDS)).decode()
    _atomic_write(path, f"{user}:{hashed}\n".encode(), 0o600)
    return path


# --- processes ----------------------------------------------------------------------------


def _spawn(proc: _Proc) -> int:
    """Start one process in its own session, output to its log; return its PID."""
    try:
        with open(proc.log_path, "wb") as log:
            child = subprocess.Popen(
                proc.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=proc.cwd,
                env=proc.env,
                start_new_session=True,
                close_fds=True,
            )
    except OSError as e:
        raise RegistryError(f"registry {proc.name}: cannot start {proc.argv[0]}: {e}") from None
    _CHILDREN[child.pid] = child
    return child.pid


def _wait_ready(procs: List[_Proc], pids: Dict[str, int]) -> None:
    """Wait until every process answers its probe; raise RegistryError for the first failure."""
    deadline = time.monotonic() + START_TIMEOUT
    pending = [p for p in procs]
    contexts: Dict[str, ssl.SSLContext] = {}
    while pending:
        for proc in list(pending):
            pid = pids[proc.name]
            if not _alive(pid):
                raise RegistryError(
                    f"registry {proc.name} on {_hostport(proc.host, proc.port)} exited at start: "
                    f"{_last_log_line(proc.log_path)}"
                )
            if proc.cafile and proc.name not in contexts:
                contexts[proc.name] = ssl.create_default_context(cafile=proc.cafile)
            # Probe only once our process listens: a server of someone else's on the
            # port must not pass for ours (ours then dies with "address already in use").
            if _listening(pid, proc.port) and _probe(proc, contexts.get(proc.name)):
                pending.remove(proc)
        if not pending:
            break
        if time.monotonic() > deadline:
            proc = pending[0]
            raise RegistryError(
                f"registry {proc.name} on {_hostport(proc.host, proc.port)} did not answer "
                f"within {START_TIMEOUT:.0f}s: {_last_log_line(proc.log_path)}"
            )
        time.sleep(0.02)


def _probe(proc: _Proc, context: Optional[ssl.SSLContext]) -> bool:
    if context is not None:
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(
            proc.host, proc.port, timeout=1.0, context=context
        )
    else:
        conn = http.client.HTTPConnection(proc.host, proc.port, timeout=1.0)
    try:
        conn.request("GET", proc.probe_path)
        status = conn.getresponse().status
    except ssl.SSLCertVerificationError as e:
        raise RegistryError(
            f"registry {proc.name} on {_hostport(proc.host, proc.port)}: TLS verification "
            f"with the lab CA failed: {e.verify_message}"
        ) from None
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()
    return status in (200, 401)


def _listening(pid: int, port: int) -> bool:
    """True when process PID holds a TCP socket listening on ``port`` (any address)."""
    inodes = set()
    for netfile in ("tcp", "tcp6"):
        try:
            with open(f"/proc/{pid}/net/{netfile}", encoding="ascii") as f:
                next(f, None)
                for line in f:
                    cols = line.split()
                    if len(cols) > 9 and cols[3] == "0A" and \
                            int(cols[1].rsplit(":", 1)[1], 16) == port:
                        inodes.add(cols[9])
        except OSError:
            continue
    if not inodes:
        return False
    wanted = {f"socket:[{inode}]" for inode in inodes}
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") in wanted:
                return True
        except OSError:
            continue
    return False


def _is_ours(pid: int, config_path: str) -> bool:
    """True when PID is a live process whose command line names config_path."""
    if pid <= 0 or not config_path:
        return False
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            args = f.read().split(b"\0")
    except OSError:
        return False
    return os.fsencode(config_path) in args and _alive(pid)


def _alive(pid: int) -> bool:
    """True when PID exists and is not a zombie (reaping our own children first)."""
    child = _CHILDREN.get(pid)
    if child is not None and child.poll() is not None:
        _CHILDREN.pop(pid, None)
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    state = stat[stat.rfind(b")") + 2:][:1]
    return state not in (b"Z", b"X", b"")


def _terminate(pids: List[int], configs: Dict[int, str]) -> None:
    """SIGTERM the given PIDs (if still ours), wait, SIGKILL what is left, wait."""
    for sig, timeout in ((signal.SIGTERM, STOP_TIMEOUT), (signal.SIGKILL, STOP_TIMEOUT)):
        targets = [pid for pid in pids if _is_ours(pid, configs.get(pid, ""))]
        if not targets:
            return
        for pid in targets:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not any(_alive(pid) for pid in targets):
                break
            time.sleep(0.01)
    still = [pid for pid in pids if _alive(pid)]
    if still:
        raise RegistryError(f"processes {still} did not exit after SIGKILL")


def _last_log_line(path: str) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 8192))
            lines = [ln.strip() for ln in f.read().decode("utf-8", "replace").splitlines()]
    except OSError:
        return f"(no log at {path})"
    lines = [ln for ln in lines if ln]
    if not lines:
        return f"(empty log {path})"
    return lines[-1][:400]


def _with_pid(info: RegistryInfo, pid: int, alive: bool) -> RegistryInfo:
    values = asdict(info)
    values.update(pid=pid, alive=alive)
    return RegistryInfo(**values)


# --- files --------------------------------------------------------------------------------


@contextlib.contextmanager
def _locked(reg_dir: str):
    fd = os.open(os.path.join(reg_dir, ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _load_state(reg_dir: str) -> dict:
    try:
        with open(os.path.join(reg_dir, "state.json"), encoding="utf-8") as f:
            state = json.load(f)
    except (OSError, ValueError):
        return {}
    if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
        return {}
    return state


def _save_state(
    reg_dir: str,
    bind_addr: str,
    base_port: int,
    procs: List[_Proc],
    pids: Dict[str, int],
    infos: List[RegistryInfo],
) -> None:
    state = {
        "version": STATE_VERSION,
        "bind_addr": bind_addr,
        "base_port": base_port,
        "processes": {
            p.name: {
                "pid": pids.get(p.name, 0),
                "config": p.config_path,
                "digest": p.digest if p.name in pids else "",
                "log": p.log_path,
                "address": _hostport(p.host, p.port),
            }
            for p in procs
        },
        "registries": [
            {k: v for k, v in asdict(_with_pid(i, pids.get(i.name, 0), True)).items()
             if k != "alive"}
            for i in infos
        ],
    }
    _atomic_write(os.path.join(reg_dir, "state.json"),
                  (json.dumps(state, indent=2) + "\n").encode(), 0o644)


def _write_if_changed(path: str, data: bytes, mode: int) -> None:
    try:
        with open(path, "rb") as f:
            if f.read() == data:
                return
    except OSError:
        pass
    _atomic_write(path, data, mode)


def _atomic_write(path: str, data: bytes, mode: int) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def _validate_bind(bind_addr: str) -> None:
    try:
        ipaddress.ip_address(bind_addr)
    except ValueError:
        raise RegistryError(f"bind address {bind_addr!r} is not an IP address") from None

"""The demo's images, built once from Debian bookworm packages and pushed to the lab.

``build_demo_images(CACHE)`` makes three images that share one base layer:

==============  ===========================================  ================================
image           the layer on top of the base                 runs
==============  ===========================================  ================================
demo/postgres   postgresql-15 (and postgresql-common)        initdb on first start, postgres
demo/redis      redis-server                                 redis-server as user redis
demo/web        python3, /app/web.py (and its bytecode)      the web app of
                                                             ``fleet/lab/demo_web.py``
==============  ===========================================  ================================

The base is ``debootstrap --variant=minbase bookworm`` brought up to date from
bookworm-updates and bookworm-security, then slimmed as Docker's slim images are: no
documentation but the copyright files, no man or info pages, no locales, no apt lists or
package caches, no logs; dpkg is told to leave those out of later installs too. Each
image's layer is the difference between the base and a copy of it in which apt-get
installed the image's packages (in a chroot inside its own mount and PID namespaces, so
its /proc and /dev mounts end with it): added and changed paths with their owners and
modes, hardlinks kept, ``.wh.`` whiteouts for paths the install removed.

Output is deterministic for a given state of the mirror: tar entries sorted, numeric
owners, modification times clamped to the newest Release date of the suites used (so
package files keep theirs and files made during the build get that date), gzip with a
fixed header, canonical JSON, Perl's and Python's hash seeds fixed in the chroot, the
snakeoil key that ssl-cert generates removed, and /etc/shadow's password-change days set
to the same date.

Everything is cached under ``CACHE`` (default /var/cache/fleet-demo, mode 0700): the
base rootfs per base key, each layer per image key (keys hash ``DEMO_VERSION``, the
mirrors, the architecture and each recipe: packages, script, files, config, so editing
``demo_web.py`` rebuilds only the web layer), downloaded .debs, and an OCI image
layout (``CACHE/oci``, refs ``demo-postgres``, ``demo-redis``, ``demo-web``). A run that
finds everything built returns at once. Change ``DEMO_VERSION`` when the build itself
changes. Logs of each step are in ``CACHE/logs``.

``push_demo_images(STATE, registries)`` builds (cached) and pushes the images with skopeo
to each registry as ``demo/postgres:latest``, ``demo/redis:latest`` and
``demo/web:latest``; ``STATE/demo/pushed.json`` records what went where, so a second
push does nothing. ``python3 -m fleet.lab.demo_images`` does both for the lab named by
``FLEET_LAB_DIR`` (root; needs debootstrap, skopeo and a Debian mirror).
"""

from __future__ import annotations

import contextlib
import email.utils
import fcntl
import hashlib
import json
import os
import re
import shutil
import stat
import struct
import subprocess
import tarfile
import time
import zlib
from dataclasses import asdict, dataclass, field
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from fleet.lab.imagefiles import canonical_json as _json
from fleet.lab.imagefiles import digest_of as _sha
from fleet.lab.imagefiles import read_json as _read_json
from fleet.lab.imagefiles import write_bytes as _write
from fleet.lab.imagefiles import write_json as _write_json
from fleet.lab.registries import RegistryInfo
from fleet.lab.seed_images import (
    MT_OCI_CONFIG,
    MT_OCI_INDEX,
    MT_OCI_LAYER,
    MT_OCI_MANIFEST,
    push_images,
)

DEMO_VERSION = "1"
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
SECURITY_MIRROR = "http://deb.debian.org/debian-security"
DEFAULT_CACHE_DIR = "/var/cache/fleet-demo"
TAG = "latest"
# The lab demo's database password: POSTGRES_PASSWORD's default in demo/postgres and
# DB_PASSWORD's in demo/web (see demo_web.DEFAULT_PASSWORD).
DEFAULT_PASSWORD = "demo"
FALLBACK_EPOCH = 1704067200  # 2024-01-01, when no Release date can be read
GZIP_LEVEL = 6
STEP_TIMEOUT = 1800
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


# Debian architecture -> (GOARCH, variant)
DEBIAN_ARCHES = {
    "amd64": ("amd64", None),
    "arm64": ("arm64", "v8"),
    "armhf": ("arm", "v7"),
    "armel": ("arm", "v5"),
    "i386": ("386", None),
    "ppc64el": ("ppc64le", None),
    "s390x": ("s390x", None),
    "riscv64": ("riscv64", None),
    "mips64el": ("mips64le", None),
}

Progress = Callable[[str], None]


class DemoImageError(Exception):
    """A demo image could not be built or pushed (one line; names the log to read)."""


@dataclass(frozen=True)
class DemoImage:
    """A built demo image in the cache's OCI layout."""

    repo: str  # "demo/postgres"
    tag: str
    digest: str  # of the manifest
    media_type: str
    layout: str  # the OCI layout directory
    name: str  # its ref name in the layout ("demo-postgres")
    config: str  # config blob digest
    layers: Tuple[str, ...]  # layer blob digests, base first
    size: int  # compressed: manifest + config + layers
    unpacked: int  # uncompressed layer tars

    @property
    def ref(self) -> str:
        """``repo:tag``."""
        return f"{self.repo}:{self.tag}"

    @property
    def source(self) -> str:
        """skopeo's source reference of the image."""
        return f"oci:{self.layout}:{self.name}"


# --- what goes into the images ---------------------------------------------------------------

SLIM_DPKG_CFG = b"""\
# fleet demo images: no documentation, manuals or translations (as Docker's slim images)
path-exclude=/usr/share/doc/*
path-include=/usr/share/doc/*/copyright
path-exclude=/usr/share/man/*
path-exclude=/usr/share/info/*
path-exclude=/usr/share/groff/*
path-exclude=/usr/share/lintian/*
path-exclude=/usr/share/linda/*
path-exclude=/usr/share/locale/*
path-include=/usr/share/locale/locale.alias
"""
SLIM_APT_CONF = b"""\
// fleet demo images: what an image needs, nothing recommended
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Acquire::Languages "none";
"""
POLICY_RC_D = b"#!/bin/sh\n# no services start while an image is built\nexit 101\n"
# Contents removed from these directories (the directories stay).
SLIM_DIRS = ("usr/share/man", "usr/share/info", "usr/share/groff", "usr/share/lintian",
             "usr/share/linda", "usr/share/locale", "dev", "tmp", "var/tmp",
             "var/log/apt", "var/lib/apt/lists", "var/cache/apt/archives", "run/mount")
SLIM_KEEP = ("usr/share/locale/locale.alias", "var/lib/apt/lists/partial",
             "var/cache/apt/archives/partial", "var/cache/apt/archives/lock")
SLIM_FILES = ("etc/resolv.conf", "etc/hostname", "etc/machine-id", "etc/passwd-",
              "etc/group-", "etc/shadow-", "etc/gshadow-", "etc/subuid-", "etc/subgid-",
              "var/cache/ldconfig/aux-cache", "var/cache/apt/pkgcache.bin",
              "var/cache/apt/srcpkgcache.bin", "var/log/dpkg.log", "var/log/alternatives.log",
              "var/log/bootstrap.log", "usr/sbin/policy-rc.d", "run/adduser")
SLIM_GLOBS = (("var/cache/debconf", "-old"), ("var/lib/dpkg", "-old"))

CHROOT_ENV = (
    PATH_ENV, "HOME=/root", "LANG=C.UTF-8", "TZ=UTC", "DEBIAN_FRONTEND=noninteractive",
    "DEBCONF_NONINTERACTIVE_SEEN=true", "PYTHONHASHSEED=0", "PERL_HASH_SEED=0",
    "PERL_PERTURB_KEYS=0",
)
APT = ("apt-get -q -y -o Dpkg::Options::=--force-confdef "
       "-o Dpkg::Options::=--force-confold")

# Run by unshare in new mount and PID namespaces: /proc, a small /dev and the .deb cache
# are mounted for the chroot and vanish with the namespace.
_NAMESPACE_SCRIPT = r"""
set -eu
root=$1; debs=$2; shift 2
mount -t proc proc "$root/proc"
mount -t tmpfs -o mode=0755,size=8m,nosuid tmpfs "$root/dev"
for node in null zero full random urandom tty; do
    : > "$root/dev/$node"
    mount --bind "/dev/$node" "$root/dev/$node"
done
mkdir "$root/dev/pts" "$root/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts "$root/dev/pts"
ln -s pts/ptmx "$root/dev/ptmx"
ln -s /proc/self/fd "$root/dev/fd"
if [ -n "$debs" ]; then mount --bind "$debs" "$root/var/cache/apt/archives"; fi
exec chroot "$root" "$@"
"""

POSTGRES_ENTRYPOINT = r"""#!/bin/sh
# demo/postgres: as root, make PGDATA the postgres user's; as postgres, initialise it
# on the first start (POSTGRES_PASSWORD, POSTGRES_USER, POSTGRES_DB), then run postgres.
set -eu
: "${PGDATA:=/var/lib/postgresql/data}"
export PGDATA
if [ "$#" -eq 0 ] || [ "${1#-}" != "$1" ]; then
    set -- postgres "$@"
fi
want_help=
for arg; do
    case "$arg" in
        -'?'|--help|--describe-config|-C|-V|--version) want_help=1 ;;
    esac
done
if [ "$1" = postgres ] && [ -z "$want_help" ] && [ "$(id -u)" = 0 ]; then
    mkdir -p "$PGDATA" /run/postgresql
    find "$PGDATA" \! -user postgres -exec chown postgres:postgres '{}' +
    chmod 700 "$PGDATA"
    chown postgres:postgres /run/postgresql
    chmod 2775 /run/postgresql
    exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi
if [ "$1" = postgres ] && [ -z "$want_help" ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
    user="${POSTGRES_USER:-postgres}"
    db="${POSTGRES_DB:-$user}"
    pwfile=$(mktemp)
    trap 'rm -f "$pwfile"' EXIT
    printf '%s\n' "${POSTGRES_PASSWORD:-@PASSWORD@}" > "$pwfile"
    initdb --username="$user" --pwfile="$pwfile" --auth-local=trust \
        --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8
    rm -f "$pwfile"
    trap - EXIT
    printf "\n# fleet demo\nlisten_addresses = '*'\n" >> "$PGDATA/postgresql.conf"
    printf '\n# fleet demo: any address, with a password\nhost all all all scram-sha-256\n' \
        >> "$PGDATA/pg_hba.conf"
    if [ "$db" != postgres ]; then
        quote() { printf '"%s"' "$(printf '%s' "$1" | sed 's/"/""/g')"; }
        echo "CREATE DATABASE $(quote "$db") OWNER $(quote "$user");" \
            | postgres --single -D "$PGDATA" postgres > /dev/null
    fi
    echo "fleet demo: PostgreSQL initialised in $PGDATA"
fi
exec "$@"
""".replace("@PASSWORD@", DEFAULT_PASSWORD)

REDIS_DEFAULT_ARGS = ("--protected-mode", "no", "--bind", "0.0.0.0", "--dir", "/data")
REDIS_ENTRYPOINT = r"""#!/bin/sh
# demo/redis: as root, make /data the redis user's, then run redis-server as redis.
set -eu
if [ "$#" -eq 0 ] || [ "${1#-}" != "$1" ]; then
    set -- redis-server @ARGS@ "$@"
fi
if [ "$1" = redis-server ] && [ "$(id -u)" = 0 ]; then
    find /data \! -user redis -exec chown redis:redis '{}' +
    exec setpriv --reuid=redis --regid=redis --init-groups "$0" "$@"
fi
exec "$@"
""".replace("@ARGS@", " ".join(REDIS_DEFAULT_ARGS))

ENTRYPOINT_PATH = "usr/local/bin/docker-entrypoint.sh"
WEB_APP_PATH = "app/web.py"
# The container's command: a script run directly is compiled from source on every start
# (web.py: about 5 ms of each replica's), a module imported comes from its bytecode.
WEB_MAIN_PATH = "app/main.py"
WEB_MAIN = b"""\
\"\"\"Runs the demo web app, web.py, imported from the bytecode the image carries.\"\"\"
import sys

import web

sys.exit(web.main(sys.argv[1:]))
"""
_SECOND = 1_000_000_000  # image healthcheck durations are in nanoseconds


def _healthcheck(test: Sequence[str]) -> dict:
    return {"Test": ["CMD", *test], "Interval": 10 * _SECOND, "Timeout": 5 * _SECOND,
            "StartPeriod": 30 * _SECOND, "Retries": 3}


@dataclass(frozen=True)
class Recipe:
    """How one image's layer is made from the base, and its container config."""

    name: str  # "postgres": the layout's ref is demo-NAME, the image demo/NAME
    packages: Tuple[str, ...]  # the packages the layer is for (labels, versions)
    script: str  # shell run in the chroot after apt-get update (set -eux)
    files: Tuple[Tuple[str, bytes, int], ...]  # (path, content, mode), root's, added after
    config: dict = field(default_factory=dict, hash=False)  # the image's container config
    description: str = ""
    after: str = ""  # shell run in the chroot once the files are in (set -eux)

    @property
    def repo(self) -> str:
        return f"demo/{self.name}"

    def fingerprint(self) -> dict:
        """Everything the layer and config are made from, for the cache key."""
        return {"name": self.name, "packages": list(self.packages), "script": self.script,
                "files": [[path, hashlib.sha256(data).hexdigest(), mode]
                          for path, data, mode in self.files],
                "config": self.config, "description": self.description,
                "after": self.after}


def web_app_source() -> bytes:
    """The web app's source (fleet/lab/demo_web.py), which becomes /app/web.py."""
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "demo_web.py"),
              "rb") as f:
        return f.read()


def recipes() -> List[Recipe]:
    """The three demo images: postgres, redis, web."""
    return [
        Recipe(
            name="postgres",
            packages=("postgresql-15", "postgresql-common"),
            script=(
                f"{APT} install postgresql-common\n"
                # the image makes its cluster at first start, in PGDATA
                "sed -ri 's/^#?[[:space:]]*create_main_cluster[[:space:]]*=.*$/"
                "create_main_cluster = false/' /etc/postgresql-common/createcluster.conf\n"
                "grep -qx 'create_main_cluster = false' "
                "/etc/postgresql-common/createcluster.conf\n"
                f"{APT} install postgresql-15\n"
                # ssl-cert's snakeoil key: random, and the same in every container
                "rm -f /etc/ssl/private/ssl-cert-snakeoil.key "
                "/etc/ssl/certs/ssl-cert-snakeoil.pem\n"
                "find /etc/ssl/certs -xtype l -delete\n"
                "install -d -o postgres -g postgres -m 0700 /var/lib/postgresql/data\n"
                "install -d -o postgres -g postgres -m 2775 /run/postgresql\n"
            ),
            files=((ENTRYPOINT_PATH, POSTGRES_ENTRYPOINT.encode(), 0o755),),
            config={
                "Entrypoint": ["/" + ENTRYPOINT_PATH],
                "Cmd": ["postgres"],
                "Env": ["PATH=/usr/lib/postgresql/15/bin:" + PATH_ENV[5:],
                        "LANG=C.UTF-8", "PGDATA=/var/lib/postgresql/data"],
                "ExposedPorts": {"5432/tcp": {}},
                "Volumes": {"/var/lib/postgresql/data": {}},
                "StopSignal": "SIGINT",
                "Healthcheck": _healthcheck(["pg_isready", "-q", "-h", "127.0.0.1"]),
            },
            description="PostgreSQL 15 from Debian bookworm (fleet lab demo)",
        ),
        Recipe(
            name="redis",
            packages=("redis-server", "redis-tools"),
            script=(
                f"{APT} install redis-server\n"
                "install -d -o redis -g redis -m 0750 /data\n"
            ),
            files=((ENTRYPOINT_PATH, REDIS_ENTRYPOINT.encode(), 0o755),),
            config={
                "Entrypoint": ["/" + ENTRYPOINT_PATH],
                "Cmd": ["redis-server", *REDIS_DEFAULT_ARGS],
                "Env": [PATH_ENV, "LANG=C.UTF-8"],
                "ExposedPorts": {"6379/tcp": {}},
                "Volumes": {"/data": {}},
                "WorkingDir": "/data",
                "Healthcheck": _healthcheck(["redis-cli", "ping"]),
            },
            description="Redis from Debian bookworm (fleet lab demo)",
        ),
        Recipe(
            name="web",
            packages=("python3",),
            script=f"{APT} install python3\n",
            files=((WEB_APP_PATH, web_app_source(), 0o644), (WEB_MAIN_PATH, WEB_MAIN, 0o644)),
            # Hash-checked bytecode: the layer's clamped modification times would make
            # timestamp-checked .pyc files look stale.
            after="python3 -m compileall -q --invalidation-mode checked-hash /app\n",
            config={
                # -S: the app needs only the standard library, not site's start-up
                "Cmd": ["python3", "-S", "/" + WEB_MAIN_PATH],
                "Env": [PATH_ENV, "LANG=C.UTF-8", "PYTHONUNBUFFERED=1"],
                "ExposedPorts": {"80/tcp": {}},
                "WorkingDir": "/app",
                "Healthcheck": _healthcheck(["python3", "-S", "/" + WEB_MAIN_PATH,
                                             "--check"]),
            },
            description="A Python web app on PostgreSQL and Redis (fleet lab demo)",
        ),
    ]


# --- public API ------------------------------------------------------------------------------


def build_demo_images(cache_dir: str = DEFAULT_CACHE_DIR, mirror: str = MIRROR,
                      security_mirror: str = SECURITY_MIRROR,
                      on_progress: Optional[Progress] = None) -> List[DemoImage]:
    """Build (or find in ``cache_dir``) demo/postgres, demo/redis and demo/web.

    Needs root, debootstrap, unshare and chroot, and the mirror. Returns the images in
    that order; their ``source`` is what skopeo copies from. Raises DemoImageError.
    """
    step = on_progress or (lambda text: None)
    cache_dir = os.path.abspath(cache_dir)
    try:
        os.makedirs(cache_dir, mode=0o700, exist_ok=True)
        os.chmod(cache_dir, 0o700)  # the rootfs trees hold setuid programs
    except OSError as e:
        raise DemoImageError(f"cannot use {cache_dir} as the demo image cache: "
                             f"{e.strerror}") from None
    with _locked(os.path.join(cache_dir, ".lock")):
        return _Builder(cache_dir, mirror, security_mirror, step).build()


def push_demo_images(state_dir: str, registries: List[RegistryInfo],
                     cache_dir: str = DEFAULT_CACHE_DIR,
                     on_progress: Optional[Progress] = None, **build_options
                     ) -> List[DemoImage]:
    """Build the demo images (cached) and push them with skopeo to every registry.

    ``registries`` as ``fleet.lab.registries`` describes them (plain, basic over TLS,
    token). ``STATE/demo/pushed.json`` records the digests pushed per registry; an image
    recorded there whose tag is still in the registry's storage is not pushed again.
    Returns the images; raises DemoImageError naming the image and registry.
    """
    step = on_progress or (lambda text: None)
    images = build_demo_images(cache_dir, on_progress=step, **build_options)
    demo_dir = os.path.join(os.path.abspath(state_dir), "demo")
    os.makedirs(demo_dir, mode=0o700, exist_ok=True)
    with _locked(os.path.join(demo_dir, ".lock")):
        if not push_images(os.path.abspath(state_dir), demo_dir, registries, images,
                           lambda image: image.source, DemoImageError, step):
            step("demo images: already in " + ", ".join(r.name for r in registries))
    return images


# --- trees and layers (no root needed) -----------------------------------------------------


@dataclass(frozen=True)
class Layer:
    """A layer blob: tar digest (diff id), gzip digest and size, tar size."""

    diff_id: str
    digest: str
    size: int
    unpacked: int


def diff_trees(base: Optional[str], new: str) -> List[Tuple[str, bool]]:
    """The entries of the layer that turns tree ``base`` into tree ``new``.

    Returns (relative path, whiteout) pairs in tar order: parents before children,
    whiteouts first among siblings. A path is in the layer when it is new, changed in
    type, mode, owner, content, link target or device, or a directory above such a
    path; ``whiteout`` marks a path of ``base`` that ``new`` lacks (written as
    ``.wh.NAME``; a removed directory is one whiteout). Modification times alone do not
    count. ``base`` None: every path of ``new``.
    """
    emitted, removed = set(), set()

    def walk(rel: str, base_is_dir: bool) -> None:
        names = sorted(os.listdir(os.path.join(new, rel)))
        base_names = set(os.listdir(os.path.join(base, rel))) if base_is_dir else set()
        for gone in base_names.difference(names):
            removed.add(_join(rel, gone))
        for name in names:
            path = _join(rel, name)
            st = os.lstat(os.path.join(new, path))
            old = os.lstat(os.path.join(base, path)) if name in base_names else None
            if stat.S_ISDIR(st.st_mode):
                both_dirs = old is not None and stat.S_ISDIR(old.st_mode)
                if not both_dirs or _meta(st) != _meta(old):
                    emitted.add(path)
                walk(path, both_dirs)
            elif old is None or _differs(os.path.join(base, path), old,
                                         os.path.join(new, path), st):
                emitted.add(path)

    walk("", base is not None)
    for path in list(emitted) + list(removed):
        parent = os.path.dirname(path)
        while parent and parent not in emitted:
            emitted.add(parent)
            parent = os.path.dirname(parent)
    entries = [(path, False) for path in emitted] + [(path, True) for path in removed]
    return sorted(entries, key=lambda entry: _sort_key(_tar_name(*entry)))


def _join(rel: str, name: str) -> str:
    return f"{rel}/{name}" if rel else name


def _meta(st: os.stat_result) -> Tuple[int, int, int, int]:
    return stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid


def _differs(old_path: str, old: os.stat_result, new_path: str, new: os.stat_result) -> bool:
    if _meta(old) != _meta(new) or _capability(old_path) != _capability(new_path):
        return True
    if stat.S_ISLNK(new.st_mode):
        return os.readlink(old_path) != os.readlink(new_path)
    if stat.S_ISCHR(new.st_mode) or stat.S_ISBLK(new.st_mode):
        return old.st_rdev != new.st_rdev
    if stat.S_ISREG(new.st_mode):
        return old.st_size != new.st_size or not _same_content(old_path, new_path)
    return False


def _same_content(a: str, b: str) -> bool:
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            chunk = fa.read(1 << 20)
            if chunk != fb.read(1 << 20):
                return False
            if not chunk:
                return True


def _capability(path: str) -> Optional[bytes]:
    """The file's security.capability xattr (file capabilities), if any."""
    try:
        return os.getxattr(path, "security.capability", follow_symlinks=False)
    except OSError:
        return None


def _tar_name(path: str, whiteout: bool) -> str:
    if not whiteout:
        return path
    parent, name = os.path.split(path)
    return _join(parent, ".wh." + name)


def _sort_key(path: str):
    return tuple((0 if part.startswith(".wh.") else 1, part) for part in path.split("/"))


class _LayerStream:
    """A file object for tarfile: gzips what it is given into ``out`` with a fixed
    header, hashing the tar and the gzip as they go."""

    def __init__(self, out) -> None:
        self.out = out
        self.tar_hash, self.gz_hash = hashlib.sha256(), hashlib.sha256()
        self.compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS)
        self.crc = 0
        self.tar_size = self.gz_size = 0
        # magic, deflate, no flags, mtime 0, no extra flags, OS unknown
        self._emit(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff")

    def write(self, data) -> int:
        data = bytes(data)
        self.tar_hash.update(data)
        self.crc = zlib.crc32(data, self.crc)
        self.tar_size += len(data)
        self._emit(self.compressor.compress(data))
        return len(data)

    def tell(self) -> int:
        return self.tar_size

    def finish(self) -> Layer:
        self._emit(self.compressor.flush())
        self._emit(struct.pack("<II", self.crc & 0xFFFFFFFF, self.tar_size & 0xFFFFFFFF))
        return Layer("sha256:" + self.tar_hash.hexdigest(),
                     "sha256:" + self.gz_hash.hexdigest(), self.gz_size, self.tar_size)

    def _emit(self, data: bytes) -> None:
        if data:
            self.gz_hash.update(data)
            self.gz_size += len(data)
            self.out.write(data)


def write_layer(root: str, entries: Iterable[Tuple[str, bool]], out, epoch: int) -> Layer:
    """Write the entries of tree ``root`` (as ``diff_trees`` gives them) to the binary
    file ``out`` as a gzipped tar layer; return its digests and sizes.

    Numeric owners only, modification times clamped to ``epoch``, files that share an
    inode as hardlinks to the first of them, whiteouts as empty ``.wh.NAME`` files,
    file capabilities as SCHILY.xattr records; sockets are left out.
    """
    stream = _LayerStream(out)
    seen_inodes: Dict[Tuple[int, int], str] = {}
    with tarfile.open(fileobj=stream, mode="w", format=tarfile.PAX_FORMAT,
                      encoding="utf-8") as tar:
        for path, whiteout in entries:
            info = tarfile.TarInfo(_tar_name(path, whiteout))
            info.uname = info.gname = ""
            if whiteout:
                info.mtime, info.mode = epoch, 0o644
                tar.addfile(info)
                continue
            full = os.path.join(root, path)
            st = os.lstat(full)
            info.mode = stat.S_IMODE(st.st_mode)
            info.uid, info.gid = st.st_uid, st.st_gid
            info.mtime = min(int(st.st_mtime), epoch)
            content = None
            if stat.S_ISDIR(st.st_mode):
                info.type = tarfile.DIRTYPE
            elif stat.S_ISLNK(st.st_mode):
                info.type = tarfile.SYMTYPE
                info.linkname = os.readlink(full)
            elif stat.S_ISREG(st.st_mode):
                inode = (st.st_dev, st.st_ino)
                if st.st_nlink > 1 and inode in seen_inodes:
                    info.type = tarfile.LNKTYPE
                    info.linkname = seen_inodes[inode]
                else:
                    seen_inodes[inode] = path
                    info.type = tarfile.REGTYPE
                    info.size = st.st_size
                    content = full
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                info.type = tarfile.CHRTYPE if stat.S_ISCHR(st.st_mode) else tarfile.BLKTYPE
                info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
            elif stat.S_ISFIFO(st.st_mode):
                info.type = tarfile.FIFOTYPE
            else:
                continue
            capability = _capability(full)
            if capability is not None and info.type != tarfile.SYMTYPE:
                info.pax_headers = {"SCHILY.xattr.security.capability":
                                    capability.decode("utf-8", "surrogateescape")}
            if content is None:
                tar.addfile(info)
            else:
                with open(content, "rb") as f:
                    tar.addfile(info, f)
    return stream.finish()


def slim_tree(root: str, shadow_day: Optional[int] = None) -> None:
    """Take out of rootfs ``root`` what an image does without (see the module's note)
    and, given ``shadow_day``, set /etc/shadow's last-change days to it."""
    for rel in SLIM_DIRS:
        directory = os.path.join(root, rel)
        if not os.path.isdir(directory) or os.path.islink(directory):
            continue
        for name in os.listdir(directory):
            if _join(rel, name) not in SLIM_KEEP:
                _remove(os.path.join(directory, name))
    for rel in ("var/lib/apt/lists/partial", "var/cache/apt/archives/partial"):
        directory = os.path.join(root, rel)
        if os.path.isdir(directory) and not os.path.islink(directory):
            for name in os.listdir(directory):
                _remove(os.path.join(directory, name))
    for rel in SLIM_FILES:
        path = os.path.join(root, rel)
        if os.path.lexists(path) and not os.path.isdir(path):
            os.unlink(path)
    for rel, suffix in SLIM_GLOBS:
        directory = os.path.join(root, rel)
        for name in os.listdir(directory) if os.path.isdir(directory) else []:
            if name.endswith(suffix):
                _remove(os.path.join(directory, name))
    _slim_docs(os.path.join(root, "usr/share/doc"))
    if shadow_day is not None:
        normalize_shadow(os.path.join(root, "etc/shadow"), shadow_day)


def _slim_docs(doc: str) -> None:
    """Keep only the copyright file of each package's documentation."""
    if not os.path.isdir(doc) or os.path.islink(doc):
        return
    for name in os.listdir(doc):
        path = os.path.join(doc, name)
        if os.path.islink(path) or not os.path.isdir(path):
            os.unlink(path)
            continue
        for inner in os.listdir(path):
            inner_path = os.path.join(path, inner)
            if not (inner == "copyright" and os.path.isfile(inner_path)
                    and not os.path.islink(inner_path)):
                _remove(inner_path)
        if not os.listdir(path):
            os.rmdir(path)


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    else:
        os.unlink(path)


def normalize_shadow(path: str, day: int) -> None:
    """Set the last-change field of every /etc/shadow entry that has one to ``day``
    (days since 1970), keeping the file's inode, owner and mode."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        return
    lines = []
    for line in text.splitlines(keepends=True):
        fields = line.rstrip("\n").split(":")
        if len(fields) >= 3 and fields[2]:
            fields[2] = str(day)
            line = ":".join(fields) + ("\n" if line.endswith("\n") else "")
        lines.append(line)
    updated = "".join(lines)
    if updated != text:
        with open(path, "r+", encoding="utf-8") as f:
            f.write(updated)
            f.truncate()


def release_epoch(lists_dir: str) -> Optional[int]:
    """The newest ``Date:`` of the Release files apt fetched into ``lists_dir``."""
    newest = None
    names = os.listdir(lists_dir) if os.path.isdir(lists_dir) else []
    for name in sorted(names):
        if not (name.endswith("_InRelease") or name.endswith("_Release")):
            continue
        with open(os.path.join(lists_dir, name), encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("Date:"):
                    try:
                        when = int(email.utils.parsedate_to_datetime(
                            line[5:].strip()).timestamp())
                    except (TypeError, ValueError):
                        break
                    newest = when if newest is None else max(newest, when)
                    break
                if line.startswith(("MD5Sum:", "SHA256:", "-----BEGIN PGP SIGNATURE")):
                    break  # past the header fields (an InRelease starts with PGP's)
    return newest


def package_versions(status_path: str, packages: Iterable[str]) -> Dict[str, str]:
    """{package: version} of the installed ``packages`` in a dpkg status file."""
    wanted, found = set(packages), {}
    with open(status_path, encoding="utf-8", errors="replace") as f:
        stanzas = f.read().split("\n\n")
    for stanza in stanzas:
        fields = dict(re.findall(r"^([A-Za-z-]+): ?(.*)$", stanza, re.MULTILINE))
        if fields.get("Package") in wanted and \
                fields.get("Status", "").endswith(" installed"):
            found[fields["Package"]] = fields.get("Version", "")
    return found


# --- configs and manifests ----------------------------------------------------------------






def _iso(epoch: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def image_config(recipe: Recipe, arch: str, variant: Optional[str],
                 layers: Sequence[dict]) -> bytes:
    """The image's OCI config (canonical JSON). ``layers``: the base's record, then the
    image's: {diff_id, epoch, created_by, versions}."""
    versions = {}
    for layer in layers:
        versions.update(layer.get("versions") or {})
    container = json.loads(json.dumps(recipe.config))
    labels = {
        "org.opencontainers.image.title": recipe.repo,
        "org.opencontainers.image.description": recipe.description,
        "org.opencontainers.image.base.name": f"debian:{SUITE} (debootstrap minbase)",
    }
    if recipe.packages and recipe.packages[0] in versions:
        labels["org.opencontainers.image.version"] = versions[recipe.packages[0]]
    if versions:
        labels["io.fleet.demo.packages"] = " ".join(
            f"{name}={versions[name]}" for name in sorted(versions))
    container["Labels"] = dict(container.get("Labels") or {}, **labels)
    config = {
        "architecture": arch,
        "os": "linux",
        "created": _iso(max(layer["epoch"] for layer in layers)),
        "config": container,
        "rootfs": {"type": "layers", "diff_ids": [layer["diff_id"] for layer in layers]},
        "history": [{"created": _iso(layer["epoch"]), "created_by": layer["created_by"]}
                    for layer in layers],
    }
    if variant:
        config["variant"] = variant
    return _json(config)


def image_manifest(config: bytes, layers: Sequence[dict]) -> bytes:
    """An OCI image manifest (canonical JSON) of a config and layer records
    ({digest, size})."""
    return _json({
        "schemaVersion": 2,
        "mediaType": MT_OCI_MANIFEST,
        "config": {"mediaType": MT_OCI_CONFIG, "digest": _sha(config), "size": len(config)},
        "layers": [{"mediaType": MT_OCI_LAYER, "digest": layer["digest"],
                    "size": layer["size"]} for layer in layers],
    })


def cache_keys(mirror: str, security_mirror: str, debian_arch: str,
               image_recipes: Sequence[Recipe]) -> Tuple[str, Dict[str, str]]:
    """(base key, {image name: layer key}): what the cache is keyed by."""
    base = _key({"version": DEMO_VERSION, "suite": SUITE, "mirror": mirror,
                 "security": security_mirror, "arch": debian_arch,
                 "dpkg": SLIM_DPKG_CFG.decode(), "apt": SLIM_APT_CONF.decode()})
    return base, {r.name: _key({"base": base, "recipe": r.fingerprint()})
                  for r in image_recipes}


def _key(obj) -> str:
    return hashlib.sha256(_json(obj)).hexdigest()[:16]


def debian_platform() -> Tuple[str, str, Optional[str]]:
    """(Debian architecture, GOARCH, variant) of this machine."""
    try:
        arch = subprocess.run(["dpkg", "--print-architecture"], capture_output=True,
                              text=True, check=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        raise DemoImageError("cannot tell this machine's Debian architecture "
                             "(dpkg --print-architecture failed)") from None
    if arch not in DEBIAN_ARCHES:
        raise DemoImageError(f"architecture {arch} is not supported by the demo images")
    return (arch, *DEBIAN_ARCHES[arch])


# --- building ---------------------------------------------------------------------------------


class _Builder:
    def __init__(self, cache: str, mirror: str, security_mirror: str, step: Progress):
        self.cache, self.mirror, self.security = cache, mirror, security_mirror
        self.step = step
        self.layout = os.path.join(cache, "oci")
        self.blobs = os.path.join(self.layout, "blobs", "sha256")
        self.logs = os.path.join(cache, "logs")
        self.debs = os.path.join(cache, "debs")

    def build(self) -> List[DemoImage]:
        self.debian_arch, self.arch, self.variant = debian_platform()
        image_recipes = recipes()
        base_key, keys = cache_keys(self.mirror, self.security, self.debian_arch,
                                    image_recipes)
        index_key = _key({"base": base_key, "images": keys})
        record_path = os.path.join(self.cache, "images.json")
        record = _read_json(record_path, {})
        if record.get("key") == index_key:
            try:
                images = [DemoImage(**dict(item, layers=tuple(item["layers"])))
                          for item in record.get("images", [])]
            except (TypeError, KeyError):
                images = []
            if images and all(self._have(image) for image in images):
                self.step("demo images: up to date in " + self.cache)
                return images
        for path in (self.blobs, self.logs, os.path.join(self.debs, "partial"),
                     os.path.join(self.cache, "layers")):
            os.makedirs(path, exist_ok=True)
        _check_tools()
        base = self._base(base_key)
        layers = {r.name: self._image_layer(base, r, keys[r.name]) for r in image_recipes}
        images = [self._assemble(r, base, layers[r.name]) for r in image_recipes]
        self._write_index(images)
        _write_json(record_path, {"key": index_key,
                                  "images": [asdict(image) for image in images]})
        self._prune(images, base_key, keys)
        return images

    def _have(self, image: DemoImage) -> bool:
        return all(os.path.exists(self._blob_path(d))
                   for d in (image.digest, image.config, *image.layers))

    def _blob_path(self, digest: str) -> str:
        return os.path.join(self.blobs, digest.split(":", 1)[1])

    # base -----------------------------------------------------------------------------

    def _base(self, key: str) -> dict:
        directory = os.path.join(self.cache, "base-" + key)
        rootfs = os.path.join(directory, "rootfs")
        info = _read_json(os.path.join(directory, "layer.json"), None)
        if info and os.path.isdir(rootfs) and os.path.exists(self._blob_path(info["digest"])):
            return dict(info, rootfs=rootfs)
        _rmtree(directory)
        # layers were diffed against the tree made before: make them again too
        layers_dir = os.path.join(self.cache, "layers")
        for name in os.listdir(layers_dir):
            os.unlink(os.path.join(layers_dir, name))
        partial = directory + ".partial"
        _rmtree(partial)
        os.makedirs(partial, mode=0o700)
        tree = os.path.join(partial, "rootfs")
        log = os.path.join(self.logs, "base.log")
        self.step(f"base: debootstrap --variant=minbase {SUITE} (log: {log})")
        started = time.monotonic()
        self._run(["unshare", "--mount", "--propagation", "private", "--pid", "--fork",
                   "--kill-child", "env", *CHROOT_ENV, "debootstrap", "--variant=minbase",
                   f"--arch={self.debian_arch}", SUITE, tree, self.mirror],
                  log, "debootstrap", mode="w")
        _write(os.path.join(tree, "etc/apt/sources.list"), (
            f"deb {self.mirror} {SUITE} main\n"
            f"deb {self.mirror} {SUITE}-updates main\n"
            f"deb {self.security} {SUITE}-security main\n").encode())
        _write(os.path.join(tree, "etc/apt/apt.conf.d/90fleet-slim"), SLIM_APT_CONF)
        _write(os.path.join(tree, "etc/dpkg/dpkg.cfg.d/90fleet-slim"), SLIM_DPKG_CFG)
        self.step("base: apt-get dist-upgrade from -updates and -security")
        self._chroot(tree, f"apt-get -q update\n{APT} dist-upgrade\n", log)
        epoch = release_epoch(os.path.join(tree, "var/lib/apt/lists")) or FALLBACK_EPOCH
        shadow_day = epoch // 86400
        slim_tree(tree, shadow_day)
        self.step("base: writing the layer")
        layer = self._write_blob(tree, diff_trees(None, tree), epoch)
        info = dict(asdict(layer), epoch=epoch, shadow_day=shadow_day,
                    created_by=f"debootstrap --variant=minbase {SUITE} {self.mirror}; "
                    f"apt-get dist-upgrade ({SUITE}-updates, {SUITE}-security); "
                    "slimmed: no docs but copyright, man, info, locales, apt lists, logs",
                    versions={}, seconds=round(time.monotonic() - started, 1))
        _write_json(os.path.join(partial, "layer.json"), info)
        os.rename(partial, directory)
        return dict(info, rootfs=rootfs)

    # an image's layer -----------------------------------------------------------------

    def _image_layer(self, base: dict, recipe: Recipe, key: str) -> dict:
        record = os.path.join(self.cache, "layers", f"{recipe.name}-{key}.json")
        info = _read_json(record, None)
        if info and os.path.exists(self._blob_path(info["digest"])):
            return info
        log = os.path.join(self.logs, recipe.name + ".log")
        work = os.path.join(self.cache, "work-" + recipe.name)
        _rmtree(work)
        started = time.monotonic()
        self.step(f"{recipe.repo}: apt-get install {' '.join(recipe.packages)} (log: {log})")
        with open(log, "w"):
            pass
        self._run(["cp", "-a", "--reflink=auto", base["rootfs"], work], log, "copying the base")
        try:
            policy = os.path.join(work, "usr/sbin/policy-rc.d")
            _write(policy, POLICY_RC_D)
            os.chmod(policy, 0o755)
            self._chroot(work, "apt-get -q update\n" + recipe.script, log)
            epoch = max(base["epoch"],
                        release_epoch(os.path.join(work, "var/lib/apt/lists")) or 0)
            slim_tree(work, base["shadow_day"])
            for path, data, mode in recipe.files:
                _add_file(work, path, data, mode)
            if recipe.after:
                self._chroot(work, recipe.after, log)
            versions = package_versions(os.path.join(work, "var/lib/dpkg/status"),
                                        recipe.packages)
            self.step(f"{recipe.repo}: writing the layer")
            layer = self._write_blob(work, diff_trees(base["rootfs"], work), epoch)
        finally:
            _rmtree(work)
        info = dict(asdict(layer), epoch=epoch, versions=versions,
                    created_by=f"apt-get install {' '.join(recipe.packages)}"
                    + "".join(f"; add /{path}" for path, _, _ in recipe.files),
                    seconds=round(time.monotonic() - started, 1))
        _write_json(record, info)
        return info

    def _write_blob(self, root: str, entries, epoch: int) -> Layer:
        tmp = os.path.join(self.blobs, f".layer-{os.getpid()}.tmp")
        try:
            with open(tmp, "wb") as out:
                layer = write_layer(root, entries, out, epoch)
            os.replace(tmp, self._blob_path(layer.digest))
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return layer

    # assembling -----------------------------------------------------------------------

    def _assemble(self, recipe: Recipe, base: dict, layer: dict) -> DemoImage:
        layers = [base, layer]
        config = image_config(recipe, self.arch, self.variant, layers)
        manifest = image_manifest(config, layers)
        for data in (config, manifest):
            path = self._blob_path(_sha(data))
            if not os.path.exists(path):
                _write(path, data)
        return DemoImage(
            repo=recipe.repo, tag=TAG, digest=_sha(manifest), media_type=MT_OCI_MANIFEST,
            layout=self.layout, name=recipe.repo.replace("/", "-"), config=_sha(config),
            layers=tuple(item["digest"] for item in layers),
            size=len(manifest) + len(config) + sum(item["size"] for item in layers),
            unpacked=sum(item["unpacked"] for item in layers))

    def _write_index(self, images: List[DemoImage]) -> None:
        manifests = []
        for image in images:
            size = os.path.getsize(self._blob_path(image.digest))
            manifests.append({"mediaType": image.media_type, "digest": image.digest,
                              "size": size,
                              "annotations": {"org.opencontainers.image.ref.name": image.name}})
        _write(os.path.join(self.layout, "oci-layout"), _json({"imageLayoutVersion": "1.0.0"}))
        _write(os.path.join(self.layout, "index.json"),
               _json({"schemaVersion": 2, "mediaType": MT_OCI_INDEX, "manifests": manifests}))

    def _prune(self, images: List[DemoImage], base_key: str, keys: Dict[str, str]) -> None:
        """Drop what older builds left: blobs, layer records, base trees, work dirs."""
        wanted = {d.split(":", 1)[1] for image in images
                  for d in (image.digest, image.config, *image.layers)}
        for name in os.listdir(self.blobs):
            if name not in wanted:
                os.unlink(os.path.join(self.blobs, name))
        current = {f"{name}-{key}.json" for name, key in keys.items()}
        layers_dir = os.path.join(self.cache, "layers")
        for name in os.listdir(layers_dir):
            if name not in current:
                os.unlink(os.path.join(layers_dir, name))
        for name in os.listdir(self.cache):
            if (name.startswith("base-") and name != "base-" + base_key) or \
                    name.startswith("work-"):
                _rmtree(os.path.join(self.cache, name))

    # running things -------------------------------------------------------------------

    def _chroot(self, root: str, script: str, log: str) -> None:
        """Run ``script`` with sh -eux in chroot ``root`` (in new mount and PID
        namespaces, with the host's resolv.conf for apt and the .deb cache)."""
        resolv = os.path.join(root, "etc/resolv.conf")
        if os.path.lexists(resolv):
            os.unlink(resolv)
        try:
            with open("/etc/resolv.conf", "rb") as f:
                _write(resolv, f.read())
        except OSError:
            pass
        try:
            self._run(["unshare", "--mount", "--propagation", "private", "--pid", "--fork",
                       "--kill-child", "sh", "-c", _NAMESPACE_SCRIPT, "sh", root, self.debs,
                       "/usr/bin/env", "-i", *CHROOT_ENV, "/bin/sh", "-eux", "-c", script],
                      log, "the chroot step")
        finally:
            if os.path.lexists(resolv):
                os.unlink(resolv)

    def _run(self, argv: List[str], log: str, what: str, mode: str = "a") -> None:
        with open(log, mode) as out:
            out.write("$ " + " ".join(argv[:12]) + (" ..." if len(argv) > 12 else "") + "\n")
            out.flush()
            try:
                proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=out,
                                      stderr=subprocess.STDOUT, timeout=STEP_TIMEOUT)
            except (OSError, subprocess.SubprocessError) as e:
                raise DemoImageError(f"{what} failed: {e} (log: {log})") from None
        if proc.returncode != 0:
            raise DemoImageError(f"{what} failed with exit status {proc.returncode}: "
                                 f"{_last_line(log)} (log: {log})")


def _check_tools() -> None:
    if os.geteuid() != 0:
        raise DemoImageError("building the demo images needs root (debootstrap, chroot)")
    for tool, package in (("debootstrap", "debootstrap"), ("unshare", "util-linux"),
                          ("chroot", "coreutils")):
        if shutil.which(tool) is None:
            raise DemoImageError(f"{tool} not found (apt-get install {package})")


def _add_file(root: str, path: str, data: bytes, mode: int) -> None:
    full = os.path.join(root, path)
    parent = os.path.dirname(full)
    if not os.path.isdir(parent):
        os.makedirs(parent, mode=0o755)
        os.chmod(parent, 0o755)
    if os.path.lexists(full):
        os.unlink(full)
    _write(full, data)
    os.chown(full, 0, 0)
    os.chmod(full, mode)


def _rmtree(path: str) -> None:
    """Remove a tree that must have nothing mounted in it (refuse otherwise)."""
    if not os.path.lexists(path):
        return
    real = os.path.realpath(path)
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        for line in f:
            point = line.split()[4].replace("\\040", " ")
            if point == real or point.startswith(real + "/"):
                raise DemoImageError(f"{point} is still mounted; not removing {path}")
    shutil.rmtree(path)


def _last_line(log: str) -> str:
    try:
        with open(log, encoding="utf-8", errors="replace") as f:
            lines = [line.strip() for line in f if line.strip()]
    except OSError:
        return ""
    return lines[-1] if lines else ""


@contextlib.contextmanager
def _locked(path: str):
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


# --- command line ------------------------------------------------------------------------------


def main(argv: Optional[List[str]] = None) -> int:
    """``python3 -m fleet.lab.demo_images [--cache-dir DIR] [--no-push] [--registry NAME]``:
    build the images and push them to the running lab's registries (FLEET_LAB_DIR)."""
    import argparse
    import sys

    from fleet.lab.config import LabConfig
    from fleet.lab.registries import registry_status

    parser = argparse.ArgumentParser(prog="python3 -m fleet.lab.demo_images",
                                     description=main.__doc__)
    parser.add_argument("--cache-dir", default=DEFAULT_CACHE_DIR)
    parser.add_argument("--mirror", default=MIRROR)
    parser.add_argument("--security-mirror", default=SECURITY_MIRROR)
    parser.add_argument("--no-push", action="store_true", help="build only")
    parser.add_argument("--registry", action="append", default=[],
                        help="plain, basic or token (repeatable; default: every live one)")
    args = parser.parse_args(argv)

    def show(text: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)

    started = time.monotonic()
    options = {"mirror": args.mirror, "security_mirror": args.security_mirror}
    try:
        if args.no_push:
            images = build_demo_images(args.cache_dir, on_progress=show, **options)
        else:
            config = LabConfig.from_env()
            live = [r for r in registry_status(str(config.state_dir)) if r.alive]
            if args.registry:
                live = [r for r in live if r.name in args.registry]
            if not live:
                print(f"no running lab registry in {config.state_dir} "
                      "(fleet lab up, or --no-push)", file=sys.stderr)
                return 1
            images = push_demo_images(str(config.state_dir), live, args.cache_dir,
                                      on_progress=show, **options)
            for reg in live:
                show(f"in {reg.name}: " + ", ".join(f"{reg.address}/{i.ref}" for i in images))
    except DemoImageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for image in images:
        show(f"{image.ref}  {image.digest[:19]}  {image.size / 1e6:.1f} MB compressed, "
             f"{image.unpacked / 1e6:.1f} MB unpacked")
    show(f"done in {time.monotonic() - started:.1f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

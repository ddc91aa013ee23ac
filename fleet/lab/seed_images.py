"""Seed images for the lab registries, built in Python from Debian's busybox-static.

``build_seed_layouts(WORK)`` writes deterministic image layouts (fixed mtimes, sorted tar
entries, gzip with mtime 0, canonical JSON), so digests are identical across runs on one
machine:

- ``busybox:latest`` — one layer (/bin/busybox, a symlink per applet, /etc/passwd and
  /etc/group, /tmp, /root, /home/user, /var), Docker schema2 manifest; written as a skopeo
  ``dir:`` layout (skopeo 1.9's ``oci:`` source skips Docker-format manifests).
- ``busybox:oci`` — the same layer and config under an OCI manifest (``oci:`` layout).
- ``layers:latest`` — busybox plus three layers exercising whiteouts, an opaque directory,
  a path re-added after deletion, a hardlink, symlinks, setuid/setgid files and non-root
  owners (Docker schema2). ``EXPECTED_LAYERS_UNION`` and ``EXPECTED_LAYERS_ABSENT``
  describe the union rootfs; ``compare_rootfs`` checks a mounted rootfs against them.
- ``multiarch:latest`` — an OCI index: the host's architecture gets the busybox manifest,
  the other of amd64 / arm64(v8) a placeholder layer.

``seed_registries(STATE, registries)`` pushes them all with skopeo into every registry
(in parallel) and records what it pushed in ``STATE/seed/pushed.json``; a re-run with the
same digests and intact registry storage does nothing.
"""

from __future__ import annotations

import base64
import concurrent.futures
import fcntl
import hashlib
import io
import os
import platform
import re
import shutil
import stat
import struct
import subprocess
import tarfile
import tempfile
import zlib
from dataclasses import asdict, dataclass
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from fleet.lab.imagefiles import canonical_json as _json
from fleet.lab.imagefiles import digest_of as _sha
from fleet.lab.imagefiles import read_json as _read_json
from fleet.lab.imagefiles import write_bytes as _write
from fleet.lab.imagefiles import write_json as _write_json
from fleet.lab.registries import RegistryInfo, load_credentials

BUSYBOX = "/bin/busybox"
SKOPEO = "skopeo"
CREATED = "2024-01-01T00:00:00Z"
EPOCH = 1704067200  # CREATED as a Unix time: every tar mtime
GZIP_LEVEL = 6
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PUSH_WORKERS = 6
PUSH_TIMEOUT = 120

MT_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MT_DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
MT_DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
MT_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MT_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"

# ELF e_machine -> (GOARCH, variant)
_ELF_MACHINES = {
    0x03: ("386", None),
    0x08: ("mips64le", None),
    0x14: ("ppc", None),
    0x15: ("ppc64le", None),
    0x16: ("s390x", None),
    0x28: ("arm", "v7"),
    0x3E: ("amd64", None),
    0xB7: ("arm64", "v8"),
    0xF3: ("riscv64", None),
}
_UNAME_MACHINES = {
    "x86_64": ("amd64", None),
    "aarch64": ("arm64", "v8"),
    "armv7l": ("arm", "v7"),
    "armv6l": ("arm", "v6"),
    "i686": ("386", None),
    "i386": ("386", None),
    "ppc64le": ("ppc64le", None),
    "s390x": ("s390x", None),
    "riscv64": ("riscv64", None),
}

PASSWD = (
    "root:x:0:0:root:/root:/bin/sh\n"
    "user:x:1000:1000:user:/home/user:/bin/sh\n"
    "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
)
GROUP = "root:x:0:\nuser:x:1000:\nnogroup:x:65534:\n"


class SeedError(Exception):
    """A seed image could not be built or pushed (one-line message)."""


@dataclass(frozen=True)
class SeedImage:
    """A seed image: its repository, tag, and manifest (or index) digest and media type."""

    repo: str
    tag: str
    digest: str
    media_type: str

    @property
    def ref(self) -> str:
        """``repo:tag``."""
        return f"{self.repo}:{self.tag}"


# --- the expected union of layers:latest --------------------------------------------------
# path -> expected properties: type ("file" | "dir" | "symlink"), mode (permission bits
# with setuid/setgid/sticky), uid, gid, content (bytes, files), target (symlinks),
# hardlink_of (a path that must be the same inode). Keys left out are not checked.

EXPECTED_LAYERS_UNION: Dict[str, dict] = {
    "/bin/busybox": {"type": "file", "mode": 0o755, "uid": 0, "gid": 0},
    "/bin/sh": {"type": "symlink", "target": "/bin/busybox", "uid": 0, "gid": 0},
    "/etc": {"type": "dir", "mode": 0o755, "uid": 0, "gid": 0},
    "/etc/passwd": {"type": "file", "mode": 0o644, "uid": 0, "gid": 0,
                    "content": PASSWD.encode()},
    "/etc/group": {"type": "file", "mode": 0o644, "uid": 0, "gid": 0,
                   "content": GROUP.encode()},
    "/tmp": {"type": "dir", "mode": 0o1777, "uid": 0, "gid": 0},
    "/root": {"type": "dir", "mode": 0o700, "uid": 0, "gid": 0},
    "/home/user": {"type": "dir", "mode": 0o755, "uid": 1000, "gid": 1000},
    # layer 1: owners, links, setuid
    "/data": {"type": "dir", "mode": 0o755, "uid": 1000, "gid": 1000},
    "/data/file.txt": {"type": "file", "mode": 0o644, "uid": 1000, "gid": 1000,
                       "content": b"hello from layer 1\n"},
    "/data/hardlink.txt": {"type": "file", "mode": 0o644, "uid": 1000, "gid": 1000,
                           "content": b"hello from layer 1\n", "hardlink_of": "/data/file.txt"},
    "/data/symlink.txt": {"type": "symlink", "target": "file.txt", "uid": 1000, "gid": 1000},
    "/data/private": {"type": "dir", "mode": 0o700, "uid": 1000, "gid": 1000},
    "/data/private/secret.txt": {"type": "file", "mode": 0o600, "uid": 1000, "gid": 1000,
                                 "content": b"secret\n"},
    "/usr/local/bin/suid-tool": {"type": "file", "mode": 0o4755, "uid": 0, "gid": 0,
                                 "content": b"#!/bin/sh\nid -u\n"},
    "/usr/local/bin/sgid-tool": {"type": "file", "mode": 0o2755, "uid": 0, "gid": 1000,
                                 "content": b"#!/bin/sh\nid -g\n"},
    "/var/lib/keep.txt": {"type": "file", "mode": 0o644, "uid": 0, "gid": 0,
                          "content": b"kept\n"},
    # layer 2: opaque directory replaced by new content
    "/opt/old": {"type": "dir", "mode": 0o755, "uid": 0, "gid": 0},
    "/opt/old/new.txt": {"type": "file", "mode": 0o644, "uid": 0, "gid": 0,
                         "content": b"new content after opaque whiteout\n"},
    # layer 3: paths deleted in layer 2, re-added with new content and metadata
    "/readd.txt": {"type": "file", "mode": 0o600, "uid": 1000, "gid": 1000,
                   "content": b"re-added in layer 3\n"},
    "/var/lib/gone": {"type": "dir", "mode": 0o750, "uid": 1000, "gid": 1000},
    "/var/lib/gone/new.txt": {"type": "file", "mode": 0o640, "uid": 1000, "gid": 1000,
                              "content": b"new file in a re-added directory\n"},
}

EXPECTED_LAYERS_ABSENT: Tuple[str, ...] = (
    "/etc/to-delete.conf",
    "/etc/.wh.to-delete.conf",
    "/opt/old/a.txt",
    "/opt/old/b.txt",
    "/opt/old/sub",
    "/opt/old/.wh..wh..opq",
    "/var/lib/gone/x.txt",
    "/var/lib/gone/deep",
    "/var/lib/.wh.gone",
    "/.wh.readd.txt",
    "/linuxrc",
)


def compare_rootfs(root: str, check_owner: bool = True) -> List[str]:
    """Compare a rootfs of ``layers:latest`` (e.g. an overlay mount) with the expectation.

    Returns one message per difference (empty when it matches). ``check_owner=False``
    skips uid/gid, for extractions made without root.
    """
    problems = []
    inodes: Dict[str, Tuple[int, int]] = {}
    for path, want in sorted(EXPECTED_LAYERS_UNION.items()):
        full = os.path.join(root, path.lstrip("/"))
        try:
            st = os.lstat(full)
        except OSError:
            problems.append(f"{path}: missing")
            continue
        inodes[path] = (st.st_dev, st.st_ino)
        kind = ("dir" if stat.S_ISDIR(st.st_mode) else "symlink" if stat.S_ISLNK(st.st_mode)
                else "file" if stat.S_ISREG(st.st_mode) else "other")
        if kind != want["type"]:
            problems.append(f"{path}: is a {kind}, expected a {want['type']}")
            continue
        if "mode" in want and stat.S_IMODE(st.st_mode) != want["mode"]:
            problems.append(f"{path}: mode {stat.S_IMODE(st.st_mode):o}, expected {want['mode']:o}")
        if check_owner:
            for key, value in (("uid", st.st_uid), ("gid", st.st_gid)):
                if key in want and value != want[key]:
                    problems.append(f"{path}: {key} {value}, expected {want[key]}")
        if "target" in want and os.readlink(full) != want["target"]:
            problems.append(f"{path}: points to {os.readlink(full)}, expected {want['target']}")
        if "content" in want:
            with open(full, "rb") as f:
                if f.read() != want["content"]:
                    problems.append(f"{path}: content differs")
    for path, want in EXPECTED_LAYERS_UNION.items():
        other = want.get("hardlink_of")
        if other and path in inodes and other in inodes and inodes[path] != inodes[other]:
            problems.append(f"{path}: not a hardlink of {other}")
    for path in EXPECTED_LAYERS_ABSENT:
        if os.path.lexists(os.path.join(root, path.lstrip("/"))):
            problems.append(f"{path}: present, expected absent")
    return problems


# --- tar and gzip -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Entry:
    path: str  # no leading slash
    kind: str  # "dir" | "file" | "symlink" | "hardlink"
    mode: int = 0o755
    uid: int = 0
    gid: int = 0
    data: bytes = b""
    target: str = ""


def _d(path: str, mode: int = 0o755, uid: int = 0, gid: int = 0) -> _Entry:
    return _Entry(path, "dir", mode, uid, gid)


def _f(path: str, data: bytes, mode: int = 0o644, uid: int = 0, gid: int = 0) -> _Entry:
    return _Entry(path, "file", mode, uid, gid, data)


def _sym(path: str, target: str, uid: int = 0, gid: int = 0) -> _Entry:
    return _Entry(path, "symlink", 0o777, uid, gid, target=target)


def _hard(path: str, target: str, mode: int, uid: int, gid: int) -> _Entry:
    return _Entry(path, "hardlink", mode, uid, gid, target=target)


def _whiteout(path: str) -> _Entry:
    """A ``.wh.`` entry (``DIR/.wh..wh..opq`` for an opaque directory)."""
    return _Entry(path, "file", 0o644)


def _sort_key(path: str):
    # Parents before children; among siblings whiteouts first (as the OCI spec suggests).
    return tuple((0 if part.startswith(".wh.") else 1, part) for part in path.split("/"))


def _tar(entries: Iterable[_Entry]) -> bytes:
    """Return a deterministic tar of the entries (sorted, fixed mtime, numeric owners)."""
    ordered = sorted(entries, key=lambda e: _sort_key(e.path))
    seen = set()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for e in ordered:
            if e.path in seen:
                raise SeedError(f"duplicate tar entry {e.path}")
            info = tarfile.TarInfo(e.path)
            info.mtime = EPOCH
            info.mode = e.mode
            info.uid, info.gid = e.uid, e.gid
            info.uname = info.gname = ""
            payload = None
            if e.kind == "dir":
                info.type = tarfile.DIRTYPE
            elif e.kind == "symlink":
                info.type = tarfile.SYMTYPE
                info.linkname = e.target
            elif e.kind == "hardlink":
                if e.target not in seen:
                    raise SeedError(f"hardlink {e.path} before its target {e.target}")
                info.type = tarfile.LNKTYPE
                info.linkname = e.target
            else:
                info.type = tarfile.REGTYPE
                info.size = len(e.data)
                payload = io.BytesIO(e.data)
            tar.addfile(info, payload)
            seen.add(e.path)
    return buf.getvalue()


def _gzip(data: bytes) -> bytes:
    """Gzip with a fixed header (no name, mtime 0, OS unknown) so output is reproducible."""
    comp = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS)
    body = comp.compress(data) + comp.flush()
    header = b"\x1f\x8b\x08\x00" + b"\x00\x00\x00\x00" + b"\x00\xff"
    trailer = struct.pack("<II", zlib.crc32(data) & 0xFFFFFFFF, len(data) & 0xFFFFFFFF)
    return header + body + trailer






# --- layers ---------------------------------------------------------------------------------


def _busybox_entries(busybox: bytes, applets: Sequence[str]) -> List[_Entry]:
    entries = [
        _d("bin"), _d("sbin"), _d("usr"), _d("usr/bin"), _d("usr/sbin"),
        _d("etc"), _d("dev"), _d("proc"), _d("sys"), _d("var"), _d("var/tmp", 0o1777),
        _d("tmp", 0o1777), _d("root", 0o700), _d("home"), _d("home/user", 0o755, 1000, 1000),
        _f("bin/busybox", busybox, 0o755),
        _f("etc/passwd", PASSWD.encode()),
        _f("etc/group", GROUP.encode()),
    ]
    dirs = {e.path for e in entries if e.kind == "dir"}
    for applet in sorted(set(applets)):
        applet = applet.strip().strip("/")
        # applets outside the usual dirs (e.g. /linuxrc) are left out
        if "/" not in applet or applet == "bin/busybox" or os.path.dirname(applet) not in dirs:
            continue
        entries.append(_sym(applet, "/bin/busybox"))
    return entries


def _content_layer() -> List[_Entry]:
    """Layer 1: owners, a hardlink, a symlink, setuid/setgid, things later layers change."""
    return [
        _d("data", 0o755, 1000, 1000),
        _f("data/file.txt", b"hello from layer 1\n", 0o644, 1000, 1000),
        _hard("data/hardlink.txt", "data/file.txt", 0o644, 1000, 1000),
        _sym("data/symlink.txt", "file.txt", 1000, 1000),
        _d("data/private", 0o700, 1000, 1000),
        _f("data/private/secret.txt", b"secret\n", 0o600, 1000, 1000),
        _d("usr"), _d("usr/local"), _d("usr/local/bin"),
        _f("usr/local/bin/suid-tool", b"#!/bin/sh\nid -u\n", 0o4755),
        _f("usr/local/bin/sgid-tool", b"#!/bin/sh\nid -g\n", 0o2755, 0, 1000),
        _d("opt"), _d("opt/old"),
        _f("opt/old/a.txt", b"a\n"), _f("opt/old/b.txt", b"b\n"),
        _d("opt/old/sub"), _f("opt/old/sub/c.txt", b"c\n"),
        _d("etc"), _f("etc/to-delete.conf", b"delete me\n"),
        _d("var"), _d("var/lib"),
        _f("var/lib/keep.txt", b"kept\n"),
        _d("var/lib/gone"), _f("var/lib/gone/x.txt", b"x\n"),
        _d("var/lib/gone/deep"), _f("var/lib/gone/deep/y.txt", b"y\n"),
        _f("readd.txt", b"original content from layer 1\n"),
    ]


def _delete_layer() -> List[_Entry]:
    """Layer 2: delete a file, a directory and a top-level file; make /opt/old opaque."""
    return [
        _d("etc"), _whiteout("etc/.wh.to-delete.conf"),
        _d("var"), _d("var/lib"), _whiteout("var/lib/.wh.gone"),
        _d("opt"), _d("opt/old"), _whiteout("opt/old/.wh..wh..opq"),
        _f("opt/old/new.txt", b"new content after opaque whiteout\n"),
        _whiteout(".wh.readd.txt"),
    ]


def _readd_layer() -> List[_Entry]:
    """Layer 3: re-add paths layer 2 deleted, with new content, mode and owner."""
    return [
        _f("readd.txt", b"re-added in layer 3\n", 0o600, 1000, 1000),
        _d("var"), _d("var/lib"),
        _d("var/lib/gone", 0o750, 1000, 1000),
        _f("var/lib/gone/new.txt", b"new file in a re-added directory\n", 0o640, 1000, 1000),
    ]


def _placeholder_layer(arch: str, variant: Optional[str]) -> List[_Entry]:
    plat = f"linux/{arch}" + (f"/{variant}" if variant else "")
    return [_f("PLACEHOLDER", f"placeholder image for {plat}: no binaries\n".encode())]


# --- platform -------------------------------------------------------------------------------


def host_platform(binary: str = BUSYBOX) -> Tuple[str, Optional[str]]:
    """Return (GOARCH, variant) of a binary from its ELF header, else of this machine."""
    try:
        with open(binary, "rb") as f:
            head = f.read(20)
        if head[:4] == b"\x7fELF":
            order = "<" if head[5] == 1 else ">"
            machine = struct.unpack(order + "H", head[18:20])[0]
            if machine == 0x15 and order == ">":
                return "ppc64", None
            if machine in _ELF_MACHINES:
                return _ELF_MACHINES[machine]
    except OSError:
        pass
    machine = platform.machine()
    return _UNAME_MACHINES.get(machine, (machine, None))


def _applets(binary: str) -> List[str]:
    try:
        out = subprocess.run(
            [binary, "--list-full"], check=True, capture_output=True, timeout=30
        ).stdout.decode()
    except (OSError, subprocess.SubprocessError) as e:
        raise SeedError(f"cannot list busybox applets with {binary}: {e}") from None
    return [line for line in out.splitlines() if line.strip()]


# --- layouts --------------------------------------------------------------------------------


class _Blobs:
    """Blobs by digest, plus helpers to describe them."""

    def __init__(self) -> None:
        self.data: Dict[str, bytes] = {}

    def add(self, data: bytes, media_type: str, **extra) -> dict:
        digest = _sha(data)
        self.data[digest] = data
        desc = {"mediaType": media_type, "digest": digest, "size": len(data)}
        desc.update(extra)
        return desc


def _config(arch: str, variant: Optional[str], diff_ids: List[str], history: List[str],
            extra: Optional[dict] = None) -> bytes:
    cfg = {
        "architecture": arch,
        "os": "linux",
        "created": CREATED,
        "config": {"Env": [PATH_ENV], "Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created": CREATED, "created_by": h} for h in history],
    }
    if variant:
        cfg["variant"] = variant
    if extra:
        cfg["config"].update(extra)
    return _json(cfg)


def _manifest(blobs: _Blobs, config: bytes, layers: List[Tuple[bytes, bytes]], oci: bool) -> bytes:
    """A schema2 manifest (Docker or OCI media types); layers are (tar, gzip) pairs."""
    cfg_desc = blobs.add(config, MT_OCI_CONFIG if oci else MT_DOCKER_CONFIG)
    layer_descs = [blobs.add(gz, MT_OCI_LAYER if oci else MT_DOCKER_LAYER) for _, gz in layers]
    return _json({
        "schemaVersion": 2,
        "mediaType": MT_OCI_MANIFEST if oci else MT_DOCKER_MANIFEST,
        "config": cfg_desc,
        "layers": layer_descs,
    })


def _layer(entries: List[_Entry]) -> Tuple[bytes, bytes]:
    raw = _tar(entries)
    return raw, _gzip(raw)


def source_ref(work_dir: str, image: SeedImage) -> str:
    """Return the skopeo source reference of a built seed image in ``work_dir``."""
    name = f"{image.repo}-{image.tag}"
    if image.media_type == MT_DOCKER_MANIFEST:
        return "dir:" + os.path.join(os.path.abspath(work_dir), "dir", name)
    return "oci:" + os.path.join(os.path.abspath(work_dir), "oci") + ":" + name


def build_seed_layouts(work_dir: str, busybox: str = BUSYBOX) -> List[SeedImage]:
    """Write the seed images as skopeo ``dir:``/``oci:`` layouts in ``work_dir``.

    Deterministic: the same busybox binary gives the same digests. Returns the images in
    the order busybox:latest, busybox:oci, layers:latest, multiarch:latest; use
    ``source_ref`` to get the skopeo source of one. Existing layouts are replaced.
    """
    try:
        with open(busybox, "rb") as f:
            busybox_data = f.read()
    except OSError as e:
        raise SeedError(f"cannot read {busybox}: {e.strerror} (apt-get install busybox-static)"
                        ) from None
    arch, variant = host_platform(busybox)
    base = _layer(_busybox_entries(busybox_data, _applets(busybox)))
    base_diff = _sha(base[0])
    base_history = "fleet lab seed: busybox-static rootfs"
    bb_config = _config(arch, variant, [base_diff], [base_history])

    images: List[Tuple[SeedImage, _Blobs, bytes, Optional[List[bytes]]]] = []

    blobs = _Blobs()
    manifest = _manifest(blobs, bb_config, [base], oci=False)
    images.append((SeedImage("busybox", "latest", _sha(manifest), MT_DOCKER_MANIFEST),
                   blobs, manifest, None))

    blobs = _Blobs()
    bb_oci_manifest = _manifest(blobs, bb_config, [base], oci=True)
    images.append((SeedImage("busybox", "oci", _sha(bb_oci_manifest), MT_OCI_MANIFEST),
                   blobs, bb_oci_manifest, None))

    extra = [_layer(_content_layer()), _layer(_delete_layer()), _layer(_readd_layer())]
    layers_config = _config(
        arch, variant, [base_diff] + [_sha(raw) for raw, _ in extra],
        [base_history, "fleet lab seed: owners, links, setuid, files to delete",
         "fleet lab seed: whiteouts and an opaque directory",
         "fleet lab seed: re-add deleted paths"],
        {"Labels": {"org.opencontainers.image.title": "fleet-lab-layers"}},
    )
    blobs = _Blobs()
    manifest = _manifest(blobs, layers_config, [base] + extra, oci=False)
    images.append((SeedImage("layers", "latest", _sha(manifest), MT_DOCKER_MANIFEST),
                   blobs, manifest, None))

    blobs = _Blobs()
    wanted = [("amd64", None), ("arm64", "v8")]
    if arch not in {a for a, _ in wanted}:
        wanted.insert(0, (arch, variant))
    entries = []
    children = []
    for plat_arch, plat_variant in wanted:
        if plat_arch == arch:
            child = _manifest(blobs, bb_config, [base], oci=True)
            plat_variant = variant
        else:
            layer = _layer(_placeholder_layer(plat_arch, plat_variant))
            cfg = _config(plat_arch, plat_variant, [_sha(layer[0])],
                          [f"fleet lab seed: placeholder for {plat_arch}"])
            child = _manifest(blobs, cfg, [layer], oci=True)
        platform_desc = {"architecture": plat_arch, "os": "linux"}
        if plat_variant:
            platform_desc["variant"] = plat_variant
        children.append(child)
        entries.append(blobs.add(child, MT_OCI_MANIFEST, platform=platform_desc))
    index = _json({"schemaVersion": 2, "mediaType": MT_OCI_INDEX, "manifests": entries})
    images.append((SeedImage("multiarch", "latest", _sha(index), MT_OCI_INDEX),
                   blobs, index, children))

    _write_layouts(os.path.abspath(work_dir), images)
    return [image for image, _, _, _ in images]


def _write_layouts(work_dir: str, images) -> None:
    oci_dir = os.path.join(work_dir, "oci")
    for path in (oci_dir, os.path.join(work_dir, "dir")):
        shutil.rmtree(path, ignore_errors=True)
    os.makedirs(os.path.join(oci_dir, "blobs", "sha256"))
    index_entries = []
    for image, blobs, manifest, _children in images:
        name = f"{image.repo}-{image.tag}"
        if image.media_type == MT_DOCKER_MANIFEST:
            # skopeo dir: transport, version 1.1: blobs named by their hex digest
            target = os.path.join(work_dir, "dir", name)
            os.makedirs(target)
            _write(os.path.join(target, "version"), b"Directory Transport Version: 1.1\n")
            _write(os.path.join(target, "manifest.json"), manifest)
            for digest, data in blobs.data.items():
                _write(os.path.join(target, digest.split(":", 1)[1]), data)
        else:
            blobs.data[_sha(manifest)] = manifest
            for digest, data in blobs.data.items():
                path = os.path.join(oci_dir, "blobs", "sha256", digest.split(":", 1)[1])
                if not os.path.exists(path):
                    _write(path, data)
            index_entries.append({
                "mediaType": image.media_type,
                "digest": image.digest,
                "size": len(manifest),
                "annotations": {"org.opencontainers.image.ref.name": name},
            })
    _write(os.path.join(oci_dir, "oci-layout"), _json({"imageLayoutVersion": "1.0.0"}))
    _write(os.path.join(oci_dir, "index.json"),
           _json({"schemaVersion": 2, "mediaType": MT_OCI_INDEX, "manifests": index_entries}))
    _write(os.path.join(work_dir, "images.json"),
           _json([asdict(image) for image, _, _, _ in images]))




# --- pushing ----------------------------------------------------------------------------------


def seed_registries(state_dir: str, registries: List[RegistryInfo]) -> List[SeedImage]:
    """Build the seed images (cached under ``STATE/seed``) and push them to every registry.

    Pushes run in parallel skopeo processes. ``STATE/seed/pushed.json`` records the
    digests pushed per registry; an image whose digest is recorded for a registry and
    whose tag is still in that registry's storage is not pushed again, so a re-run
    does nothing. Raises SeedError naming the image and registry when skopeo fails.
    """
    state_dir = os.path.abspath(state_dir)
    seed_dir = os.path.join(state_dir, "seed")
    os.makedirs(seed_dir, mode=0o700, exist_ok=True)
    lock = os.open(os.path.join(seed_dir, ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _seed_locked(state_dir, seed_dir, registries)
    finally:
        os.close(lock)


def _seed_locked(state_dir: str, seed_dir: str, registries: List[RegistryInfo]
                 ) -> List[SeedImage]:
    work_dir, images = _cached_build(seed_dir)
    push_images(state_dir, seed_dir, registries, images,
                lambda image: source_ref(work_dir, image), SeedError)
    return images


def push_images(state_dir: str, push_dir: str, registries: List[RegistryInfo], images,
                source: Callable[[Any], str], error: type = SeedError,
                step: Optional[Callable[[str], None]] = None) -> int:
    """Push ``images`` (each with repo, tag, ref, digest, media_type) with skopeo to every
    registry that does not hold them yet; how many pushes ran.

    ``source(image)`` is skopeo's source reference. ``PUSH_DIR/pushed.json`` records the
    digests pushed per registry: an image recorded there whose tag is still in the
    registry's storage is not pushed again. auth.json, certs.d and registries.conf for
    skopeo live in ``push_dir`` too. A failure raises ``error`` naming the image and
    registry (the pushes that succeeded are recorded first)."""
    marker_path = os.path.join(push_dir, "pushed.json")
    marker = _read_json(marker_path, {})
    # One skopeo at a time per registry: distribution 2.8 can fail a manifest whose
    # blob another client is uploading at that moment (images here share layers).
    by_registry: Dict[str, list] = {}
    for reg in registries:
        record = marker.get(reg.name, {})
        if record.get("address") != reg.address:
            record = {}
        storage = os.path.join(state_dir, "registries", reg.name, "storage")
        for image in images:
            if record.get("images", {}).get(image.ref) == image.digest and \
                    _tag_in_storage(storage, image):
                continue
            by_registry.setdefault(reg.name, []).append((reg, image))
    if not by_registry:
        return 0
    if shutil.which(SKOPEO) is None:
        raise error("skopeo not found (apt-get install skopeo)")
    env = _skopeo_env(push_dir)
    password = ""
    if any(reg.auth != "none" for queue in by_registry.values() for reg, _ in queue):
        user, password = load_credentials(state_dir)
        _write_authfile(push_dir, user, password, registries)
    certs_dir = _write_certs_dir(push_dir, registries)

    def push_all(queue):
        pushed = []
        for reg, image in queue:
            if step is not None:
                step(f"pushing {image.ref} to {reg.name} ({reg.address})")
            try:
                _push(push_dir, reg, image, source(image), certs_dir, env, password, error)
            except error as e:
                return pushed, e
            pushed.append((reg, image))
        return pushed, None

    errors, done = [], []
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(by_registry)) as pool:
        for pushed, failure in pool.map(push_all, by_registry.values()):
            done.extend(pushed)
            if failure is not None:
                errors.append(failure)
    for reg, image in done:
        entry = marker.setdefault(reg.name, {})
        if entry.get("address") != reg.address:
            entry.clear()
            entry["address"] = reg.address
        entry.setdefault("images", {})[image.ref] = image.digest
    _write_json(marker_path, marker)
    if errors:
        raise errors[0]
    return len(done)


def _cached_build(seed_dir: str) -> Tuple[str, List[SeedImage]]:
    """Build layouts unless a build from the same busybox and code is already there."""
    h = hashlib.sha256()
    with open(__file__, "rb") as f:
        h.update(f.read())
    try:
        with open(BUSYBOX, "rb") as f:
            h.update(f.read())
    except OSError as e:
        raise SeedError(f"cannot read {BUSYBOX}: {e.strerror} (apt-get install busybox-static)"
                        ) from None
    key = h.hexdigest()[:16]
    work_dir = os.path.join(seed_dir, "layouts-" + key)
    images_file = os.path.join(work_dir, "images.json")
    if os.path.exists(images_file):
        try:
            images = [SeedImage(**item) for item in _read_json(images_file, [])]
        except TypeError:
            images = []
        if images:
            return work_dir, images
    for name in os.listdir(seed_dir):
        if name.startswith("layouts-") or name.startswith(".build-"):
            shutil.rmtree(os.path.join(seed_dir, name), ignore_errors=True)
    tmp = tempfile.mkdtemp(prefix=".build-", dir=seed_dir)
    images = build_seed_layouts(tmp)
    # a complete build appears atomically; a crash leaves only a .build- dir
    os.rename(tmp, work_dir)
    return work_dir, images


def _tag_in_storage(storage: str, image: SeedImage) -> bool:
    """True when distribution's filesystem storage has ``repo:tag`` at ``image.digest``."""
    link = os.path.join(storage, "docker", "registry", "v2", "repositories", image.repo,
                        "_manifests", "tags", image.tag, "current", "link")
    try:
        with open(link, encoding="ascii") as f:
            return f.read().strip() == image.digest
    except OSError:
        return False


def _skopeo_env(seed_dir: str) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
           and k not in ("REGISTRY_AUTH_FILE", "CONTAINERS_REGISTRIES_CONF")}
    conf = os.path.join(seed_dir, "registries.conf")
    if not os.path.exists(conf):
        _write(conf, b"# fleet lab: no mirrors, no short-name aliases\n")
    env["CONTAINERS_REGISTRIES_CONF"] = conf
    return env


def _write_authfile(seed_dir: str, user: str, password: str,
                    registries: List[RegistryInfo]) -> str:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    auths = {reg.address: {"auth": token} for reg in registries if reg.auth != "none"}
    path = os.path.join(seed_dir, "auth.json")
    fd = os.open(path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(_json({"auths": auths}))
    os.replace(path + ".tmp", path)
    return path


def _write_certs_dir(seed_dir: str, registries: List[RegistryInfo]) -> Optional[str]:
    ca_files = sorted({reg.ca_file for reg in registries if reg.tls and reg.ca_file})
    if not ca_files:
        return None
    certs = os.path.join(seed_dir, "certs.d")
    os.makedirs(certs, exist_ok=True)
    for i, ca in enumerate(ca_files):
        with open(ca, "rb") as f:
            _write(os.path.join(certs, "ca.crt" if i == 0 else f"ca{i}.crt"), f.read())
    return certs


def _push(push_dir: str, reg: RegistryInfo, image, source: str, certs_dir: Optional[str],
          env: Dict[str, str], password: str, error: type) -> None:
    argv = [SKOPEO, "--insecure-policy", "copy", "--quiet", "--preserve-digests"]
    if image.media_type == MT_OCI_INDEX:
        argv.append("--all")
    if reg.auth == "none":
        argv.append("--dest-no-creds")
    else:
        argv += ["--dest-authfile", os.path.join(push_dir, "auth.json")]
    if reg.tls:
        argv += ["--dest-cert-dir", certs_dir or "", "--dest-tls-verify=true"]
    else:
        argv.append("--dest-tls-verify=false")
    argv += [source, f"docker://{reg.address}/{image.ref}"]
    where = f"pushing {image.ref} to {reg.name} ({reg.address})"
    try:
        proc = _run_skopeo(argv, env)
    except (OSError, subprocess.SubprocessError) as e:
        raise error(f"{where}: {e}") from None
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.decode("utf-8", "replace").splitlines() if ln.strip()]
        last = lines[-1].strip() if lines else f"exit status {proc.returncode}"
        match = re.search(r'msg="((?:[^"\\]|\\.)*)"', last)
        if match:  # skopeo's logrus line: keep the message only
            last = match.group(1).replace('\\"', '"')
        if password:
            last = last.replace(password, "***")
        raise error(f"{where} failed: {last}")


def _run_skopeo(argv: List[str], env: Dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(argv, env=env, capture_output=True, timeout=PUSH_TIMEOUT,
                          stdin=subprocess.DEVNULL)

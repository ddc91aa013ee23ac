"""Pull a ~30 MB compressed image onto a lab host: fleet pull vs the floors.

The image is one gzip layer holding a Debian bookworm minbase rootfs made by debootstrap
(cached under /var/tmp/fleet-bench-pull; documentation, man pages and locales left out
as Docker's slim images do: about 80 MB and 4,100 entries), pushed by skopeo to the
lab's plain registry. Without debootstrap or a mirror it falls back to this machine's
/usr/lib/python3* and /usr/share/perl* trees. Timed, each as a whole process, with an
empty store on the host:
- `fleet pull` of the image on one lab host;
- `tar -xzf` of the same layer blob into an empty directory on that host (the floor);
- `skopeo copy docker://… oci:DIR` on this machine (the raw transfer);
- `podman pull` when podman is installed (see shared/PEERS.md for its set-up).
Then a second image sharing that layer plus a small one is pulled: only the new layer
may be downloaded. Writes a section of bench/RESULTS.md.

Each timed command starts after `sync` and a pause: the lab's disk is mounted with
`discard`, and file creation right after a large delete costs several times more.
Earlier runs' files are moved aside, not deleted, until the end.

Usage (as root): python3 bench/pull_bench.py [--runs 3]
"""

import argparse
import datetime
import gzip
import hashlib
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from ping_bench import LAB, bench_lab, fleet_bin, precompile  # noqa: E402
from results import replace_section  # noqa: E402

WORK = Path("/var/tmp/fleet-bench-pull")
ROOTFS = WORK / "rootfs"
FALLBACK_SOURCES = ["/usr/lib/python3.11", "/usr/share/perl"]
SLIM_EXCLUDES = ["usr/share/doc", "usr/share/man", "usr/share/locale", "usr/share/info"]
STORE = "/var/lib/fleet"
SETTLE_SECONDS = 8


def minbase_rootfs():
    """A debootstrap minbase rootfs (made once), or None when it cannot be made here."""
    if (ROOTFS / "etc" / "debian_version").exists():
        return ROOTFS
    if not shutil.which("debootstrap"):
        return None
    partial = WORK / "rootfs.partial"
    shutil.rmtree(partial, ignore_errors=True)
    WORK.mkdir(parents=True, exist_ok=True)
    made = subprocess.run(["debootstrap", "--variant=minbase", "bookworm", str(partial),
                           "http://deb.debian.org/debian"], capture_output=True)
    if made.returncode != 0:
        shutil.rmtree(partial, ignore_errors=True)
        return None
    for sub in SLIM_EXCLUDES + ["var/cache/apt/archives", "var/lib/apt/lists"]:
        for child in (partial / sub).glob("*"):
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
    partial.rename(ROOTFS)
    return ROOTFS


def build_layer(extra=False):
    """The layer's tar.gz bytes (cached): the source trees, or one small file."""
    path = WORK / ("extra.tar.gz" if extra else "base.tar.gz")
    if path.exists():
        return path.read_bytes()
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        if extra:
            info = tarfile.TarInfo("etc/fleet-bench")
            info.size = 6
            tar.addfile(info, io.BytesIO(b"bench\n"))
        elif minbase_rootfs() is not None:
            for name in sorted(os.listdir(ROOTFS)):
                tar.add(str(ROOTFS / name), arcname=name)
        else:
            for source in FALLBACK_SOURCES:
                if os.path.isdir(source):
                    tar.add(source, arcname=source.lstrip("/"))
    data = gzip.compress(raw.getvalue(), compresslevel=6, mtime=0)
    WORK.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    (WORK / ("extra.diffid" if extra else "base.diffid")).write_text(
        "sha256:" + hashlib.sha256(raw.getvalue()).hexdigest())
    return data


def push(name, layers):
    """Push an OCI image of ``layers`` [(gz bytes, diff_id)] as ``name`` with skopeo."""
    layout = WORK / ("layout-" + name.rsplit("/", 1)[-1].replace(":", "-"))
    shutil.rmtree(layout, ignore_errors=True)
    blobs = layout / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def blob(data):
        digest = hashlib.sha256(data).hexdigest()
        (blobs / digest).write_bytes(data)
        return {"digest": "sha256:" + digest, "size": len(data)}

    config = blob(json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                              "rootfs": {"type": "layers",
                                         "diff_ids": [d for _, d in layers]}}).encode())
    manifest = blob(json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": dict(config, mediaType="application/vnd.oci.image.config.v1+json"),
        "layers": [dict(blob(gz), mediaType="application/vnd.oci.image.layer.v1.tar+gzip")
                   for gz, _ in layers]}).encode())
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [dict(
        manifest, mediaType="application/vnd.oci.image.manifest.v1+json",
        annotations={"org.opencontainers.image.ref.name": "bench"})]}))
    subprocess.run(["skopeo", "--insecure-policy", "copy", "--quiet", "--dest-tls-verify=false",
                    f"oci:{layout}:bench", f"docker://{name}"], check=True)


def ssh(address, command):
    return subprocess.run(["ssh", "-i", str(LAB / "client_key"), "-o",
                           f"UserKnownHostsFile={LAB / 'known_hosts'}", "-o", "BatchMode=yes",
                           f"root@{address}", command], check=True, capture_output=True,
                          text=True).stdout


def settle(seconds=SETTLE_SECONDS):
    """Let the disk finish what earlier runs started (see the module's note)."""
    subprocess.run(["sync"], check=True)
    time.sleep(seconds)


def podman_command(work=WORK):
    """podman with a storage and configuration of the bench's own (under ``work``), or
    None. Settings from shared/PEERS.md: runc (crun refuses hybrid cgroups here), file
    events, ulimits within this machine's hard limits."""
    if not shutil.which("podman"):
        return None
    root = work / "podman"
    root.mkdir(parents=True, exist_ok=True)
    # Short run root: podman fails with long socket paths (shared/PEERS.md).
    storage = root / "storage.conf"
    storage.write_text(f'[storage]\ndriver = "overlay"\ngraphroot = "{root / "graph"}"\n'
                       'runroot = "/run/fleetbp"\n')
    conf = root / "containers.conf"
    conf.write_text('[containers]\ndefault_ulimits = ["nofile=20000:20000", '
                    '"nproc=32768:32768"]\n[engine]\nevents_logger = "file"\n'
                    'cgroup_manager = "cgroupfs"\nruntime = "runc"\n'
                    'tmp_dir = "/run/fleetbp/tmp"\n')
    os.environ["CONTAINERS_STORAGE_CONF"] = str(storage)
    os.environ["CONTAINERS_CONF"] = str(conf)
    return ["podman"]


def remove_runtime_dirs():
    """The empty state directories podman, runc and crun leave in /run."""
    shutil.rmtree("/run/fleetbp", ignore_errors=True)
    for path in ("/run/crun", "/run/runc", "/run/containers/networks", "/run/containers"):
        try:
            os.rmdir(path)
        except OSError:
            pass  # not there, or not empty: not ours to remove


def timed(argv, **kwargs):
    started = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, **kwargs)
    return time.perf_counter() - started


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    precompile()
    fleet = fleet_bin()
    inventory, registry = bench_lab(fleet, 2)
    address = (LAB / "inventory.ini").read_text().split("lab01 ansible_host=")[1].split()[0]
    base = build_layer()
    extra = build_layer(extra=True)
    base_id = (WORK / "base.diffid").read_text()
    extra_id = (WORK / "extra.diffid").read_text()
    image, image2 = f"{registry}/fleet-bench/pull:base", f"{registry}/fleet-bench/pull:more"
    push(image, [(base, base_id)])
    push(image2, [(base, base_id), (extra, extra_id)])
    files = sum(1 for _ in tarfile.open(fileobj=io.BytesIO(gzip.decompress(base))))
    host_blob = "/tmp/fleet-bench-layer.tar.gz"
    (Path(LAB / "hosts" / "lab01" / "tmp") / "fleet-bench-layer.tar.gz").write_bytes(base)
    results = {"fleet pull": [], "tar -xzf (floor)": [], "skopeo copy (transfer)": []}
    podman = podman_command()
    if podman:
        results["podman pull"] = []
    trash = "/var/lib/fleet/.bench-trash"
    ssh(address, f"rm -rf {STORE}/* && mkdir -p {trash}")
    # The payload is on the host before the first timed pull, as on every later one.
    subprocess.run([fleet, "ping", "-i", inventory, "lab01"], check=True,
                   stdout=subprocess.DEVNULL)
    settle(3 * SETTLE_SECONDS)
    try:
        for run in range(args.runs):
            settle()
            results["fleet pull"].append(timed([fleet, "pull", "-i", inventory, "lab01", image]))
            # moved aside, not deleted: see the module's note on discard
            ssh(address, f"mkdir {trash}/{run} && mv {STORE}/blobs {STORE}/layers "
                         f"{STORE}/images {STORE}/tmp {trash}/{run}/")
            settle()
            results["tar -xzf (floor)"].append(timed(
                ["ssh", "-i", str(LAB / "client_key"), "-o",
                 f"UserKnownHostsFile={LAB / 'known_hosts'}", f"root@{address}",
                 f"mkdir {trash}/x{run} && tar -xzf {host_blob} -C {trash}/x{run}"]))
            shutil.rmtree(WORK / "skopeo-out", ignore_errors=True)
            settle()
            results["skopeo copy (transfer)"].append(timed(
                ["skopeo", "--insecure-policy", "copy", "--quiet", "--src-tls-verify=false",
                 f"docker://{image}", f"oci:{WORK / 'skopeo-out'}:x"]))
            if podman:
                subprocess.run(podman + ["rmi", "-af"], capture_output=True)
                settle()
                results["podman pull"].append(timed(podman + ["pull", "--tls-verify=false",
                                                              image]))
        # A second image sharing the base layer: only its small layer is fetched.
        pulled = subprocess.run([fleet, "pull", "-i", inventory, "lab01", image2, "-o", "json"],
                                check=True, capture_output=True, text=True)
        second_ok = json.loads(pulled.stdout)["hosts"][0]["ok"]
        layers_on_host = ssh(address, f"ls {STORE}/layers/sha256 | wc -l").strip()
    finally:
        ssh(address, f"rm -rf {STORE}/* {trash} {host_blob}")
        if podman:
            subprocess.run(podman + ["rmi", "-af"], capture_output=True)
            shutil.rmtree(WORK / "podman", ignore_errors=True)
            remove_runtime_dirs()
    source = ("a Debian bookworm minbase rootfs from debootstrap" if minbase_rootfs()
              else ", ".join(FALLBACK_SOURCES))
    lines = [
        f"## fleet pull, one lab host ({datetime.date.today()}, `python3 bench/pull_bench.py`)",
        "",
        f"One gzip layer of {len(base) / 1e6:.1f} MB ({files} entries: {source}),",
        f"pushed by skopeo to the lab registry; median of {args.runs} runs, seconds, empty "
        "store each time.",
        "",
        "| " + " | ".join(results) + " |",
        "|" + "---|" * len(results),
        "| " + " | ".join(f"{statistics.median(v):.2f}" for v in results.values()) + " |",
        "",
        f"Second image sharing that layer: pulled ok={second_ok}, {layers_on_host} layer dirs on "
        "the host afterwards (2 = only the new layer was unpacked)."
        + (" podman pulls on this machine (its own storage, overlay driver), from the same"
           " registry." if podman else " podman was not installed for this run."),
    ]
    print("\n".join(lines))
    replace_section("## fleet pull", lines)


if __name__ == "__main__":
    main()

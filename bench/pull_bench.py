"""Pull a ~30 MB compressed image onto a lab host: fleet pull vs the floors.

The image is one gzip layer made of this machine's /usr/lib/python3* and /usr/share/perl*
trees (thousands of files), pushed by skopeo to the lab's plain registry. Timed, each as
a whole process, with an empty store on the host:
- `fleet pull` of the image on one lab host;
- `tar -xzf` of the same layer blob into an empty directory on that host (the floor);
- `skopeo copy docker://… oci:DIR` on this machine (the raw transfer);
- `podman pull` when podman is installed (see shared/PEERS.md for its set-up).
Then a second image sharing that layer plus a small one is pulled: only the new layer
may be downloaded. Writes a section of bench/RESULTS.md.

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

from ping_bench import LAB, fleet_bin, precompile  # noqa: E402
from results import replace_section  # noqa: E402

WORK = Path("/var/tmp/fleet-bench-pull")
SOURCES = ["/usr/lib/python3.11", "/usr/share/perl"]
STORE = "/var/lib/fleet"


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
        else:
            for source in SOURCES:
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
    subprocess.run([fleet, "lab", "up", "--hosts", "2", "-o", "json"], check=True,
                   stdout=subprocess.DEVNULL)
    inventory = str(LAB / "inventory.ini")
    text = (LAB / "inventory.ini").read_text()
    registry = text.split("fleet_lab_registry=")[1].split()[0]
    address = text.split("lab01 ansible_host=")[1].split()[0]
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
    podman = shutil.which("podman")
    if podman:
        results["podman pull"] = []
    for _ in range(args.runs):
        ssh(address, f"rm -rf {STORE}/* /tmp/fleet-bench-x")
        results["fleet pull"].append(timed([fleet, "pull", "-i", inventory, "lab01", image]))
        results["tar -xzf (floor)"].append(timed(
            ["ssh", "-i", str(LAB / "client_key"), "-o",
             f"UserKnownHostsFile={LAB / 'known_hosts'}", f"root@{address}",
             f"mkdir /tmp/fleet-bench-x && tar -xzf {host_blob} -C /tmp/fleet-bench-x"]))
        shutil.rmtree(WORK / "skopeo-out", ignore_errors=True)
        results["skopeo copy (transfer)"].append(timed(
            ["skopeo", "--insecure-policy", "copy", "--quiet", "--src-tls-verify=false",
             f"docker://{image}", f"oci:{WORK / 'skopeo-out'}:x"]))
        if podman:
            subprocess.run([podman, "rmi", "-f", image], capture_output=True)
            results["podman pull"].append(timed([podman, "pull", "--tls-verify=false", image]))
    # A second image sharing the base layer: only its small layer is fetched.
    pulled = subprocess.run([fleet, "pull", "-i", inventory, "lab01", image2, "-o", "json"],
                            check=True, capture_output=True, text=True)
    second_ok = json.loads(pulled.stdout)["hosts"][0]["ok"]
    layers_on_host = ssh(address, f"ls {STORE}/layers/sha256 | wc -l").strip()
    ssh(address, f"rm -rf {STORE}/* /tmp/fleet-bench-x {host_blob}")
    lines = [
        f"## fleet pull, one lab host ({datetime.date.today()}, `python3 bench/pull_bench.py`)",
        "",
        f"One gzip layer of {len(base) / 1e6:.1f} MB ({files} entries: {', '.join(SOURCES)}),",
        f"pushed by skopeo to the lab registry; median of {args.runs} runs, seconds, empty "
        "store each time.",
        "",
        "| " + " | ".join(results) + " |",
        "|" + "---|" * len(results),
        "| " + " | ".join(f"{statistics.median(v):.2f}" for v in results.values()) + " |",
        "",
        f"Second image sharing that layer: pulled ok={second_ok}, {layers_on_host} layer dirs on "
        "the host afterwards (2 = only the new layer was unpacked)."
        + ("" if podman else " podman was not installed for this run."),
    ]
    print("\n".join(lines))
    replace_section("## fleet pull", lines)


if __name__ == "__main__":
    main()

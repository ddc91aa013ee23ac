"""The lab hosts' disk: a journaled ext4 filesystem in a sparse image file, loop-mounted
on STATE/hosts, where each host's /root, /tmp and /var/lib/fleet live.

Real servers keep /var/lib/fleet on a journaled filesystem; the machine that runs the lab
may not (a VM's root ext4 made without a journal). On ext4 without a journal, every inode
allocation passes over each inode of its group deleted in the last 30 s, looking each one
up in the buffer cache: with 32 hosts making and removing containers, creating a file
costs in proportion to the lab's recent deletions, and a 32-host deploy spent 15% of its
CPU there. Where the image cannot be made or mounted (no loop device, no mkfs.ext4), the
hosts' directories stay on the state directory's own filesystem.
"""

import os
import shutil
import subprocess

from fleet.lab.state import LabError

IMAGE_NAME = "disk.img"
# Sparse: the file takes only what the hosts write. Never more than the machine has free,
# so that the lab's filesystem fills up before the one under it.
MAX_SIZE = 64 << 30
MIN_SIZE = 1 << 30


def image_path(config):
    return config.state_dir / IMAGE_NAME


def image_size(free_bytes):
    """The image's size for a machine with ``free_bytes`` free where it is stored."""
    return max(MIN_SIZE, min(MAX_SIZE, free_bytes // 2 // 4096 * 4096))


def mounted(config):
    return os.path.ismount(config.hosts_dir)


def ensure(config):
    """Mount the hosts' disk (made first if new); return None, or why the hosts'
    directories stay on the machine's own filesystem (one line)."""
    target = config.hosts_dir
    target.mkdir(parents=True, exist_ok=True)
    if mounted(config):
        return None
    if any(target.iterdir()):
        return (f"{target} already holds the hosts' files (a lab made by an older fleet: "
                "`fleet lab down`, then up again)")
    image = image_path(config)
    made = not image.exists()
    if made:
        if not shutil.which("mkfs.ext4"):
            return "mkfs.ext4 not found (Debian package e2fsprogs)"
        stat = os.statvfs(config.state_dir)
        handle = os.open(image, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.ftruncate(handle, image_size(stat.f_bavail * stat.f_frsize))
        finally:
            os.close(handle)
        # lazy_itable_init with noinit_itable below: no background zeroing of the inode
        # tables, which would write a gigabyte into the sparse file for nothing.
        formatted = subprocess.run(["mkfs.ext4", "-q", "-F", "-m", "0",
                                    "-E", "lazy_itable_init=1,lazy_journal_init=1,nodiscard",
                                    str(image)], capture_output=True, text=True)
        if formatted.returncode != 0:
            image.unlink()
            return f"mkfs.ext4 {image}: " + _last_line(formatted.stderr)
    done = subprocess.run(["mount", "-o", "loop,noinit_itable", str(image), str(target)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        if made:  # nothing on it yet: the hosts go to the plain directory instead
            image.unlink()
        return f"mount -o loop {image} {target}: " + _last_line(done.stderr)
    return None


def remove(config):
    """Unmount the hosts' disk and delete its image. A host process that outlived the
    lab keeps the filesystem busy: it is then detached, and freed when that one ends."""
    if mounted(config):
        target = str(config.hosts_dir)
        if subprocess.run(["umount", target], capture_output=True).returncode != 0:
            lazy = subprocess.run(["umount", "-l", target], capture_output=True, text=True)
            if lazy.returncode != 0:
                raise LabError(f"cannot unmount the lab's disk at {target}: "
                               + _last_line(lazy.stderr))
    image = image_path(config)
    if image.exists():
        image.unlink()


def _last_line(text):
    lines = text.strip().splitlines()
    return lines[-1] if lines else "failed"

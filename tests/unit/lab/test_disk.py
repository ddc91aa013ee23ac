"""The lab hosts' disk: its size, and where it gives way to a plain directory."""

from pathlib import Path

from fleet.lab import disk
from fleet.lab.config import LabConfig


def test_image_size_is_half_the_free_space_within_bounds():
    assert disk.image_size(10 << 30) == 5 << 30
    assert disk.image_size(1 << 40) == disk.MAX_SIZE
    assert disk.image_size(100 << 20) == disk.MIN_SIZE
    assert disk.image_size((10 << 30) + 12345) % 4096 == 0


def test_without_mkfs_the_hosts_stay_on_the_machines_filesystem(tmp_path, monkeypatch):
    monkeypatch.setattr(disk.shutil, "which", lambda name: None)
    config = LabConfig(Path(tmp_path))
    assert "e2fsprogs" in disk.ensure(config)
    assert not disk.image_path(config).exists() and config.hosts_dir.is_dir()


def test_hosts_already_there_are_not_hidden(tmp_path):
    config = LabConfig(Path(tmp_path))
    (config.hosts_dir / "lab01").mkdir(parents=True)
    assert "already holds" in disk.ensure(config)
    assert not disk.image_path(config).exists()


def test_remove_without_a_disk_is_quiet(tmp_path):
    disk.remove(LabConfig(Path(tmp_path)))

"""Foreground containers on this machine (root): a busybox image made from the machine's
busybox-static in a store of the test's own, run through agent_payload.runtime.run."""

import json
import os
import shutil
import subprocess
import uuid

import pytest

from agent_payload import cgroups
from agent_payload.oci.store import Store
from agent_payload.runtime.run import RunError, run

BUSYBOX = shutil.which("busybox")
pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not BUSYBOX,
                                reason="needs root and busybox-static")
APPLETS = ("sh", "echo", "cat", "hostname", "id", "ls", "grep", "sleep", "true", "false",
           "mount", "dd", "wc", "head", "touch", "ps", "yes", "tr")
CHAIN = "sha256:" + "b" * 64
IMAGE_ID = "sha256:" + "c" * 64
SEEDED_CHAIN = "sha256:" + "a" * 64


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("fleet-run-store")
    s = Store(str(root))
    layer = s.layer_path(CHAIN)
    os.makedirs(os.path.join(layer, "bin"))
    os.makedirs(os.path.join(layer, "etc"))
    shutil.copy2(BUSYBOX, os.path.join(layer, "bin", "busybox"))
    for applet in APPLETS:
        os.symlink("busybox", os.path.join(layer, "bin", applet))
    with open(os.path.join(layer, "etc", "passwd"), "w") as handle:
        handle.write("root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n")
    with open(os.path.join(layer, "etc", "group"), "w") as handle:
        handle.write("root:x:0:\napp:x:1000:\n")
    s.save_image({"id": IMAGE_ID, "manifest_digest": "sha256:" + "d" * 64,
                  "repo_tags": ["fleet-test/busybox:latest"], "repo_digests": [],
                  "layers": [CHAIN], "blobs": [], "size": 0,
                  "config": {"config": {"Cmd": ["sh"], "Env": ["PATH=/bin"]},
                             "rootfs": {"diff_ids": [CHAIN]}}})
    seeded = s.layer_path(SEEDED_CHAIN)
    os.makedirs(os.path.join(seeded, "data"))
    with open(os.path.join(seeded, "data", "seed.txt"), "w") as handle:
        handle.write("from the image\n")
    os.makedirs(os.path.join(seeded, "srv"))  # an empty data dir of its own user's
    os.chown(os.path.join(seeded, "srv"), 1000, 1000)
    os.chmod(os.path.join(seeded, "srv"), 0o750)
    s.save_image({"id": "sha256:" + "e" * 64, "manifest_digest": "sha256:" + "f" * 64,
                  "repo_tags": ["fleet-test/seeded:latest"], "repo_digests": [],
                  "layers": [CHAIN, SEEDED_CHAIN], "blobs": [], "size": 0,
                  "config": {"config": {"Cmd": ["sh"], "Env": ["PATH=/bin"],
                                        "Volumes": {"/data": {}}},
                             "rootfs": {"diff_ids": [CHAIN, SEEDED_CHAIN]}}})
    parent = "fleet-test-" + uuid.uuid4().hex[:8]
    yield str(root), parent
    driver = cgroups.open_driver()
    for mount in set(driver.mounts.values()):
        if os.path.isdir(os.path.join(mount, parent)):
            os.rmdir(os.path.join(mount, parent))
    subprocess.run(["rm", "-rf", str(root)], check=False)


def sh(store, script, **options):
    root, parent = store
    return run(root, "fleet-test/busybox", dict(options, command=["sh", "-c", script],
                                                cgroup_parent=parent))


def test_isolated_from_the_host(store):
    out = sh(store, "hostname; echo $$; ls /proc | grep -c '^[0-9]'; "
                    "grep -E '^Cap(Eff|Bnd)' /proc/self/status; cat /proc/kcore | wc -c; "
                    "mount -t tmpfs x /mnt 2>&1 || echo mount-refused; cat /etc/hostname",
             hostname="fleet-box")
    lines = out["stdout"].splitlines()
    assert out["rc"] == 0, out
    assert lines[0] == "fleet-box" and lines[1] == "1"
    assert int(lines[2]) <= 3  # sh, grep (and ls): nothing of the host
    assert lines[3].split() == ["CapEff:", "00000000a80425fb"]
    assert lines[4].split() == ["CapBnd:", "00000000a80425fb"]
    assert lines[5] == "0" and "mount-refused" in lines[-2] and lines[-1] == "fleet-box"


def test_exit_codes_user_and_env(store):
    assert sh(store, "exit 3")["rc"] == 3
    out = sh(store, "id -u; id -g; echo $HOME; grep CapEff /proc/self/status; echo $FOO",
             user="app", env={"FOO": "bar"})
    assert out["stdout"].split() == ["1000", "1000", "/home/app", "CapEff:",
                                     "0000000000000000", "bar"]


def test_writes_stay_in_the_container(store):
    root, _ = store
    out = sh(store, "echo hi > /etc/fleet-written && cat /etc/fleet-written")
    assert out["stdout"] == "hi\n"
    layer = Store(root).layer_path(CHAIN)
    assert not os.path.exists(os.path.join(layer, "etc", "fleet-written"))


def test_memory_limit_and_oom(store):
    out = sh(store, "dd if=/dev/zero of=/dev/null bs=64M count=1", memory="16m",
             memory_swap="16m")
    assert out["rc"] == -9 and out["oom_killed"], out


def test_bad_input_is_one_line_and_leaves_nothing(store):
    root, parent = store
    before = set(os.listdir(os.path.join(root, "containers"))) if os.path.isdir(
        os.path.join(root, "containers")) else set()
    with pytest.raises(RunError, match='exec: "no-such-cmd": executable file not found'):
        run(root, "fleet-test/busybox", {"command": ["no-such-cmd"], "cgroup_parent": parent})
    with pytest.raises(RunError, match="minimum memory limit"):
        run(root, "fleet-test/busybox", {"memory": "4m"})
    with pytest.raises(RunError, match="is not present"):
        run(root, "fleet-test/nothing", {})
    after = set(os.listdir(os.path.join(root, "containers")))
    assert after == before
    mounts = open("/proc/self/mountinfo").read()
    assert "fleet-run-store" not in mounts
    driver = cgroups.open_driver()
    for mount in set(driver.mounts.values()):
        assert os.listdir(os.path.join(mount, parent)) == [] or not [
            d for d in os.listdir(os.path.join(mount, parent))
            if os.path.isdir(os.path.join(mount, parent, d))]


def test_config_is_recorded(store):
    root, parent = store
    out = run(root, "fleet-test/busybox", {"command": ["true"], "cgroup_parent": parent,
                                           "rm": False})
    directory = os.path.join(root, "containers", out["id"])
    try:
        config = json.load(open(os.path.join(directory, "config.json")))
        assert config["argv"] == ["true"] and config["hostname"] == out["id"][:12]
    finally:
        shutil.rmtree(directory)


def test_bind_mounts_and_named_volumes(store, tmp_path):
    root, parent = store
    shared = tmp_path / "shared"
    out = sh(store, "echo from-container > /mnt/rw/file; cat /mnt/ro/in.txt; "
                    "touch /mnt/ro/x 2>/dev/null || echo ro-refused",
             volumes=[f"{shared}:/mnt/rw", f"{tmp_path / 'ro'}:/mnt/ro:ro"])
    assert (shared / "file").read_text() == "from-container\n"
    assert "ro-refused" in out["stdout"], out
    name = "fleet-test-vol-" + uuid.uuid4().hex[:6]
    try:
        sh(store, "echo kept > /v/data", volumes=[f"{name}:/v"])
        again = sh(store, "cat /v/data", volumes=[f"{name}:/v"])
        assert again["stdout"] == "kept\n"
        assert os.path.isfile(os.path.join(root, "volumes", name, "_data", "data"))
    finally:
        shutil.rmtree(os.path.join(root, "volumes", name), ignore_errors=True)


def test_image_volumes_are_anonymous_filled_and_removed(store):
    root, parent = store
    out = run(root, "fleet-test/seeded", {"command": ["sh", "-c", "cat /data/seed.txt; "
                                                      "echo new > /data/new; ls /data"],
                                          "cgroup_parent": parent})
    assert out["stdout"] == "from the image\nnew\nseed.txt\n", out
    volumes = os.path.join(root, "volumes")
    assert not os.path.isdir(volumes) or os.listdir(volumes) == []
    named = "fleet-test-seed-" + uuid.uuid4().hex[:6]
    try:
        first = run(root, "fleet-test/seeded", {"command": ["ls", "/data"],
                                                "volumes": [f"{named}:/data"],
                                                "cgroup_parent": parent})
        assert first["stdout"] == "seed.txt\n"  # a new named volume gets the image's files
        empty = run(root, "fleet-test/seeded", {"command": ["ls", "-ldn", "/srv"],
                                                "volumes": [f"{named}-srv:/srv"],
                                                "cgroup_parent": parent})
        assert empty["stdout"].split()[:4] == ["drwxr-x---", "2", "1000", "1000"], empty
    finally:
        for name in (named, f"{named}-srv"):
            shutil.rmtree(os.path.join(volumes, name), ignore_errors=True)


def test_init_is_pid_1_and_passes_the_exit_code_on(store):
    out = sh(store, "echo $$; cat /proc/1/cmdline | head -c 40 | grep -c python; "
                    "ls /proc/1/fd | tr '\\n' ' '; exit 4", init=True)
    lines = out["stdout"].splitlines()
    assert out["rc"] == 4 and lines[0] != "1" and lines[1] == "1", out
    # The init keeps nothing it inherited (the launcher's or the monitor's descriptors).
    assert lines[2].split() == ["0", "1", "2"], out


def test_signals_python_ignores_are_not_ignored_in_the_container(store):
    # Python ignores SIGPIPE and SIGXFSZ, and an ignored signal would come through exec.
    out = sh(store, "grep SigIgn /proc/self/status; yes | head -1")
    label, mask, line = out["stdout"].split()
    assert label == "SigIgn:" and line == "y", out
    assert not int(mask, 16) & (1 << 12 | 1 << 24), out  # bits of signals 13 and 25
    assert "Broken pipe" not in out["stderr"]  # yes died of SIGPIPE, as it should


def test_ulimits(store):
    out = sh(store, "ulimit -n; ulimit -Hn", ulimits=["nofile=512:1024"])
    assert out["stdout"].split() == ["512", "1024"], out

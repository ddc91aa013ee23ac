"""Unit tests for fleet.lab.demo_images and fleet.lab.demo_web: layer diffs and tars,
slimming, configs, cache keys and the entrypoints (no root, no network, no build)."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import json
import os
import stat
import subprocess
import tarfile

import pytest

from fleet.lab import demo_images as di
from fleet.lab import demo_web

EPOCH = 1750000000


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def put(root, path, data=b"", mode=0o644):
    full = os.path.join(root, path)
    os.makedirs(os.path.dirname(full), exist_ok=True)
    with open(full, "wb") as f:
        f.write(data)
    os.chmod(full, mode)
    return full


def base_tree(root):
    put(root, "etc/keep.conf", b"keep\n")
    put(root, "etc/changed.conf", b"aaaa\n")
    put(root, "etc/gone.conf", b"gone\n")
    put(root, "etc/touched.conf", b"same\n")
    put(root, "usr/bin/tool", b"#!/bin/sh\n", 0o755)
    put(root, "var/lib/olddir/a", b"a\n")
    put(root, "var/lib/olddir/b/c", b"c\n")
    put(root, "var/lib/keep/x", b"x\n")
    put(root, "srv/was-file", b"file\n")
    os.makedirs(os.path.join(root, "srv/was-dir/inner"))
    os.symlink("keep.conf", os.path.join(root, "etc/link"))
    os.makedirs(os.path.join(root, "empty"))


def changed_tree(root):
    base_tree(root)
    put(root, "etc/changed.conf", b"bbbb\n")  # same size, other content
    os.unlink(os.path.join(root, "etc/gone.conf"))
    os.utime(os.path.join(root, "etc/touched.conf"), (EPOCH + 99, EPOCH + 99))  # mtime only
    os.chmod(os.path.join(root, "usr/bin/tool"), 0o700)
    for name in ("var/lib/olddir/b/c", "var/lib/olddir/a"):
        os.unlink(os.path.join(root, name))
    os.rmdir(os.path.join(root, "var/lib/olddir/b"))
    os.rmdir(os.path.join(root, "var/lib/olddir"))
    put(root, "opt/app/one", b"same content\n")
    os.link(os.path.join(root, "opt/app/one"), os.path.join(root, "opt/app/two"))
    os.unlink(os.path.join(root, "etc/link"))
    os.symlink("changed.conf", os.path.join(root, "etc/link"))
    os.unlink(os.path.join(root, "srv/was-file"))
    os.makedirs(os.path.join(root, "srv/was-file"))  # file -> dir
    os.rmdir(os.path.join(root, "srv/was-dir/inner"))
    os.rmdir(os.path.join(root, "srv/was-dir"))
    put(root, "srv/was-dir", b"now a file\n")  # dir -> file


@pytest.fixture
def trees(tmp_path):
    base, new = str(tmp_path / "base"), str(tmp_path / "new")
    os.makedirs(base)
    os.makedirs(new)
    base_tree(base)
    changed_tree(new)
    return base, new


# --- diff_trees --------------------------------------------------------------------------


def test_diff_finds_changes_whiteouts_and_parents(trees):
    base, new = trees
    entries = di.diff_trees(base, new)
    assert entries == [
        ("etc", False),
        ("etc/gone.conf", True),
        ("etc/changed.conf", False),
        ("etc/link", False),
        ("opt", False),
        ("opt/app", False),
        ("opt/app/one", False),
        ("opt/app/two", False),
        ("srv", False),
        ("srv/was-dir", False),
        ("srv/was-file", False),
        ("usr", False),
        ("usr/bin", False),
        ("usr/bin/tool", False),
        ("var", False),
        ("var/lib", False),
        ("var/lib/olddir", True),  # one whiteout for the whole directory
    ]


def test_diff_ignores_modification_times_only(tmp_path):
    base, new = str(tmp_path / "b"), str(tmp_path / "n")
    for root in (base, new):
        put(root, "etc/a", b"a\n")
    os.utime(os.path.join(new, "etc/a"), (1, 1))
    os.utime(os.path.join(new, "etc"), (1, 1))
    assert di.diff_trees(base, new) == []


def test_diff_sees_mode_and_owner_of_directories(tmp_path):
    base, new = str(tmp_path / "b"), str(tmp_path / "n")
    for root in (base, new):
        put(root, "data/file", b"x")
    os.chmod(os.path.join(new, "data"), 0o750)
    assert di.diff_trees(base, new) == [("data", False)]


def test_diff_without_base_is_everything(trees):
    _, new = trees
    entries = di.diff_trees(None, new)
    assert not any(whiteout for _, whiteout in entries)
    paths = [path for path, _ in entries]
    assert "empty" in paths and "var/lib/keep/x" in paths and "etc/link" in paths
    assert paths.index("var") < paths.index("var/lib") < paths.index("var/lib/keep/x")


# --- write_layer -------------------------------------------------------------------------


def layer_of(root, entries, epoch=EPOCH):
    out = io.BytesIO()
    layer = di.write_layer(root, entries, out, epoch)
    return layer, out.getvalue()


def members(blob):
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob)), mode="r:") as tar:
        return {m.name.rstrip("/"): m for m in tar.getmembers()}


def test_layer_entries_whiteouts_hardlinks_and_times(trees):
    base, new = trees
    layer, blob = layer_of(new, di.diff_trees(base, new))
    tar = gzip.decompress(blob)
    assert layer.digest == sha(blob) and layer.size == len(blob)
    assert layer.diff_id == sha(tar) and layer.unpacked == len(tar)
    got = members(blob)
    assert set(got) == {
        "etc", "etc/.wh.gone.conf", "etc/changed.conf", "etc/link", "opt", "opt/app",
        "opt/app/one", "opt/app/two", "srv", "srv/was-dir", "srv/was-file", "usr", "usr/bin",
        "usr/bin/tool", "var", "var/lib", "var/lib/.wh.olddir"}
    assert got["etc/.wh.gone.conf"].isreg() and got["etc/.wh.gone.conf"].size == 0
    assert got["opt/app/one"].isreg() and got["opt/app/one"].size == len(b"same content\n")
    assert got["opt/app/two"].islnk() and got["opt/app/two"].linkname == "opt/app/one"
    assert got["etc/link"].issym() and got["etc/link"].linkname == "changed.conf"
    assert got["srv/was-file"].isdir() and got["srv/was-dir"].isreg()
    assert stat.S_IMODE(got["usr/bin/tool"].mode) == 0o700
    assert got["usr/bin/tool"].uid == os.getuid() and got["usr/bin/tool"].uname == ""
    assert all(m.mtime <= EPOCH for m in got.values())
    # whiteouts come before their siblings
    names = [m.name.rstrip("/") for m in
             tarfile.open(fileobj=io.BytesIO(tar), mode="r:").getmembers()]
    assert names.index("etc/.wh.gone.conf") < names.index("etc/changed.conf")


def test_layer_keeps_older_times_and_is_deterministic(trees):
    _, new = trees
    os.utime(os.path.join(new, "etc/keep.conf"), (1000, 1000))
    entries = di.diff_trees(None, new)
    first, blob = layer_of(new, entries)
    second, again = layer_of(new, entries)
    assert first == second and blob == again
    assert members(blob)["etc/keep.conf"].mtime == 1000
    assert blob[:10] == b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # no name, mtime 0


# --- slimming ----------------------------------------------------------------------------


def test_slim_tree(tmp_path):
    root = str(tmp_path)
    keep = ["usr/share/doc/bash/copyright", "usr/share/locale/locale.alias", "var/log/btmp",
            "var/cache/apt/archives/lock", "var/lib/dpkg/status", "etc/passwd"]
    gone = ["usr/share/doc/bash/README.gz", "usr/share/doc/bash/examples/x",
            "usr/share/doc/onlyreadme/README", "usr/share/man/man1/bash.1.gz",
            "usr/share/locale/de/LC_MESSAGES/bash.mo", "usr/share/info/bash.info.gz",
            "var/lib/apt/lists/deb.debian.org_debian_dists_bookworm_InRelease",
            "var/lib/apt/lists/partial/x", "var/cache/apt/archives/bash_5.2_amd64.deb",
            "var/cache/apt/pkgcache.bin", "var/log/dpkg.log", "var/log/apt/history.log",
            "var/cache/debconf/config.dat-old", "var/lib/dpkg/status-old", "etc/passwd-",
            "etc/resolv.conf", "etc/hostname", "var/cache/ldconfig/aux-cache",
            "dev/null", "tmp/junk", "run/mount/utab", "run/adduser", "usr/sbin/policy-rc.d"]
    for path in keep + gone:
        put(root, path, b"x\n")
    os.symlink("bash", os.path.join(root, "usr/share/doc/bash-doc"))
    put(root, "etc/shadow", b"root:*:20000:0:99999:7:::\nnolast:!::::::\npostgres:!:20001::::::\n",
        0o640)
    inode = os.stat(os.path.join(root, "etc/shadow")).st_ino
    di.slim_tree(root, shadow_day=19000)
    for path in keep:
        assert os.path.exists(os.path.join(root, path)), path
    for path in gone:
        assert not os.path.lexists(os.path.join(root, path)), path
    assert not os.path.lexists(os.path.join(root, "usr/share/doc/bash-doc"))
    assert not os.path.exists(os.path.join(root, "usr/share/doc/onlyreadme"))
    for directory in ("usr/share/man", "var/lib/apt/lists/partial", "dev", "tmp"):
        assert os.listdir(os.path.join(root, directory)) == []
    shadow = os.path.join(root, "etc/shadow")
    with open(shadow) as f:
        assert f.read() == "root:*:19000:0:99999:7:::\nnolast:!::::::\npostgres:!:19000::::::\n"
    assert os.stat(shadow).st_ino == inode and stat.S_IMODE(os.stat(shadow).st_mode) == 0o640


def test_release_epoch_reads_release_and_signed_inrelease(tmp_path):
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "m_debian_dists_bookworm_InRelease").write_text(
        "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\nOrigin: Debian\n"
        "Date: Sat, 11 Jul 2026 10:16:37 UTC\nSHA256:\n x\n-----BEGIN PGP SIGNATURE-----\n")
    (lists / "m_debian-security_dists_bookworm-security_Release").write_text(
        "Origin: Debian\nDate: Thu, 26 Nov 2026 02:14:46 UTC\nMD5Sum:\n")
    (lists / "m_debian_dists_bookworm_main_binary-amd64_Packages").write_text(
        "Date: Fri, 01 Jan 2100 00:00:00 UTC\n")
    assert di.release_epoch(str(lists)) == 1795659286
    assert di.release_epoch(str(tmp_path / "none")) is None


def test_package_versions(tmp_path):
    status = tmp_path / "status"
    status.write_text(
        "Package: redis-server\nStatus: install ok installed\nVersion: 5:7.0.15-1\n\n"
        "Package: redis-tools\nStatus: deinstall ok config-files\nVersion: 5:7.0.15-1\n\n"
        "Package: bash\nStatus: install ok installed\nVersion: 5.2.15-2\n")
    assert di.package_versions(str(status), ["redis-server", "redis-tools"]) == \
        {"redis-server": "5:7.0.15-1"}


# --- configs, manifests, keys ---------------------------------------------------------------


def recipe(name):
    return next(r for r in di.recipes() if r.name == name)


def layers_for(name):
    base = {"diff_id": "sha256:" + "a" * 64, "digest": "sha256:" + "b" * 64, "size": 10,
            "epoch": EPOCH - 100, "created_by": "debootstrap", "versions": {}}
    top = {"diff_id": "sha256:" + "c" * 64, "digest": "sha256:" + "d" * 64, "size": 20,
           "epoch": EPOCH, "created_by": "apt-get install",
           "versions": {"postgresql-15": "15.20-0+deb12u1", "postgresql-common": "248"}}
    return [base, top]


def test_postgres_config():
    layers = layers_for("postgres")
    config = json.loads(di.image_config(recipe("postgres"), "amd64", None, layers))
    c = config["config"]
    assert config["architecture"] == "amd64" and config["os"] == "linux"
    assert "variant" not in config
    assert config["rootfs"] == {"type": "layers",
                                "diff_ids": ["sha256:" + "a" * 64, "sha256:" + "c" * 64]}
    assert config["created"] == "2025-06-15T15:06:40Z"
    assert [h["created_by"] for h in config["history"]] == ["debootstrap", "apt-get install"]
    assert c["Entrypoint"] == ["/usr/local/bin/docker-entrypoint.sh"]
    assert c["Cmd"] == ["postgres"]
    assert c["ExposedPorts"] == {"5432/tcp": {}}
    assert c["Volumes"] == {"/var/lib/postgresql/data": {}}
    assert c["StopSignal"] == "SIGINT"
    assert "PGDATA=/var/lib/postgresql/data" in c["Env"]
    assert c["Env"][0].startswith("PATH=/usr/lib/postgresql/15/bin:")
    assert c["Labels"]["org.opencontainers.image.version"] == "15.20-0+deb12u1"
    assert c["Labels"]["org.opencontainers.image.title"] == "demo/postgres"
    assert c["Healthcheck"]["Test"][0] == "CMD" and c["Healthcheck"]["Interval"] == 10 ** 10


def test_redis_and_web_configs():
    redis = json.loads(di.image_config(recipe("redis"), "arm64", "v8", layers_for("redis")))
    assert redis["variant"] == "v8"
    c = redis["config"]
    assert c["Cmd"][:5] == ["redis-server", "--protected-mode", "no", "--bind", "0.0.0.0"]
    assert c["ExposedPorts"] == {"6379/tcp": {}} and c["Volumes"] == {"/data": {}}
    web = json.loads(di.image_config(recipe("web"), "amd64", None, layers_for("web")))["config"]
    assert web["Cmd"] == ["python3", "-S", "/app/main.py"]
    assert web["Healthcheck"]["Test"] == ["CMD", "python3", "-S", "/app/main.py", "--check"]
    assert web["ExposedPorts"] == {"80/tcp": {}}
    assert "User" not in web and "Entrypoint" not in web


def test_config_is_canonical_and_manifest_points_at_it():
    layers = layers_for("web")
    config = di.image_config(recipe("web"), "amd64", None, layers)
    assert config == di.image_config(recipe("web"), "amd64", None, layers)
    assert config == json.dumps(json.loads(config), sort_keys=True,
                                separators=(",", ":")).encode()
    manifest = json.loads(di.image_manifest(config, layers))
    assert manifest["mediaType"] == di.MT_OCI_MANIFEST
    assert manifest["config"] == {"mediaType": di.MT_OCI_CONFIG, "digest": sha(config),
                                  "size": len(config)}
    assert [(x["digest"], x["size"]) for x in manifest["layers"]] == \
        [("sha256:" + "b" * 64, 10), ("sha256:" + "d" * 64, 20)]


def test_web_recipe_carries_the_app_source_and_its_bytecode():
    web = recipe("web")
    files = dict((path, data) for path, data, _ in web.files)
    with open(demo_web.__file__, "rb") as f:
        assert files["app/web.py"] == f.read()
    assert b"import web" in files["app/main.py"]
    assert "--invalidation-mode checked-hash /app" in web.after


def test_the_web_main_runs_the_app(tmp_path):
    import subprocess
    import sys
    (tmp_path / "web.py").write_bytes(b"def main(argv):\n    print(argv)\n    return 3\n")
    (tmp_path / "main.py").write_bytes(di.WEB_MAIN)
    done = subprocess.run([sys.executable, "-S", str(tmp_path / "main.py"), "--check"],
                          capture_output=True, text=True)
    assert done.returncode == 3 and done.stdout == "['--check']\n"


def test_cache_keys_change_only_for_the_edited_image():
    recipes = di.recipes()
    base, keys = di.cache_keys(di.MIRROR, di.SECURITY_MIRROR, "amd64", recipes)
    assert (base, keys) == di.cache_keys(di.MIRROR, di.SECURITY_MIRROR, "amd64", di.recipes())
    edited = [dataclasses.replace(r, files=(("app/web.py", b"print(1)\n", 0o644),))
              if r.name == "web" else r for r in recipes]
    base2, keys2 = di.cache_keys(di.MIRROR, di.SECURITY_MIRROR, "amd64", edited)
    assert base2 == base and keys2["web"] != keys["web"]
    assert keys2["postgres"] == keys["postgres"] and keys2["redis"] == keys["redis"]
    base3, keys3 = di.cache_keys("http://mirror.example/debian", di.SECURITY_MIRROR, "amd64",
                                 recipes)
    assert base3 != base and all(keys3[name] != keys[name] for name in keys)


def test_image_refs():
    image = di.DemoImage("demo/web", "latest", "sha256:" + "e" * 64, di.MT_OCI_MANIFEST,
                         "/cache/oci", "demo-web", "sha256:" + "f" * 64, (), 0, 0)
    assert image.ref == "demo/web:latest"
    assert image.source == "oci:/cache/oci:demo-web"


# --- entrypoints (run with stubs, as a non-root "postgres") ---------------------------------


def stub(bin_dir, name, body):
    path = bin_dir / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)


@pytest.fixture
def postgres_stubs(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    stub(bin_dir, "id", 'echo 999\n')
    stub(bin_dir, "initdb", f'echo "initdb $*" >> {calls}\necho 15 > "$PGDATA/PG_VERSION"\n'
         f': > "$PGDATA/postgresql.conf"\n: > "$PGDATA/pg_hba.conf"\n')
    stub(bin_dir, "postgres", f'echo "postgres $*" >> {calls}\n'
         f'if [ "$1" = --single ]; then cat >> {calls}; fi\n')
    script = tmp_path / "entrypoint.sh"
    script.write_text(di.POSTGRES_ENTRYPOINT)
    script.chmod(0o755)
    data = tmp_path / "data"
    data.mkdir()
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "PGDATA": str(data)}
    return script, env, data, calls


def test_postgres_entrypoint_initialises_once(postgres_stubs):
    script, env, data, calls = postgres_stubs
    env = dict(env, POSTGRES_DB='my"db', POSTGRES_USER="app", POSTGRES_PASSWORD="pw")
    subprocess.run([str(script)], env=env, check=True, capture_output=True, timeout=30)
    log = calls.read_text()
    assert "initdb --username=app --pwfile=" in log
    assert "--auth-local=trust --auth-host=scram-sha-256" in log
    assert 'CREATE DATABASE "my""db" OWNER "app";' in log
    assert log.rstrip().endswith("postgres")  # then runs the server
    assert "listen_addresses = '*'" in (data / "postgresql.conf").read_text()
    assert "host all all all scram-sha-256" in (data / "pg_hba.conf").read_text()
    calls.write_text("")
    subprocess.run([str(script), "-c", "fsync=off"], env=env, check=True,
                   capture_output=True, timeout=30)
    assert calls.read_text() == "postgres -c fsync=off\n"  # initialised already


def test_postgres_entrypoint_version_skips_init(postgres_stubs):
    script, env, data, calls = postgres_stubs
    subprocess.run([str(script), "postgres", "--version"], env=env, check=True,
                   capture_output=True, timeout=30)
    assert calls.read_text() == "postgres --version\n"
    assert not (data / "PG_VERSION").exists()


def test_redis_entrypoint_defaults(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stub(bin_dir, "id", "echo 999\n")
    stub(bin_dir, "redis-server", 'echo "redis-server $*"\n')
    script = tmp_path / "entrypoint.sh"
    script.write_text(di.REDIS_ENTRYPOINT)
    script.chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin"}
    out = subprocess.run([str(script), "--appendonly", "yes"], env=env, check=True,
                         capture_output=True, text=True, timeout=30).stdout
    assert out == "redis-server --protected-mode no --bind 0.0.0.0 --dir /data " \
                  "--appendonly yes\n"


# --- the web app ------------------------------------------------------------------------------


def test_web_settings_from_links_or_defaults():
    linked = demo_web.settings({
        "DBAPP_PORT_5432_TCP_ADDR": "10.89.0.2", "DBAPP_PORT_5432_TCP_PORT": "5432",
        "REDIS_PORT_6379_TCP_ADDR": "10.89.0.3", "REDIS_PORT_6379_TCP_PORT": "6380",
        "REDIS_PORT": "tcp://10.89.0.3:6379", "DB_NAME": "shop"})
    assert (linked["db_host"], linked["db_port"]) == ("10.89.0.2", 5432)
    assert (linked["redis_host"], linked["redis_port"]) == ("10.89.0.3", 6380)
    assert linked["db_name"] == "shop" and linked["db_user"] == "postgres"
    plain = demo_web.settings({})
    assert (plain["db_host"], plain["db_port"], plain["redis_host"], plain["redis_port"]) == \
        ("dbapp", 5432, "redis", 6379)
    assert plain["db_password"] == di.DEFAULT_PASSWORD == demo_web.DEFAULT_PASSWORD
    assert plain["port"] == 80 and plain["user"] == "www-data" and plain["wait"] == 60.0
    named = demo_web.settings({"DB_HOST": "pg", "REDIS_HOST": "cache", "PORT": "8080",
                               "WAIT_SECONDS": "5.5"})
    assert (named["db_host"], named["redis_host"], named["port"], named["wait"]) == \
        ("pg", "cache", 8080, 5.5)


def test_web_greeting():
    assert demo_web.greeting("abc", 3, 7) == "hello from abc: visits=3 hits=7\n"


def test_web_resp_encoding_and_replies():
    assert demo_web.encode_command(("INCR", "hits")) == b"*2\r\n$4\r\nINCR\r\n$4\r\nhits\r\n"
    assert demo_web.encode_command(("SET", b"k", 7)) == \
        b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\n7\r\n"
    replies = io.BytesIO(b"+PONG\r\n:42\r\n$3\r\na\r\n\r\n$-1\r\n*2\r\n:1\r\n+OK\r\n-ERR wrong\r\n")
    assert demo_web.read_reply(replies) == "PONG"
    assert demo_web.read_reply(replies) == 42
    assert demo_web.read_reply(replies) == b"a\r\n"
    assert demo_web.read_reply(replies) is None
    assert demo_web.read_reply(replies) == [1, "OK"]
    with pytest.raises(demo_web.RedisError, match="ERR wrong"):
        demo_web.read_reply(replies)
    with pytest.raises(ConnectionError):
        demo_web.read_reply(replies)  # nothing left: the server went away


def test_web_redis_client_reconnects_after_a_lost_connection():
    """Against a socket server that answers INCR with a counter and closes each
    connection after two commands: the client makes a new one when it must."""
    import socket
    import threading

    server = socket.create_server(("127.0.0.1", 0))
    counter, connections = [0], [0]

    def serve():
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            connections[0] += 1
            with conn, conn.makefile("rb") as reader:
                for _ in range(2):
                    try:
                        words = demo_web.read_reply(reader)
                    except ConnectionError:
                        break  # the client closed it
                    if words[0] == b"PING":
                        conn.sendall(b"+PONG\r\n")
                    else:
                        counter[0] += 1
                        conn.sendall(b":%d\r\n" % counter[0])

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    client = demo_web.Redis("127.0.0.1", server.getsockname()[1])
    try:
        assert client.ping() is True
        assert client.incr("hits") == 1
        with pytest.raises(OSError):
            client.incr("hits")  # the server closed this connection
        assert client.incr("hits") == 2 and connections[0] == 2
    finally:
        client.close()
        server.close()


# --- pushing (skopeo stubbed) -------------------------------------------------------------


def test_push_once_per_registry_with_its_auth(tmp_path, monkeypatch):
    from fleet.lab.registries import RegistryInfo

    state = tmp_path / "state"
    (state / "registries").mkdir(parents=True)
    ca = tmp_path / "ca.crt"
    ca.write_text("CA")
    plain = RegistryInfo("plain", "10.9.0.1:5000", "http://10.9.0.1:5000", "none", False,
                         None, None, 1)
    basic = RegistryInfo("basic", "10.9.0.1:5001", "https://10.9.0.1:5001", "basic", True,
                         str(ca), None, 2)
    images = [di.DemoImage(f"demo/{name}", "latest", "sha256:" + str(i) * 64,
                           di.MT_OCI_MANIFEST, "/cache/oci", f"demo-{name}",
                           "sha256:" + "f" * 64, (), 0, 0)
              for i, name in enumerate(("postgres", "redis", "web"), 1)]
    calls = []

    def fake_run(argv, **kwargs):
        calls.append(argv)
        return subprocess.CompletedProcess(argv, 0, b"", b"")

    from fleet.lab import seed_images as si

    monkeypatch.setattr(si.subprocess, "run", fake_run)
    monkeypatch.setattr(si.shutil, "which", lambda name: "/usr/bin/" + name)
    monkeypatch.setattr(si, "load_credentials", lambda state_dir: ("fleet", "pw"))
    monkeypatch.setattr(di, "build_demo_images", lambda *args, **kwargs: images)
    demo = state / "demo"
    steps = []
    di.push_demo_images(str(state), [plain, basic], on_progress=steps.append)
    assert len(calls) == 6
    by_dest = {argv[-1]: argv for argv in calls}
    argv = by_dest["docker://10.9.0.1:5000/demo/web:latest"]
    assert argv[-2] == "oci:/cache/oci:demo-web"
    assert "--dest-no-creds" in argv and "--dest-tls-verify=false" in argv
    assert "--preserve-digests" in argv
    argv = by_dest["docker://10.9.0.1:5001/demo/postgres:latest"]
    assert argv[argv.index("--dest-authfile") + 1] == str(demo / "auth.json")
    assert "--dest-tls-verify=true" in argv and "--dest-cert-dir" in argv
    pushed = json.loads((demo / "pushed.json").read_text())
    assert pushed["plain"]["images"]["demo/web:latest"] == images[2].digest
    # the registries now hold the tags: a second push does nothing
    for reg in ("plain", "basic"):
        for image in images:
            link = (state / "registries" / reg / "storage" / "docker" / "registry" / "v2" /
                    "repositories" / image.repo / "_manifests" / "tags" / image.tag /
                    "current" / "link")
            link.parent.mkdir(parents=True)
            link.write_text(image.digest)
    calls.clear()
    di.push_demo_images(str(state), [plain, basic], on_progress=steps.append)
    assert calls == []
    assert steps[-1] == "demo images: already in plain, basic"


class FakeBackends:
    def __init__(self):
        self.visits, self.down = 0, []

    def visit(self, hostname):
        if self.down:
            raise ConnectionError("postgres is down")
        self.visits += 1
        return self.visits, self.visits * 10

    def problems(self):
        return list(self.down)


@pytest.fixture
def web_server():
    import threading

    backends = FakeBackends()
    handler = type("Handler", (demo_web.Handler,), {"backends": backends, "hostname": "h1"})
    server = demo_web.Server(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], backends
    finally:
        server.shutdown()
        server.server_close()


def test_web_answers_pages_on_one_kept_connection(web_server, capsys):
    import http.client

    port, backends = web_server
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        answers = []
        for path in ("/", "/?x=1", "/health", "/nope"):
            conn.request("GET", path)
            reply = conn.getresponse()
            answers.append((reply.status, reply.read().decode()))
        conn.request("HEAD", "/health")
        head = conn.getresponse()
        assert head.status == 200 and head.read() == b""
        conn.request("POST", "/", body=b"x=1")
        posted = conn.getresponse()
        assert posted.status == 405 and posted.read()
    finally:
        conn.close()
    assert answers == [(200, "hello from h1: visits=1 hits=10\n"),
                       (200, "hello from h1: visits=2 hits=20\n"),
                       (200, "ok\n"), (404, "not found\n")]
    backends.down = ["postgres dbapp:5432: refused"]
    assert demo_web.check({"port": port}) == 1
    backends.down = []
    assert demo_web.check({"port": port}) == 0
    # logged after each answer: the earlier requests' lines are there by now
    assert '"GET /?x=1 HTTP/1.1" 200' in capsys.readouterr().err


def test_web_closes_when_asked_and_refuses_garbage(web_server):
    import socket

    port, _ = web_server
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(b"GET /health HTTP/1.0\r\n\r\n")
        reply = conn.makefile("rb").read()  # HTTP/1.0 without keep-alive: closed after
    assert reply.startswith(b"HTTP/1.1 200 OK\r\n") and b"Connection: close" in reply
    assert reply.endswith(b"\r\n\r\nok\n")
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(b"hello there\r\n\r\n")
        reply = conn.makefile("rb").read()
    assert reply.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert demo_web.check({"port": port}, host="127.0.0.2") in (0, 1)


def test_web_request_parsing():
    parsed = demo_web.read_request(io.BytesIO(
        b"\r\nGET /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabcGET"))
    assert parsed == ("GET", "/a", "HTTP/1.1", {"host": "x", "content-length": "3"})
    assert demo_web.read_request(io.BytesIO(b"")) is None
    for bad in (b"GET /\r\n\r\n", b"GET / HTTP/1.1\r\nno colon\r\n\r\n",
                b"GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n"):
        with pytest.raises(ValueError):
            demo_web.read_request(io.BytesIO(bad))
    assert demo_web.keeps_alive("HTTP/1.1", {}) is True
    assert demo_web.keeps_alive("HTTP/1.1", {"connection": "close"}) is False
    assert demo_web.keeps_alive("HTTP/1.0", {}) is False
    assert demo_web.keeps_alive("HTTP/1.0", {"connection": "Keep-Alive"}) is True


def test_web_scram_matches_rfc7677():
    scram = demo_web.Scram("pencil", nonce="rOprNGfwEbeRWgbNEkqO", user="user")
    assert scram.client_first() == "n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
    server_first = ("r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                    "s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096")
    assert scram.client_final(server_first) == (
        "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
        "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
    scram.check_server_final("v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
    with pytest.raises(ConnectionError, match="does not match"):
        scram.check_server_final("v=AAAA")
    with pytest.raises(ConnectionError, match="another nonce"):
        demo_web.Scram("pencil", nonce="abc").client_final("r=xyz,s=AAAA,i=1")


def test_web_start_and_scram_import_little():
    """What the app's start imports (a replica's start is paid on every host of a deploy):
    no re (base64, or the idna codec a str host takes in getaddrinfo: ~6 ms), no socket.py,
    socketserver or threading (enum, selectors: ~7 ms)."""
    import subprocess
    import sys
    path = demo_web.__file__
    code = (f"import _socket, sys; w = {{'__name__': 'web'}}; "  # runpy would import re
            f"exec(compile(open({path!r}).read(), {path!r}, 'exec'), w); "
            "s = w['Scram']('pencil', nonce='n', user='u'); "
            "s.client_final('r=nx,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=1'); "
            "_socket.getaddrinfo(w['_wire_host']('127.0.0.1'), 80); "
            "print(' '.join(sys.modules))")
    loaded = set(subprocess.run([sys.executable, "-S", "-c", code], check=True,
                                capture_output=True, text=True).stdout.split())
    assert not loaded & {"re", "base64", "encodings.idna", "unicodedata", "socket",
                         "socketserver", "threading", "enum", "selectors"}


def test_web_stream_reads_lines_and_sizes():
    import socket

    ours, theirs = socket.socketpair()
    with ours, theirs:
        theirs.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n" + b"y" * 20 + b"\nrest")
        theirs.shutdown(socket.SHUT_WR)
        stream = demo_web.Stream(ours)
        assert stream.readline(100) == b"GET / HTTP/1.1\r\n"
        assert stream.readline(3) == b"Hos"  # a limit cuts a long line
        assert stream.readline() == b"t: x\r\n"
        assert stream.readline(10) == b"y" * 10
        assert stream.read(12) == b"y" * 10 + b"\nr"
        assert stream.readline() == b"est"  # the end: what is left, then b""
        assert stream.readline() == b"" and stream.read(5) == b""


def _pg_message(kind, body):
    import struct

    return kind + struct.pack("!I", 4 + len(body)) + body


def test_web_postgres_client_against_a_scripted_server():
    """md5 password, a query's rows, an error that leaves the connection usable."""
    import hashlib
    import socket
    import struct
    import threading

    server = socket.create_server(("127.0.0.1", 0))
    seen = []

    def serve():
        conn, _ = server.accept()
        with conn, conn.makefile("rb") as reader:
            size, version = struct.unpack("!II", reader.read(8))
            seen.append(("startup", version, reader.read(size - 8)))
            conn.sendall(_pg_message(b"R", struct.pack("!I", 5) + b"salt"))
            kind, size = reader.read(1), struct.unpack("!I", reader.read(4))[0]
            seen.append(("password", kind, reader.read(size - 4)))
            conn.sendall(_pg_message(b"R", struct.pack("!I", 0))
                         + _pg_message(b"S", b"server_version\0" + b"15.8\0")
                         + _pg_message(b"K", struct.pack("!II", 1, 2))
                         + _pg_message(b"Z", b"I"))
            for answer in (
                    _pg_message(b"C", b"INSERT 0 1\0") + _pg_message(b"T", b"\0\1")
                    + _pg_message(b"D", struct.pack("!Hi", 2, 2) + b"42"
                                  + struct.pack("!i", -1))
                    + _pg_message(b"C", b"SELECT 1\0") + _pg_message(b"Z", b"I"),
                    _pg_message(b"E", b"SERROR\0C42P01\0Mrelation \"nope\" does not exist\0\0")
                    + _pg_message(b"Z", b"I"),
                    _pg_message(b"T", b"") + _pg_message(b"D", struct.pack("!Hi", 1, 1) + b"1")
                    + _pg_message(b"Z", b"I")):
                kind, size = reader.read(1), struct.unpack("!I", reader.read(4))[0]
                seen.append(("query", reader.read(size - 4)))
                conn.sendall(answer)
            seen.append(("end", reader.read(1)))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        pg = demo_web.Postgres("127.0.0.1", server.getsockname()[1], "web", "secret",
                               "shop").connect()
        assert pg.query("INSERT ...; SELECT ...") == [["42", None]]
        with pytest.raises(demo_web.PostgresError, match="42P01") as failed:
            pg.query("SELECT * FROM nope")
        assert failed.value.code == "42P01"
        assert pg.query("SELECT 1") == [["1"]]
        pg.close()
        assert pg.closed
        thread.join(5)
    finally:
        server.close()
    startup = seen[0]
    assert startup[1] == demo_web.PROTOCOL_3
    assert startup[2] == (b"user\0web\0database\0shop\0application_name\0fleet-demo-web\0\0")
    inner = hashlib.md5(b"secretweb").hexdigest().encode()
    assert seen[1] == ("password", b"p",
                       b"md5" + hashlib.md5(inner + b"salt").hexdigest().encode() + b"\0")
    assert seen[2] == ("query", b"INSERT ...; SELECT ...\0")
    assert seen[-1] == ("end", b"X")


def test_web_sql_literal():
    assert demo_web.literal("web.1") == "'web.1'"
    assert demo_web.literal("it's") == "'it''s'"
    with pytest.raises(ValueError):
        demo_web.literal("a\0b")

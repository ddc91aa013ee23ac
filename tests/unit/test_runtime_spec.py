"""agent_payload.runtime.spec: what a container runs, planned as Docker plans it."""

import pytest

from agent_payload.runtime import spec
from agent_payload.runtime.spec import SpecError

IMAGE = {"Entrypoint": ["/docker-entrypoint.sh"], "Cmd": ["nginx", "-g", "daemon off;"],
         "Env": ["PATH=/usr/sbin:/usr/bin", "NGINX_VERSION=1.25"]}
PASSWD = """root:x:0:0:root:/root:/bin/sh
# a comment
www-data:x:33:33:www-data:/var/www:/usr/sbin/nologin
app:x:1000:1000::/home/app:/bin/sh
"""
GROUP = """root:x:0:
www-data:x:33:
app:x:1000:
audio:x:29:app,www-data
video:x:44:app
"""


@pytest.mark.parametrize("entrypoint, command, expected", [
    (None, None, ["/docker-entrypoint.sh", "nginx", "-g", "daemon off;"]),
    (None, ["nginx", "-t"], ["/docker-entrypoint.sh", "nginx", "-t"]),
    (None, "nginx -g 'daemon on;'", ["/docker-entrypoint.sh", "nginx", "-g", "daemon on;"]),
    (["/bin/sh", "-c"], None, ["/bin/sh", "-c"]),  # a new entrypoint drops the image's Cmd
    ("/bin/sh", "echo hi", ["/bin/sh", "echo", "hi"]),
    ("", "true", ["true"]),
])
def test_process_argv_as_docker_run(entrypoint, command, expected):
    assert spec.process_argv(IMAGE, entrypoint, command) == expected


def test_no_command_at_all_is_an_error():
    with pytest.raises(SpecError, match="no command"):
        spec.process_argv({}, None, None)
    with pytest.raises(SpecError, match="command: cannot split"):
        spec.process_argv(IMAGE, None, "echo 'unclosed")


def test_environment_merges_image_then_options():
    env = spec.environment(IMAGE, {"NGINX_VERSION": "1.27", "EXTRA": 5}, hostname="abc123",
                           home="/root")
    assert env == ["PATH=/usr/sbin:/usr/bin", "NGINX_VERSION=1.27", "EXTRA=5",
                   "HOSTNAME=abc123", "HOME=/root"]
    assert spec.environment({}, ["A=1", "B="])[:2] == ["A=1", "B="]
    assert f"PATH={spec.DEFAULT_PATH}" in spec.environment({})


@pytest.mark.parametrize("env, message", [(["NOEQUALS"], "not NAME=value"),
                                          ({"A=B": "x"}, "not a valid variable name")])
def test_bad_environment(env, message):
    with pytest.raises(SpecError, match=message):
        spec.environment({}, env)


@pytest.mark.parametrize("user, expected", [
    ("", (0, 0, [], "/root")),
    ("www-data", (33, 33, [29], "/var/www")),
    ("app", (1000, 1000, [29, 44], "/home/app")),
    ("1000", (1000, 1000, [29, 44], "/home/app")),
    ("app:audio", (1000, 29, [], "/home/app")),
    ("4242", (4242, 0, [], "/")),
    ("4242:4343", (4242, 4343, [], "/")),
])
def test_resolve_user(user, expected):
    assert spec.resolve_user(user, PASSWD, GROUP) == expected


@pytest.mark.parametrize("user, message", [("nobody", "unable to find user nobody"),
                                           ("app:wheel", "unable to find group wheel")])
def test_unknown_user_or_group(user, message):
    with pytest.raises(SpecError, match=message):
        spec.resolve_user(user, PASSWD, GROUP)


def test_capabilities():
    default = spec.capabilities()
    assert len(default) == 14 and "CAP_SYS_ADMIN" not in default
    assert "CAP_SYS_MODULE" not in default and "CAP_NET_RAW" in default
    changed = spec.capabilities(cap_add=["net_admin", "CAP_SYS_PTRACE"], cap_drop=["NET_RAW"])
    assert "CAP_NET_ADMIN" in changed and "CAP_SYS_PTRACE" in changed
    assert "CAP_NET_RAW" not in changed
    assert spec.capabilities(cap_drop=["ALL"], cap_add=["chown"]) == ["CAP_CHOWN"]
    assert len(spec.capabilities(privileged=True)) == len(spec.CAP_NUMBERS)
    numbers = [spec.CAP_NUMBERS[c] for c in changed]
    assert numbers == sorted(numbers)
    with pytest.raises(SpecError, match="cap_add: unknown capability 'FLY'"):
        spec.capabilities(cap_add=["FLY"])


@pytest.mark.parametrize("value, expected", [
    ("512m", 512 * 1024 ** 2), ("1g", 1024 ** 3), ("1.5G", int(1.5 * 1024 ** 3)),
    ("100k", 102400), ("64mb", 64 * 1024 ** 2), (1048576, 1048576), ("4096", 4096),
    ("-1", -1), (None, None),
])
def test_parse_bytes(value, expected):
    assert spec.parse_bytes(value, "memory") == expected


@pytest.mark.parametrize("value", ["lots", "12x", "-5m", True])
def test_parse_bytes_refuses(value):
    with pytest.raises(SpecError, match="memory: "):
        spec.parse_bytes(value, "memory")


def test_hosts_and_resolv_conf():
    hosts = spec.hosts_file("abc123", "10.88.0.2", [("db dbapp", "10.88.0.3")])
    assert hosts.splitlines()[0] == "127.0.0.1\tlocalhost"
    assert "10.88.0.2\tabc123" in hosts and hosts.endswith("10.88.0.3\tdb dbapp\n")
    host = "# generated\nnameserver 127.0.0.53\nsearch example.com\noptions edns0\n"
    assert spec.resolv_conf(host) == ("# generated\nsearch example.com\noptions edns0\n"
                                      "nameserver 8.8.8.8\nnameserver 8.8.4.4\n")
    assert spec.resolv_conf("nameserver 10.0.0.2\n") == "nameserver 10.0.0.2\n"
    assert spec.resolv_conf(host, "host") == host


def test_masked_and_readonly_paths_cover_what_the_issue_names():
    for path in ("/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/sched_debug",
                 "/proc/scsi", "/proc/acpi", "/sys/firmware"):
        assert path in spec.MASKED_PATHS
    for path in ("/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus", "/proc/fs"):
        assert path in spec.READONLY_PATHS


@pytest.mark.parametrize("text, expected", [
    ("/srv/data:/data", {"type": "bind", "source": "/srv/data", "target": "/data",
                         "readonly": False}),
    ("/etc/app.conf:/etc/app.conf:ro", {"type": "bind", "source": "/etc/app.conf",
                                        "target": "/etc/app.conf", "readonly": True}),
    ("pgdata:/var/lib/postgresql/data", {"type": "volume", "source": "pgdata",
                                         "target": "/var/lib/postgresql/data",
                                         "readonly": False}),
    ("cache:/cache:rw", {"type": "volume", "source": "cache", "target": "/cache",
                         "readonly": False}),
    ("/scratch/", {"type": "volume", "source": None, "target": "/scratch", "readonly": False}),
])
def test_parse_volume(text, expected):
    assert spec.parse_volume(text) == expected


@pytest.mark.parametrize("text, message", [
    ("data", "must be absolute"), ("/a:/b:rx", "is not SOURCE:TARGET"),
    ("bad name!:/x", "neither an absolute host path nor a volume name"),
    ("v:/a/../b", "may not contain"), ("/a:/b:ro:x", "is not SOURCE:TARGET"),
])
def test_parse_volume_refuses(text, message):
    with pytest.raises(SpecError, match=message):
        spec.parse_volume(text)


@pytest.mark.parametrize("text, expected", [("nofile=1024:2048", ("nofile", 1024, 2048)),
                                            ("NPROC=64", ("nproc", 64, 64)),
                                            ("core=-1", ("core", -1, -1))])
def test_parse_ulimit(text, expected):
    assert spec.parse_ulimit(text) == expected


@pytest.mark.parametrize("text", ["files=1", "nofile", "nofile=a:b", "nofile=10:5"])
def test_parse_ulimit_refuses(text):
    with pytest.raises(SpecError, match="ulimits: "):
        spec.parse_ulimit(text)


def test_network_names_and_macs():
    from agent_payload.runtime import network
    assert network._mac("10.89.0.2") == "02:42:0a:59:00:02"
    assert network._device("bridge") == "fleet0"
    assert network._device("frontend").startswith("fl-") and len(network._device("x")) <= 15
    assert network._device("bridge", "/var/lib/fleet/other").startswith("fl-")
    assert network.netns_name("ab" * 32) == "fleet-abababababab"
    with pytest.raises(network.NetworkError, match="is not a network name"):
        network._check_name("../x")


@pytest.mark.parametrize("text, expected", [
    ("8887:80", {"host_ip": "", "host_port": 8887, "port": 80, "proto": "tcp"}),
    ("127.0.0.1:8443:443", {"host_ip": "127.0.0.1", "host_port": 8443, "port": 443,
                            "proto": "tcp"}),
    ("53:53/udp", {"host_ip": "", "host_port": 53, "port": 53, "proto": "udp"}),
    ("80", {"host_ip": "", "host_port": 0, "port": 80, "proto": "tcp"}),
])
def test_parse_port(text, expected):
    assert spec.parse_port(text) == expected


@pytest.mark.parametrize("text", ["http", "80/sctp", "70000:80", "a:b:c:d", "0"])
def test_parse_port_refuses(text):
    with pytest.raises(SpecError, match="ports: "):
        spec.parse_port(text)


def test_link_env_as_docker_writes_it():
    env = spec.link_env("db-app", "web", "10.90.0.5", ["5432/tcp", "80/tcp"],
                        ["PATH=/bin", "HOME=/root", "PGDATA=/data"])
    assert env == [
        "DB_APP_NAME=/web/db-app", "DB_APP_PORT=tcp://10.90.0.5:80",
        "DB_APP_PORT_80_TCP=tcp://10.90.0.5:80", "DB_APP_PORT_80_TCP_ADDR=10.90.0.5",
        "DB_APP_PORT_80_TCP_PORT=80", "DB_APP_PORT_80_TCP_PROTO=tcp",
        "DB_APP_PORT_5432_TCP=tcp://10.90.0.5:5432", "DB_APP_PORT_5432_TCP_ADDR=10.90.0.5",
        "DB_APP_PORT_5432_TCP_PORT=5432", "DB_APP_PORT_5432_TCP_PROTO=tcp",
        "DB_APP_ENV_PGDATA=/data"]


def test_link_env_across_hosts_uses_published_ports():
    env = spec.link_env("dbapp", "web", "10.231.0.11", ["5432/tcp"], [],
                        {"5432/tcp": "15432"})
    assert env == ["DBAPP_NAME=/web/dbapp", "DBAPP_PORT=tcp://10.231.0.11:15432",
                   "DBAPP_PORT_5432_TCP=tcp://10.231.0.11:15432",
                   "DBAPP_PORT_5432_TCP_ADDR=10.231.0.11", "DBAPP_PORT_5432_TCP_PORT=15432",
                   "DBAPP_PORT_5432_TCP_PROTO=tcp"]

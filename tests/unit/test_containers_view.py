"""fleet.containers: docker ps's STATUS column, and the fleet-wide views (ps's services,
inspect anywhere, a service's merged logs, top)."""

import datetime
import json

import pytest

from fleet.containers import ago, status_text

NOW = datetime.datetime(2026, 11, 28, 12, 0, 0, tzinfo=datetime.timezone.utc)


def test_ago():
    assert ago("2026-11-28T11:56:59.123456789Z", NOW) == "3 minutes"
    assert ago("2026-11-28T11:59:59.9Z", NOW) == "Less than a second"
    assert ago("2026-11-27T12:00:00Z", NOW) == "1 day"
    assert ago("0001-01-01T00:00:00Z", NOW) == ""


def test_status_text():
    assert status_text({"Status": "running", "Running": True,
                        "StartedAt": "2026-11-28T10:00:00Z"}, NOW) == "Up 2 hours"
    assert status_text({"Status": "exited", "ExitCode": 143,
                        "FinishedAt": "2026-11-28T11:59:58Z"}, NOW) == "Exited (143) 2 seconds ago"
    assert status_text({"Status": "created"}, NOW) == "Created"
    assert status_text({"Status": "running", "Running": True, "Restarting": True,
                        "ExitCode": 1, "FinishedAt": "2026-11-28T11:59:00Z"},
                       NOW) == "Restarting (1) 1 minute ago"


def test_ports_text():
    from fleet.containers import ports_text
    assert ports_text({"Ports": {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8887"}],
                                 "53/udp": [{"HostIp": "0.0.0.0", "HostPort": "53"}]}}) == \
        "0.0.0.0:53->53/udp, 0.0.0.0:8887->80/tcp"
    assert ports_text({}) == ""


# The fleet-wide views: services from labels, merged logs, sizes; the commands' output
# from canned host answers.

def _container(name, project=None, service=None, replica=None, replicas=None,
               running=True, restarting=False, cid=None):
    labels = {}
    for key, value in (("fleet.project", project), ("fleet.service", service),
                       ("fleet.replica", replica), ("fleet.replicas", replicas)):
        if value is not None:
            labels[key] = value
    return {"Id": cid or (name.encode().hex() * 8)[:64], "Name": "/" + name,
            "Path": "sleep", "Args": ["60"], "Created": "2026-11-28T11:00:00.0Z",
            "Config": {"Image": "busybox", "Labels": labels},
            "State": {"Status": "running" if running else "exited", "Running": running,
                      "Restarting": restarting, "StartedAt": "2026-11-28T11:00:00Z",
                      "FinishedAt": "2026-11-28T11:30:00Z", "ExitCode": 0},
            "NetworkSettings": {"Ports": {}}}


def _outcomes():
    return {
        "lab01": ([_container("web.2", "shop", "web", "2", "3"),
                   _container("loner"),
                   _container("db", "shop")], None),
        "lab02": ([_container("web.1", "shop", "web", "1", "3"),
                   _container("web.3", "shop", "web", "3", "3", restarting=True),
                   _container("api.1", "blog", "api", "1", "1", running=False)], None),
        "lab03": (None, RuntimeError("connection refused")),
    }


def test_service_of_and_sorted_containers():
    from fleet.containers import service_of, sorted_containers
    assert service_of(_container("loner")) == ("-", "loner")
    assert service_of(_container("db", "shop")) == ("shop", "db")
    assert service_of(_container("web.1", "shop", "web", "1", "3")) == ("shop", "web")
    order = [(host, c["Name"]) for host, c in sorted_containers(_outcomes())]
    assert order == [("lab02", "/api.1"), ("lab01", "/db"), ("lab02", "/web.1"),
                     ("lab01", "/web.2"), ("lab02", "/web.3"), ("lab01", "/loner")]


def test_group_services():
    from fleet.containers import group_services
    assert group_services(_outcomes()) == [
        {"project": "blog", "service": "api", "running": 0, "wanted": 1, "hosts": ["lab02"]},
        {"project": "shop", "service": "db", "running": 1, "wanted": 1, "hosts": ["lab01"]},
        # web.3 is between two runs of its restart policy: not counted as running
        {"project": "shop", "service": "web", "running": 2, "wanted": 3,
         "hosts": ["lab01", "lab02"]},
        {"project": "-", "service": "loner", "running": 1, "wanted": 1, "hosts": ["lab01"]},
    ]
    # no fleet.replicas label: as many wanted as there are containers; a scaled-down
    # service shows more running than wanted; a bad label counts as none
    same_name = {"a": ([_container("cache")], None), "b": ([_container("cache")], None),
                 "c": ([_container("q.1", "p", "q", "1", "1"),
                        _container("q.2", "p", "q", "2", "x")], None)}
    assert [(g["service"], g["running"], g["wanted"], g["hosts"])
            for g in group_services(same_name)] == [("q", 2, 1, ["c"]),
                                                    ("cache", 2, 2, ["a", "b"])]


def test_replicas_of():
    from fleet.containers import replicas_of
    outcomes = _outcomes()
    assert [(h, c["Name"]) for h, c in replicas_of(outcomes, "web")] == [
        ("lab02", "/web.1"), ("lab01", "/web.2"), ("lab02", "/web.3")]
    assert replicas_of(outcomes, "web", project="blog") == []
    assert [c["Name"] for _, c in replicas_of(outcomes, "loner")] == ["/loner"]
    assert replicas_of(outcomes, "web.1") == []  # a replica's name is not its service


def test_merge_logs_orders_by_time_across_replicas():
    from fleet.containers import merge_logs
    merged = merge_logs([
        ("lab01", "web.1", [{"log": "a1\n", "time": "2026-11-28T11:00:00.5Z"},
                            {"log": "a2\n", "time": "2026-11-28T11:00:02.000000001Z"}]),
        ("lab02", "web.2", [{"log": "b1\n", "time": "2026-11-28T11:00:01Z"},
                            {"log": "b2\n", "time": "2026-11-28T11:00:01Z"},
                            {"log": "b3\n", "time": "2026-11-28T11:00:02Z"}]),
    ])
    assert [(host, entry["log"]) for host, _, entry in merged] == [
        ("lab01", "a1\n"), ("lab02", "b1\n"), ("lab02", "b2\n"), ("lab02", "b3\n"),
        ("lab01", "a2\n")]


def test_size_text():
    from fleet.containers import size_text
    assert size_text(512) == "512B"
    assert size_text(3 * 1024 * 1024 + 600 * 1024) == "3.586MiB"
    assert size_text(2 * 1024 ** 3) == "2GiB"
    assert size_text(None) == "-"


class _FakeSession:
    """A session whose container_info answers from a script of log lines."""

    def __init__(self, logs):
        self.logs = logs  # {id: [(entry, running after it)]}, read one entry per call
        self.calls = []

    def call(self, module, params):
        self.calls.append(dict(params))
        script = self.logs.get(params["name"])
        if script is None:
            return {"failed": True, "msg": f"no such container: {params['name']}"}
        offset = params.get("offset") or 0
        if params.get("tail") is not None:
            offset = max(offset, len(script) - params["tail"] - 1)
        shown = script[offset:offset + 1] if offset < len(script) else []
        running = shown[-1][1] if shown else script[-1][1]
        return {"containers": [{"State": {"Running": running}}],
                "logs": [entry for entry, _ in shown], "log_offset": offset + len(shown)}

    def close(self):
        pass


def test_replica_logs_follow_until_every_replica_ended(monkeypatch):
    from fleet import containers
    from fleet.transport import session, targets

    def line(text, second):
        return {"log": text + "\n", "stream": "stdout", "time": f"2026-11-28T11:00:0{second}Z"}

    sessions = {"lab01": _FakeSession({"id1": [(line("one-a", 1), True),
                                              (line("one-b", 4), False)]}),
                "lab02": _FakeSession({"id2": [(line("two-a", 2), True),
                                              (line("two-b", 3), True),
                                              (line("two-c", 5), False)]})}
    monkeypatch.setattr(targets, "target_for", lambda inventory, host, timeout: host)
    monkeypatch.setattr(session.Session, "open", staticmethod(lambda host: sessions[host]))
    reader = containers.ReplicaLogs(None, [
        ("lab01", _container("web.1", cid="id1")), ("lab02", _container("web.2", cid="id2")),
        ("lab02", _container("web.9", cid="gone"))])
    rounds = []
    while reader.following:
        entries, errors = reader.read()
        assert errors == {}
        rounds.append([(host, name, entry["log"].strip()) for host, name, entry in entries])
    assert rounds == [[("lab01", "web.1", "one-a"), ("lab02", "web.2", "two-a")],
                      [("lab02", "web.2", "two-b"), ("lab01", "web.1", "one-b")],
                      [("lab02", "web.2", "two-c")], []]
    assert sessions["lab01"].calls[1] == {"name": "id1", "logs": True, "offset": 1}
    reader.close()


def test_replica_logs_tail_and_errors(monkeypatch):
    from fleet import containers
    from fleet.transport import session, targets

    def opened(host):
        if host == "lab02":
            raise OSError("connection refused")
        return _FakeSession({"id1": [({"log": f"l{i}\n", "time": f"2026-11-28T11:00:0{i}Z"},
                                      False) for i in range(5)]})

    monkeypatch.setattr(targets, "target_for", lambda inventory, host, timeout: host)
    monkeypatch.setattr(session.Session, "open", staticmethod(opened))
    reader = containers.ReplicaLogs(None, [("lab01", _container("a", cid="id1")),
                                           ("lab02", _container("b", cid="id2"))], tail=1)
    entries, errors = reader.read()
    assert [entry["log"] for _, _, entry in entries] == ["l3\n"]  # the fake: one per call
    assert list(errors) == ["lab02"] and "refused" in str(errors["lab02"])


# The commands, on canned answers (no host is asked).

@pytest.fixture
def fleet_cli(tmp_path):
    """run(*args) through click's runner (plain output: not a terminal)."""
    from click.testing import CliRunner

    from fleet.cli import main
    inventory = tmp_path / "hosts.ini"
    inventory.write_text("lab01\nlab02\nlab03\n")

    def run(*args):
        return CliRunner(env={"FLEET_INVENTORY": str(inventory)}).invoke(
            main, list(args), catch_exceptions=False)

    return run


@pytest.mark.parametrize("command", ["ps", "inspect", "logs", "top"])
def test_the_commands_have_help_with_an_example(fleet_cli, command):
    result = fleet_cli(command, "--help")
    assert result.exit_code == 0 and "Example" in result.output, result.output


def test_ps_shows_containers_by_service_and_the_services(fleet_cli, monkeypatch):
    monkeypatch.setattr("fleet.containers.list_containers",
                        lambda inventory, hosts, include_stopped, forks: _outcomes())
    result = fleet_cli("ps", "-a")
    assert result.exit_code == 4, result.output  # lab03 did not answer
    lines = result.output.splitlines()
    assert lines[0].split() == ["host", "name", "project", "service", "id", "image",
                                "command", "created", "status", "ports"]
    assert [line.split()[:4] for line in lines[1:7]] == [
        ["lab02", "api.1", "blog", "api"], ["lab01", "db", "shop", "db"],
        ["lab02", "web.1", "shop", "web"], ["lab01", "web.2", "shop", "web"],
        ["lab02", "web.3", "shop", "web"], ["lab01", "loner", "-", "loner"]]
    services = lines[lines.index("") + 1:]
    assert [line.split() for line in services] == [
        ["project", "service", "replicas", "hosts"], ["blog", "api", "0/1", "lab02"],
        ["shop", "db", "1/1", "lab01"], ["shop", "web", "2/3", "lab01,", "lab02"],
        ["-", "loner", "1/1", "lab01"], ["lab03:", "connection", "refused"]]
    shown = json.loads(fleet_cli("ps", "-o", "json").output)
    assert [h["host"] for h in shown["hosts"]] == ["lab01", "lab02", "lab03"]
    assert shown["hosts"][2] == {"host": "lab03", "ok": False, "containers": [],
                                 "msg": "connection refused"}
    assert shown["services"][2] == {"project": "shop", "service": "web", "running": 2,
                                    "wanted": 3, "hosts": ["lab01", "lab02"]}


def test_inspect_searches_every_host(fleet_cli, monkeypatch):
    calls = []

    def find(inventory, hosts, name, forks):
        calls.append((hosts, name))
        if name == "web.1":
            return [("lab02", _container("web.1"))], {"lab03": RuntimeError("refused")}
        return [], {}

    monkeypatch.setattr("fleet.containers.find_container", find)
    result = fleet_cli("inspect", "web.1")
    assert result.exit_code == 4 and calls == [(["lab01", "lab02", "lab03"], "web.1")]
    shown = json.loads(result.stdout)
    assert [(c["Host"], c["Name"]) for c in shown] == [("lab02", "/web.1")]
    assert list(shown[0])[0] == "Host"
    assert "warning: lab03: refused" in result.stderr
    missing = fleet_cli("inspect", "nothing")
    assert missing.exit_code == 1 and missing.output == "Error: no such container: nothing\n"
    many = fleet_cli("inspect", "a", "b", "c")
    assert many.exit_code == 2 and "expected NAME or HOST NAME" in many.output


def test_top_renders_the_figures(fleet_cli, monkeypatch):
    MiB = 1024 * 1024

    def stats(inventory, hosts, forks):
        one = dict(_container("web.1", "shop", "web", "1", "2"),
                   Stats={"cpu_percent": 12.5, "cpu_ns": 10, "memory": 3 * MiB,
                          "memory_limit": 64 * MiB, "pids": 2})
        ended = dict(_container("gone"), Stats=None)
        return {"lab01": ([one, ended], None), "lab02": ([], None)}

    monkeypatch.setattr("fleet.containers.list_stats", stats)
    result = fleet_cli("top")
    assert result.exit_code == 0, result.output
    assert [line.split() for line in result.output.splitlines()] == [
        ["host", "name", "project", "service", "cpu", "%", "mem", "usage", "/", "limit",
         "mem", "%", "pids"],
        ["lab01", "web.1", "shop", "web", "12.50%", "3MiB", "/", "64MiB", "4.69%", "2"]]
    shown = json.loads(fleet_cli("top", "-o", "json").output)
    assert shown["hosts"][0]["containers"] == [
        {"id": _container("web.1")["Id"], "name": "web.1", "project": "shop",
         "service": "web", "cpu_percent": 12.5, "memory": 3 * MiB,
         "memory_limit": 64 * MiB, "pids": 2}]
    assert shown["hosts"][1] == {"host": "lab02", "ok": True, "containers": []}

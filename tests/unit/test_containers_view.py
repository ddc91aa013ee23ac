"""fleet.containers: docker ps's STATUS column."""

import datetime

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

"""Connections: one session per host and become user, even when threads ask at once."""

import threading
import time

import pytest

from fleet.executor import connections as conns_module
from fleet.executor.connections import Connections
from fleet.inventory import load_inventory
from fleet.transport.ssh import TransportError


@pytest.fixture
def inventory(tmp_path):
    path = tmp_path / "hosts.ini"
    path.write_text("h1 ansible_host=10.9.9.1\nh2 ansible_host=10.9.9.2\n")
    return load_inventory(str(path))


def test_threads_asking_at_once_share_one_open(inventory, monkeypatch):
    opened = []

    class FakeSession:
        @classmethod
        def open(cls, target):
            opened.append(target.host)
            time.sleep(0.05)  # long enough for the other threads to ask meanwhile
            return cls()

        def close(self):
            pass

    monkeypatch.setattr(conns_module, "Session", FakeSession)
    connections = Connections(inventory)
    got = []
    threads = [threading.Thread(target=lambda: got.append(connections.get("h1")))
               for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert opened == ["10.9.9.1"] and len(got) == 8 and len(set(map(id, got))) == 1
    connections.get("h2")
    assert opened == ["10.9.9.1", "10.9.9.2"]


def test_a_failed_open_is_remembered_and_shared(inventory, monkeypatch):
    attempts = []

    class FailingSession:
        @classmethod
        def open(cls, target):
            attempts.append(target.host)
            time.sleep(0.05)
            raise TransportError("unreachable: connect to 10.9.9.1:22 timed out")

    monkeypatch.setattr(conns_module, "Session", FailingSession)
    connections = Connections(inventory)
    errors = []

    def ask():
        try:
            connections.get("h1")
        except TransportError as exc:
            errors.append(str(exc))

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert attempts == ["10.9.9.1"] and len(errors) == 4
    with pytest.raises(TransportError, match="timed out"):
        connections.get("h1")
    assert attempts == ["10.9.9.1"]


def test_an_unexpected_failure_lets_the_next_caller_try_again(inventory, monkeypatch):
    calls = []

    class FlakySession:
        @classmethod
        def open(cls, target):
            calls.append(target.host)
            if len(calls) == 1:
                raise RuntimeError("a bug")
            return cls()

    monkeypatch.setattr(conns_module, "Session", FlakySession)
    connections = Connections(inventory)
    with pytest.raises(RuntimeError):
        connections.get("h1")
    assert isinstance(connections.get("h1"), FlakySession) and len(calls) == 2


class _SlowSession:
    """Opens after ``delay`` seconds; h2 (10.9.9.2) is unreachable."""

    delay = 0.05
    opened, closed = [], []

    @classmethod
    def open(cls, target):
        time.sleep(cls.delay)
        if target.host == "10.9.9.2":
            raise TransportError("unreachable: connect to 10.9.9.2:22 timed out")
        session = cls()
        cls.opened.append(target.host)
        return session

    def close(self):
        self.closed.append(self)


@pytest.fixture
def slow_session(monkeypatch):
    monkeypatch.setattr(_SlowSession, "opened", [])
    monkeypatch.setattr(_SlowSession, "closed", [])
    monkeypatch.setattr(conns_module, "Session", _SlowSession)
    return _SlowSession


def test_prefetch_opens_in_the_background_and_get_waits_for_it(inventory, slow_session):
    connections = Connections(inventory)
    started = time.monotonic()
    connections.prefetch(["h1", "h2"], limit=2)
    assert time.monotonic() - started < slow_session.delay  # it returned at once
    session = connections.get("h1")
    assert slow_session.opened == ["10.9.9.1"]  # one open: get used the prefetch's
    assert connections.get("h1") is session
    with pytest.raises(TransportError, match="10.9.9.2:22 timed out"):
        connections.get("h2")  # the prefetch's failure, reported when a task needs it
    connections.close()


def test_a_session_a_prefetch_opens_after_close_is_closed(inventory, slow_session):
    connections = Connections(inventory)
    connections.prefetch(["h1"], limit=1)
    connections.close()
    deadline = time.monotonic() + 5
    while not slow_session.closed and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(slow_session.closed) == 1
    with pytest.raises(TransportError, match="the run is over"):
        connections.get("h1")

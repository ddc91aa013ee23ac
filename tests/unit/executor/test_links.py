"""Links across hosts, resolved on the controller (fleet/executor/links.py) against
recording sessions."""

import threading

import pytest

from fleet.executor import links


class FakeSession:
    def __init__(self, containers, calls):
        self.containers, self.calls = containers, calls

    def call(self, module, params, timeout=None):
        self.calls.append((module, params["name"]))
        return {"containers": [c for c in self.containers if c["Name"] == "/" + params["name"]]}


class FakeConnections:
    def __init__(self, by_host):
        self.calls = []
        self.sessions = {h: FakeSession(c, self.calls) for h, c in by_host.items()}

    def get(self, host, become=None, become_user=None):
        return self.sessions[host]

    def address(self, host):
        return "10.0.0." + host[-1]


def _db(published=True):
    ports = {"5432/tcp": [{"HostIp": "127.0.0.1", "HostPort": "1"},
                          {"HostIp": "0.0.0.0", "HostPort": "15432"}]} if published else {}
    return {"Name": "/db", "Config": {"ExposedPorts": {"5432/tcp": {}}, "Env": ["A=1"]},
            "NetworkSettings": {"Ports": ports}}


def test_remote_target_becomes_a_remote_link():
    conns = FakeConnections({"h1": [_db()], "h2": [], "h3": []})
    lookups = links.LinkLookups(conns)
    args = {"image": "x", "links": ["db:dbapp"]}
    task = object()
    resolved = links.resolve(lookups, task, "h2", args, ["h1", "h2", "h3"], (None, None))
    assert resolved["links"] == []
    assert resolved["_remote_links"] == [{"name": "db", "alias": "dbapp",
                                          "address": "10.0.0.1",
                                          "ports": {"5432/tcp": "15432"}, "env": ["A=1"]}]
    # the same task on another host asks nobody again
    links.resolve(lookups, task, "h3", args, ["h1", "h2", "h3"], (None, None))
    assert len(conns.calls) == 3


def test_local_target_stays_local_and_missing_one_is_an_error():
    conns = FakeConnections({"h1": [_db()], "h2": []})
    lookups = links.LinkLookups(conns)
    task = object()
    resolved = links.resolve(lookups, task, "h1", {"links": ["db"]}, ["h1", "h2"],
                             (None, None))
    assert resolved["links"] == ["db"] and resolved["_remote_links"] == []
    with pytest.raises(links.LinkError, match="no container named cache on h2 or on any"):
        links.resolve(lookups, task, "h2", {"links": ["cache"]}, ["h1", "h2"], (None, None))


def test_exposed_but_unpublished_names_the_port():
    conns = FakeConnections({"h1": [_db(published=False)], "h2": []})
    with pytest.raises(links.LinkError, match=r"db runs on h1 and exposes 5432/tcp without "
                                              r"publishing it: publish it there \(ports: "
                                              r"\['5432'\]\)"):
        links.resolve(links.LinkLookups(conns), object(), "h2", {"links": ["db"]},
                      ["h1", "h2"], (None, None))


def test_one_lookup_for_concurrent_hosts():
    conns = FakeConnections({f"h{i}": [] for i in range(1, 9)})
    conns.sessions["h1"].containers = [_db()]
    lookups, task = links.LinkLookups(conns), object()
    hosts = list(conns.sessions)
    threads = [threading.Thread(target=links.resolve, args=(
        lookups, task, h, {"links": ["db"]}, hosts, (None, None))) for h in hosts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(conns.calls) == len(hosts)


def test_needs_lookup():
    assert links.needs_lookup("container", {"image": "x", "links": ["db"]})
    assert not links.needs_lookup("container", {"image": "x", "links": ["db"],
                                                "state": "absent"})
    assert not links.needs_lookup("container", {"links": ["db"]})
    assert not links.needs_lookup("copy", {"image": "x", "links": ["db"]})

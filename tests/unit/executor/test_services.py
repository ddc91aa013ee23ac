"""Replicated services on the controller (fleet/executor/services.py) against fake
sessions: placement from what runs, one run for the whole play, a rollout that stops."""

import threading

from fleet.executor import services


class FakeInventory:
    def group_names(self, host):
        return ["all", "web" if host != "h3" else "db"]


class FakeSession:
    def __init__(self, host, world, calls):
        self.host, self.world, self.calls = host, world, calls

    def call(self, module, params, timeout=None, check=False):
        self.calls.append((self.host, module, dict(params)))
        if module == "container_info":
            return {"containers": [
                {"Name": f"/web.{n}", "Config": {"Labels": {
                    "fleet.service": "web", "fleet.replica": str(n),
                    "fleet.project": "p"}}} for n in self.world.get(self.host, [])]}
        mine = params["_replicas"]
        batch = params["_batch"]
        if "fail" in params.get("command", "") and params.get("_wait"):
            return {"failed": True, "changed": True, "msg": f"web.{batch[0]} did not stay up"}
        self.world[self.host] = list(mine)
        stale = [n for n in mine if n not in batch] if params.get("_probe") and \
            "v2" in params.get("command", "") else []
        return {"changed": bool(batch), "stale": stale, "removed": [], "containers": [
            {"Config": {"Labels": {"fleet.replica": str(n)}}} for n in batch]}


class FakeConnections:
    def __init__(self, world):
        self.inventory = FakeInventory()
        self.world, self.calls = world, []

    def get(self, host, become=None, become_user=None):
        return FakeSession(host, self.world, self.calls)


HOSTS = ["h1", "h2", "h3"]


def _run(conns, args, hosts=HOSTS):
    runs = services.ServiceRuns(conns)
    task, results = object(), {}

    def one(host):
        results[host] = runs.result(task, host, args, hosts, (None, None))

    threads = [threading.Thread(target=one, args=(h,)) for h in hosts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_placed_once_for_the_play_and_constraints_apply():
    conns = FakeConnections({})
    args = {"name": "web", "replicas": 4, "labels": {"fleet.project": "p"},
            "constraints": ["group == web"], "command": "v1"}
    results = _run(conns, args)
    assert {h: r["replicas"] for h, r in results.items()} == {
        "h1": ["web.1", "web.3"], "h2": ["web.2", "web.4"], "h3": []}
    assert sum(1 for c in conns.calls if c[1] == "container_info") == 3


def test_a_rollout_stops_at_the_first_failed_batch():
    conns = FakeConnections({"h1": [1, 3], "h2": [2], "h3": []})
    args = {"name": "web", "replicas": 3, "labels": {"fleet.project": "p"},
            "command": "v2 fail", "update": {"parallelism": 1}}
    results = _run(conns, args)
    batches = [c[2]["_batch"] for c in conns.calls
               if c[1] == "container" and c[2].get("_wait")]
    assert batches == [[1]]  # web.1 failed: web.2 and web.3 were not touched
    assert results["h1"]["failed"] and "did not stay up" in results["h1"]["msg"]
    assert "rollout stopped" in results["h2"]["msg"]


def test_fixed_ports_and_placement_errors_fail_every_host():
    assert services._fixed_ports(["8887:80", "80", "127.0.0.1::53/udp",
                                  "10.0.0.1:5353:53"]) == ["8887", "5353"]
    conns = FakeConnections({})
    args = {"name": "web", "replicas": 4, "labels": {}, "ports": ["8887:80"]}
    results = _run(conns, args)
    assert all(r["failed"] and "need 4 hosts" in r["msg"] for r in results.values())
    assert not [c for c in conns.calls if c[1] == "container"]

"""The volume and volume_info modules against a temporary store."""

import json
import os

from tests.unit.modules.conftest import call


def _container_using(store, name, volume):
    directory = os.path.join(store, "containers", "c" * 64)
    os.makedirs(directory)
    with open(os.path.join(directory, "config.json"), "w") as handle:
        json.dump({"name": name, "mounts": [{"type": "bind", "volume": volume,
                                             "target": "/data"}]}, handle)


def test_create_list_and_remove(tmp_path):
    store = str(tmp_path / "store")
    made, _ = call("volume", {"name": "pgdata", "store": store})
    assert made["changed"] and made["volume"]["Mountpoint"].endswith("/volumes/pgdata/_data")
    again, _ = call("volume", {"name": "pgdata", "store": store})
    assert again["changed"] is False
    _container_using(store, "db", "pgdata")
    listed, _ = call("volume_info", {"store": store})
    assert [(v["Name"], v["UsedBy"]) for v in listed["volumes"]] == [("pgdata", ["db"])]
    refused, _ = call("volume", {"name": "pgdata", "state": "absent", "store": store})
    assert refused["failed"] and "in use by db" in refused["msg"]
    forced, _ = call("volume", {"name": "pgdata", "state": "absent", "force": True,
                                "store": store})
    assert forced["changed"] and not os.path.exists(os.path.join(store, "volumes", "pgdata"))
    gone, _ = call("volume", {"name": "pgdata", "state": "absent", "store": store})
    assert gone["changed"] is False


def test_check_mode_and_bad_names(tmp_path):
    store = str(tmp_path / "store")
    would, _ = call("volume", {"name": "cache", "store": store}, check_mode=True)
    assert would["changed"] and not os.path.exists(os.path.join(store, "volumes", "cache"))
    bad, _ = call("volume", {"name": "../etc", "store": store})
    assert bad["failed"] and "is not a volume name" in bad["msg"]

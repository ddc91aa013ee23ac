"""Replica placement (fleet/placement.py): spread, re-runs, scaling, caps, constraints."""

import pytest

from fleet.placement import PlacementError, eligible, place

HOSTS = ["h1", "h2", "h3"]


def test_spread_and_rerun_moves_nothing():
    first = place("web", 3, HOSTS, {})
    assert first == {"h1": [1], "h2": [2], "h3": [3]}
    assert place("web", 3, HOSTS, first) == first


def test_scale_up_goes_to_the_least_loaded_and_down_drops_the_highest():
    two = place("web", 2, HOSTS, {})
    assert two == {"h1": [1], "h2": [2], "h3": []}
    six = place("web", 6, HOSTS, two)
    assert six == {"h1": [1, 4], "h2": [2, 5], "h3": [3, 6]}
    assert place("web", 1, HOSTS, six) == {"h1": [1], "h2": [], "h3": []}
    uneven = {"h1": [1, 2, 3], "h2": [], "h3": []}
    assert place("web", 5, HOSTS, uneven) == {"h1": [1, 2, 3], "h2": [4], "h3": [5]}


def test_caps_and_the_error_before_anything_starts():
    assert place("web", 3, HOSTS, {"h1": [1, 2]}, max_per_host=1) == {
        "h1": [1], "h2": [2], "h3": [3]}
    with pytest.raises(PlacementError, match=r"service web: 4 replicas at most 1 per host "
                                             r"\(publish 8887\) need 4 hosts, the play has 3"):
        place("web", 4, HOSTS, {}, max_per_host=1, reason="publish 8887")
    with pytest.raises(PlacementError, match="no host of the play"):
        place("web", 1, [], {})


def test_replicas_on_hosts_gone_are_placed_again_and_duplicates_dropped():
    assert place("web", 2, ["h2", "h3"], {"h1": [1], "h2": [2]}) == {"h2": [2], "h3": [1]}
    assert place("web", 2, HOSTS, {"h1": [1], "h2": [1]}) == {"h1": [1], "h2": [2], "h3": []}


def test_constraints():
    groups = {"h1": {"web", "all"}, "h2": {"db", "all"}, "h3": {"web", "all"}}
    assert eligible(HOSTS, ["group == web"], groups.get) == ["h1", "h3"]
    assert eligible(HOSTS, ["group != web"], groups.get) == ["h2"]
    assert eligible(HOSTS, ["host != h1", "group == web"], groups.get) == ["h3"]
    with pytest.raises(PlacementError, match="is not 'group == NAME'"):
        eligible(HOSTS, ["zone = a"], groups.get)


def test_project_labels():
    from fleet.projects import with_project
    made = with_project("container", {"name": "db", "image": "x"}, "shop")
    assert made["labels"] == {"fleet.project": "shop"}
    assert "labels" not in with_project("container", {"name": "db", "state": "absent"}, "shop")
    gone = with_project("container", {"name": "web", "replicas": 2, "state": "absent"}, "shop")
    assert gone["labels"] == {"fleet.project": "shop"}  # its replicas are found by it
    assert with_project("copy", {"dest": "/x"}, "shop") == {"dest": "/x"}
    kept = with_project("network", {"name": "n", "labels": {"fleet.project": "other"}}, "shop")
    assert kept["labels"] == {"fleet.project": "other"}

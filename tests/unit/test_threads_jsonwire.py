"""The payload's own thread primitives and JSON codec (both avoid heavy imports)."""

import json
import threading
import time

import pytest

from agent_payload import jsonwire, threads


@pytest.mark.parametrize("value", [
    {"a": [1, 2.5, None, True, False, "é\n\"\\"], "b": {"c": -1, "": []}},
    [], "x", 0, 1e300, -0.5, {"nested": [[[{"x": "y"}]]]},
])
def test_jsonwire_round_trips_like_json(value):
    text = jsonwire.dumps(value)
    assert text == json.dumps(value, separators=(",", ":"))
    assert jsonwire.loads(text) == value


@pytest.mark.parametrize("bad", ['{"a":1} x', "", "[1,", "nope", '{"a":}', "{'a': 1}"])
def test_jsonwire_rejects_what_is_not_one_json_value(bad):
    with pytest.raises(ValueError):
        jsonwire.loads(bad)


def test_jsonwire_refuses_unknown_objects():
    with pytest.raises(TypeError, match="object"):
        jsonwire.dumps({"a": object()})


def test_event_set_wait_and_timeout():
    event = threads.Event()
    started = time.monotonic()
    assert event.wait(0.05) is False
    assert time.monotonic() - started >= 0.04
    threading.Timer(0.05, event.set).start()
    assert event.wait(5) is True
    event.set()  # twice is fine
    assert event.is_set() and event.wait() and event.wait(0)


def test_event_releases_every_waiter():
    event = threads.Event()
    woke = []
    waiters = [threading.Thread(target=lambda: woke.append(event.wait(5))) for _ in range(4)]
    for waiter in waiters:
        waiter.start()
    event.set()
    for waiter in waiters:
        waiter.join(5)
    assert woke == [True] * 4


def test_inbox_keeps_order_across_threads_and_times_out():
    inbox = threads.Inbox()
    with pytest.raises(threads.InputTimeout):
        inbox.get(0.01)

    def produce():
        for i in range(500):
            inbox.put(i)

    producer = threading.Thread(target=produce)
    producer.start()
    got = [inbox.get(5) for _ in range(500)]
    producer.join()
    assert got == list(range(500))
    with pytest.raises(threads.InputTimeout):
        inbox.get(0)


def test_start_runs_the_function():
    done = threads.Event()
    threads.start(done.set)
    assert done.wait(5)

"""agent_payload.runtime.health: Docker's healthcheck settings and states."""

import os
import time

import pytest

from agent_payload import jsonwire
from agent_payload.runtime import health
from agent_payload.runtime.health import Checker, HealthError


@pytest.mark.parametrize("value, seconds", [("30s", 30), ("1m30s", 90), ("500ms", 0.5),
                                            ("2h", 7200), (5, 5), ("1.5s", 1.5)])
def test_parse_duration(value, seconds):
    assert health.parse_duration(value, "interval") == pytest.approx(seconds)


@pytest.mark.parametrize("value", ["", "5", "abc", "1x"])
def test_parse_duration_refuses(value):
    with pytest.raises(HealthError, match="healthcheck interval"):
        health.parse_duration(value, "interval")


def test_config_from_the_image_and_the_option():
    image = {"Test": ["CMD-SHELL", "curl -f localhost"], "Interval": 10_000_000_000,
             "Retries": 5}
    config = health.config_of(None, image)
    assert config["argv"] == ["/bin/sh", "-c", "curl -f localhost"]
    assert (config["interval"], config["timeout"], config["retries"]) == (10, 30, 5)
    mine = health.config_of({"test": ["CMD", "true"], "interval": "1s", "retries": 1}, image)
    assert (mine["argv"], mine["interval"], mine["retries"]) == (["true"], 1, 1)
    assert health.config_of({"test": "pg_isready"}, None)["argv"] == ["/bin/sh", "-c",
                                                                       "pg_isready"]
    assert health.config_of({"disable": True}, image) is None
    assert health.config_of(None, {"Test": ["NONE"]}) is None
    assert health.config_of(None, None) is None
    with pytest.raises(HealthError, match="retries >= 1"):
        health.config_of({"test": ["CMD", "true"], "retries": 0}, None)


def _finish(checker, code, output=""):
    read_end, write_end = os.pipe()
    os.write(write_end, jsonwire.dumps({"code": code, "output": output, "start": time.time(),
                                        "end": time.time()}).encode())
    os.close(write_end)
    checker.running = (os.getpid(), read_end)  # waitpid(own pid) fails: handled
    return checker.finish()


def test_states_follow_the_results():
    checker = Checker({"argv": ["true"], "interval": 30, "timeout": 30, "retries": 2,
                       "start_period": 0}, {})
    assert checker.health["Status"] == "starting"
    assert _finish(checker, 1)["Status"] == "starting"
    assert _finish(checker, 1) ["Status"] == "unhealthy"
    state = _finish(checker, 0, "ok\n")
    assert (state["Status"], state["FailingStreak"]) == ("healthy", 0)
    for _ in range(6):
        state = _finish(checker, 0)
    assert len(state["Log"]) == health.LOG_LENGTH and state["Log"][-1]["ExitCode"] == 0


def test_failures_in_the_start_period_do_not_count():
    checker = Checker({"argv": ["true"], "interval": 30, "timeout": 30, "retries": 1,
                       "start_period": 60}, {})
    state = _finish(checker, 1)
    assert (state["Status"], state["FailingStreak"]) == ("starting", 0)


def test_a_check_that_fails_ends_its_process(monkeypatch):
    # A check whose result pipe broke (the container was removed mid-check) raised out of
    # the forked child, which then ran on as a second copy of the supervisor.
    def broken(plan, timeout, result_w):
        raise BrokenPipeError("the supervisor is gone")

    monkeypatch.setattr(health, "_check", broken)
    checker = Checker({"argv": ["true"], "interval": 0, "timeout": 1, "retries": 1,
                       "start_period": 0}, {})
    checker.next_due = 0
    result_r = checker.maybe_start(container_pid=os.getpid())
    pid, _ = checker.running
    _, status = os.waitpid(pid, 0)  # only the child can have got here otherwise
    os.close(result_r)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 1

"""tools: host tools found on PATH once and run with posix_spawn, output captured."""

import os
import sys

from agent_payload import tools


def test_output_status_and_input_come_back():
    done = tools.run(["sh", "-c", "cat; echo err >&2; exit 3"], "hello\n")
    assert (done.returncode, done.stdout, done.stderr) == (3, "hello\n", "err\n")


def test_large_input_and_output_do_not_deadlock():
    text = "x" * 300_000 + "\n"
    done = tools.run(["sh", "-c", "cat; cat /dev/null; head -c 200000 /dev/zero >&2"], text)
    assert done.returncode == 0
    assert done.stdout == text and len(done.stderr) == 200_000


def test_a_child_that_ignores_its_input_is_not_an_error():
    done = tools.run(["true"], "y" * 500_000)
    assert done.returncode == 0


def test_a_signal_is_a_negative_status():
    assert tools.run(["sh", "-c", "kill -TERM $$"]).returncode == -15


def test_a_missing_tool_is_127_named(monkeypatch):
    monkeypatch.setattr(tools, "_found", {})
    assert tools.which("fleet-no-such-tool") is None
    done = tools.run(["fleet-no-such-tool", "x"])
    assert done.returncode == 127 and "fleet-no-such-tool" in done.stderr


def test_which_follows_path_and_remembers(monkeypatch, tmp_path):
    tool = tmp_path / "fleet-tool"
    tool.write_text("#!/bin/sh\necho from-tool\n")
    tool.chmod(0o755)
    monkeypatch.setattr(tools, "_found", {})
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}/usr/bin:/bin")
    assert tools.which("fleet-tool") == str(tool)
    assert tools.run(["fleet-tool"]).stdout == "from-tool\n"
    tool.unlink()
    assert tools.which("fleet-tool") == str(tool)  # looked up once per process


def test_no_descriptor_is_left_open():
    before = set(os.listdir("/proc/self/fd"))
    tools.run([sys.executable, "-c", "print(1)"], "in")
    assert set(os.listdir("/proc/self/fd")) == before

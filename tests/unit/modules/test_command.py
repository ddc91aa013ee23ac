"""command and shell modules, run in-process through serve.call_module."""

import os
import shlex
import sys
import threading
import time

import pytest

from agent_payload import serve
from agent_payload.modules import command
from tests.unit.modules.conftest import FakeCtx, call

PY = sys.executable


def py(code):
    """argv running ``code`` with this Python."""
    return [PY, "-c", code]


def test_runs_and_reports_like_ansible():
    code = "import sys; print('out'); print('err', file=sys.stderr)"
    result, _ = call("command", {"argv": py(code)})
    assert result["changed"] is True and result["failed"] is False
    assert result["rc"] == 0 and result["msg"] == ""
    assert (result["stdout"], result["stderr"]) == ("out", "err")
    assert (result["stdout_lines"], result["stderr_lines"]) == (["out"], ["err"])
    assert result["cmd"][0] == PY
    assert result["start"] <= result["end"] and result["delta"].startswith("0:00:")


def test_free_form_is_split_like_a_shell_but_not_run_by_one():
    result, _ = call("command", {"_raw_params": "printf '%s|' 'a b' c '$HOME_NOT_SET_X' ';'"})
    assert result["stdout"] == "a b|c|$HOME_NOT_SET_X|;|"
    assert result["cmd"] == ["printf", "%s|", "a b", "c", "$HOME_NOT_SET_X", ";"]


@pytest.mark.parametrize("expand, expected", [(True, "value-x"), (False, "$FLEET_TEST_VAR")])
def test_expand_argument_vars(monkeypatch, expand, expected):
    monkeypatch.setenv("FLEET_TEST_VAR", "value-x")
    params = {"argv": py("import sys; print(sys.argv[1])") + ["$FLEET_TEST_VAR"],
              "expand_argument_vars": expand}
    assert call("command", params)[0]["stdout"] == expected


def test_non_zero_return_code_fails():
    result, _ = call("command", {"argv": py("import sys; print('x'); sys.exit(3)")})
    assert result["failed"] is True and result["changed"] is True
    assert result["rc"] == 3 and result["msg"] == "non-zero return code"
    assert result["stdout"] == "x"


@pytest.mark.parametrize("params, expected", [
    ({"stdin": "abc"}, "abc\n"),
    ({"stdin": "abc", "stdin_add_newline": False}, "abc"),
    ({"stdin": ""}, ""),
    ({}, ""),  # no stdin: /dev/null
])
def test_stdin(params, expected):
    code = "import sys; sys.stdout.write(repr(sys.stdin.read()))"
    result, _ = call("command", dict(params, argv=py(code), strip_empty_ends=False))
    assert result["stdout"] == repr(expected)


@pytest.mark.parametrize("strip, expected, lines", [
    (True, "a\n\nb", ["a", "", "b"]),
    (False, "a\n\nb\n\n", ["a", "", "b", ""]),
])
def test_strip_empty_ends(strip, expected, lines):
    code = "import sys; sys.stdout.write('a\\n\\nb\\n\\n')"
    result, _ = call("command", {"argv": py(code), "strip_empty_ends": strip})
    assert result["stdout"] == expected
    assert result["stdout_lines"] == lines


def test_chdir(tmp_path):
    result, _ = call("command", {"argv": py("import os; print(os.getcwd())"),
                                 "chdir": str(tmp_path)})
    assert result["stdout"] == str(tmp_path)


def test_missing_chdir_fails_naming_it(tmp_path):
    missing = tmp_path / "nope"
    result, _ = call("command", {"argv": ["true"], "chdir": str(missing)})
    assert result["failed"] is True and str(missing) in result["msg"]
    assert "\n" not in result["msg"]


# (what exists, option, pattern, runs, message)
SKIP_CASES = [
    ("made", "creates", "made", False, "Did not run command since '{p}' exists"),
    (None, "creates", "made", True, ""),
    ("made", "creates", "ma*", False, "Did not run command since '{p}' exists"),
    (None, "removes", "gone", False, "Did not run command since '{p}' does not exist"),
    ("gone", "removes", "gone", True, ""),
    ("gone", "removes", "g?ne", True, ""),
]


@pytest.mark.parametrize("existing, option, pattern, runs, message", SKIP_CASES)
def test_creates_and_removes(tmp_path, existing, option, pattern, runs, message):
    if existing:
        (tmp_path / existing).write_text("")
    marker = tmp_path / "ran"
    pattern_path = str(tmp_path / pattern)
    params = {"argv": ["touch", str(marker)], option: pattern_path}
    result, _ = call("command", params)
    assert marker.exists() is runs
    assert result["changed"] is runs and result["failed"] is False
    if not runs:
        assert result["msg"] == message.format(p=pattern_path)
        assert result["stdout"].startswith("skipped, since ") and result["rc"] == 0


def test_creates_makes_a_second_run_unchanged(tmp_path):
    made = tmp_path / "made"
    params = {"_raw_params": f"touch {made}", "creates": str(made)}
    first, _ = call("command", params)
    second, _ = call("command", params)
    assert first["changed"] is True and made.exists()
    assert second["changed"] is False
    assert second["stdout"] == f"skipped, since {made} exists"


def test_relative_creates_is_looked_up_in_chdir(tmp_path):
    (tmp_path / "made").write_text("")
    result, _ = call("command", {"argv": ["false"], "chdir": str(tmp_path), "creates": "made"})
    assert result["changed"] is False and result["failed"] is False


@pytest.mark.parametrize("params, changed, skipped", [
    ({}, False, True),
    ({"creates": "/nonexistent/fleet-x"}, True, None),
    ({"removes": "/"}, True, None),
    ({"creates": "/"}, False, None),
])
def test_check_mode_never_runs(tmp_path, params, changed, skipped):
    marker = tmp_path / "ran"
    result, _ = call("command", dict(params, argv=["touch", str(marker)]), check_mode=True)
    assert not marker.exists()
    assert result["changed"] is changed and result.get("skipped") is skipped
    assert result["failed"] is False


@pytest.mark.parametrize("params, message", [
    ({}, "no command given"),
    ({"cmd": "true", "argv": ["true"]}, "parameters are mutually exclusive: cmd|argv"),
    ({"cmd": "'unclosed"}, "cannot split the command line"),
    ({"cmd": "true", "bogus": 1}, "unsupported parameter 'bogus'"),
])
def test_bad_parameters(params, message):
    result, _ = call("command", params)
    assert result["failed"] is True and message in result["msg"]


def test_missing_program_fails_naming_it():
    result, _ = call("command", {"argv": ["/nonexistent/fleet-prog"]})
    assert result["failed"] is True and result["rc"] == 2
    assert "/nonexistent/fleet-prog" in result["msg"]


def test_output_is_decoded_with_replacement():
    result, _ = call("command", {"argv": py("import sys; sys.stdout.buffer.write(b'a\\xffb')")})
    assert result["stdout"] == "a\ufffdb"


def test_huge_output_is_cut_to_fit_one_frame():
    code = "import sys; sys.stdout.write('x' * (3 * 1024 * 1024))"
    result, _ = call("command", {"argv": py(code)})
    assert len(result["stdout"]) <= command.OUTPUT_LIMIT
    assert any("stdout cut" in w for w in result["warnings"])


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize("module", ["command", "shell"])
def test_cancel_kills_the_process_group(tmp_path, module):
    pidfile = tmp_path / "pid"
    line = f"sleep 60 & echo $! > {pidfile}; wait"
    params = ({"argv": ["/bin/sh", "-c", line]} if module == "command"
              else {"_raw_params": line})
    ctx = FakeCtx()
    outcome = {}

    def work():
        try:
            outcome["result"] = serve.call_module(module, params, ctx)
        except serve.Cancelled:
            outcome["cancelled"] = True

    worker = threading.Thread(target=work)
    started = time.monotonic()
    worker.start()
    while not (pidfile.exists() and pidfile.read_text().strip()):
        assert time.monotonic() - started < 5, "the command did not start"
        time.sleep(0.01)
    child = int(pidfile.read_text())
    ctx.cancel_event.set()
    worker.join(5)
    assert outcome == {"cancelled": True}
    deadline = time.monotonic() + 2
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not _alive(child)
    assert time.monotonic() - started < 5


# shell


def test_shell_runs_a_line_through_sh(tmp_path):
    result, _ = call("shell", {"_raw_params": "echo a b | tr ' ' '\\n' | wc -l > out; cat out",
                               "chdir": str(tmp_path)})
    assert result["stdout"].strip() == "2" and result["rc"] == 0
    assert result["cmd"].startswith("echo a b")


def test_shell_executable():
    result, _ = call("shell", {"cmd": "print(6 * 7)", "executable": PY})
    assert result["stdout"] == "42"


def test_shell_non_zero_and_stdin():
    result, _ = call("shell", {"cmd": "read x; echo got $x; exit 4", "stdin": "hi"})
    assert result["failed"] is True and result["rc"] == 4
    assert result["msg"] == "non-zero return code" and result["stdout"] == "got hi"


def test_shell_creates_twice(tmp_path):
    made = tmp_path / "made"
    params = {"cmd": f"echo > {shlex.quote(str(made))}", "creates": str(made)}
    first, _ = call("shell", params)
    second, _ = call("shell", params)
    assert first["changed"] is True and second["changed"] is False


def test_shell_check_mode_does_not_run(tmp_path):
    result, _ = call("shell", {"cmd": f"touch {tmp_path}/x"}, check_mode=True)
    assert result["skipped"] is True and not os.listdir(tmp_path)


@pytest.mark.parametrize("params, message", [
    ({}, "no command given"),
    ({"cmd": "true", "_raw_params": "true"}, "mutually exclusive"),
    ({"argv": ["true"]}, "unsupported parameter 'argv'"),
])
def test_shell_bad_parameters(params, message):
    result, _ = call("shell", params)
    assert result["failed"] is True and message in result["msg"]


@pytest.mark.parametrize("line", [
    "true", "  ls   -l\t/tmp \n", "a$b #c ;d", "x\x0by\u00a0z", "", "   ",
    "printf '%s' ''", 'echo "a b"\\ c', "a\\ b",
])
def test_split_command_line_is_shlex_split(line):
    assert command.split_command_line(line) == shlex.split(line)


def test_timestamps_read_like_str_of_datetime():
    import datetime
    moment = 1700000000.25
    assert command._timestamp(moment) == str(datetime.datetime.fromtimestamp(moment))
    assert command._duration(3725.5) == str(datetime.timedelta(seconds=3725.5))
    assert command._duration(0.0012) == "0:00:00.001200"

"""fleet's command line through click's CliRunner: help, inventory, ping, lab."""

import json
import os
import socket
import textwrap

import pytest
from click.testing import CliRunner

from fleet.cli import main

COMMANDS = [[], ["lab"], ["lab", "up"], ["lab", "down"], ["lab", "status"], ["ping"],
            ["inventory"], ["rmi"], ["image", "rm"], ["down"], ["scale"], ["network"],
            ["network", "create"], ["run"]]

INVENTORY = """\
[web]
web1 ansible_host=10.0.0.1
web2

[db]
db1 ansible_port=2222

[all:vars]
ansible_user=deploy
"""


@pytest.fixture
def run(tmp_path):
    """run(*args) -> click Result, with no inventory or lab settings from the environment."""
    # A lab of its own (state in tmp_path, an unused prefix), never the machine's lab.
    runner = CliRunner(env={"FLEET_INVENTORY": None, "FLEET_LAB_DIR": str(tmp_path / "lab"),
                            "FLEET_LAB_SUBNET": "10.254.254.0/24", "FLEET_LAB_PREFIX": "fleetzz"})

    def _run(*args):
        return runner.invoke(main, list(args), catch_exceptions=False)

    return _run


@pytest.fixture
def inventory(tmp_path):
    path = tmp_path / "hosts.ini"
    path.write_text(INVENTORY)
    return str(path)


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "fleet")
@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_every_command_has_help_with_an_example(run, command, flag):
    result = run(*command, flag)
    assert result.exit_code == 0, result.output
    assert "Example" in result.output
    assert "Usage:" in result.output


def test_top_level_help_lists_every_command_with_its_summary(run):
    output = run("--help").output
    for name in ("lab", "ping", "inventory"):
        assert f"  {name} " in output


def test_lab_help_lists_its_subcommands(run):
    output = run("lab", "--help").output
    for name in ("up", "down", "status"):
        assert f"  {name} " in output


def test_unknown_command(run):
    result = run("dance")
    assert result.exit_code == 2
    assert "No such command 'dance'" in result.output


def test_version(run):
    result = run("--version")
    assert result.exit_code == 0 and "version" in result.output


def test_inventory_graph(run, inventory):
    result = run("inventory", "-i", inventory, "--graph")
    assert result.exit_code == 0, result.output
    assert result.stdout == textwrap.dedent("""\
        @all:
          |--@ungrouped:
          |--@web:
          |  |--web1
          |  |--web2
          |--@db:
          |  |--db1
        """)


def test_inventory_graph_of_a_group_with_vars(run, inventory):
    result = run("inventory", "-i", inventory, "--graph", "web", "--vars")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "@web:"
    assert "  |--web1" in lines
    assert "db1" not in result.stdout
    assert "{ansible_host = 10.0.0.1}" in result.stdout


def test_inventory_graph_value_is_optional_before_another_option(run, inventory):
    result = run("inventory", "--graph", "-i", inventory)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("@all:\n")


def test_inventory_list(run, inventory):
    result = run("inventory", "-i", inventory, "--list")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["web"] == {"hosts": ["web1", "web2"]}
    assert data["db"] == {"hosts": ["db1"]}
    assert data["_meta"]["hostvars"]["db1"] == {"ansible_user": "deploy", "ansible_port": 2222}


def test_inventory_host(run, inventory):
    result = run("inventory", "-i", inventory, "--host", "web1")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"ansible_user": "deploy", "ansible_host": "10.0.0.1"}


def test_inventory_from_the_environment(tmp_path, inventory):
    runner = CliRunner(env={"FLEET_INVENTORY": inventory})
    result = runner.invoke(main, ["inventory", "--host", "web2"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"ansible_user": "deploy"}


@pytest.mark.parametrize("args", [[], ["--list", "--host", "web1"], ["--graph", "--list"],
                                  ["--vars"]])
def test_inventory_wants_exactly_one_view(run, inventory, args):
    result = run("inventory", "-i", inventory, *args)
    assert result.exit_code == 2
    assert "give exactly one of --list, --graph or --host" in result.stderr


@pytest.mark.parametrize("args, message", [
    (["--host", "nope"], "Error: host 'nope' is not in "),
    (["--graph", "nope"], "Error: group 'nope' is not in "),
])
def test_inventory_unknown_names(run, inventory, args, message):
    result = run("inventory", "-i", inventory, *args)
    assert result.exit_code == 1
    assert result.stderr.startswith(message)
    assert result.stdout == ""


@pytest.mark.parametrize("command", [["inventory", "--list"], ["ping"]])
def test_missing_inventory_file_is_a_one_line_error(run, tmp_path, command):
    missing = str(tmp_path / "nope.ini")
    result = run(*command, "-i", missing)
    assert result.exit_code == 1
    assert result.stderr == f"Error: inventory {missing} does not exist\n"
    assert result.stdout == ""


def test_bad_inventory_is_a_one_line_error(run, tmp_path):
    path = tmp_path / "bad.ini"
    path.write_text("[web\nweb1\n")
    result = run("inventory", "-i", str(path), "--list")
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: ")
    assert len(result.stderr.strip().splitlines()) == 1


def test_inventory_option_is_required(run):
    result = run("ping")
    assert result.exit_code == 2
    assert "Missing option '-i' / '--inventory'" in result.stderr


@pytest.fixture
def unreachable_inventory(tmp_path):
    """One host on 127.0.0.1, a free (closed) port, and an empty known_hosts file."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    known = tmp_path / "known_hosts"
    known.write_text("")
    path = tmp_path / "ping.ini"
    path.write_text(f"[web]\nlocal ansible_host=127.0.0.1 ansible_port={port} "
                    f"ansible_ssh_known_hosts_file={known}\n")
    return str(path), port, known


def test_ping_json_unreachable_exits_4(run, unreachable_inventory):
    path, port, known = unreachable_inventory
    result = run("ping", "-i", path, "-o", "json", "--timeout", "2")
    assert result.exit_code == 4, result.output
    data = json.loads(result.stdout)
    assert len(data["hosts"]) == 1
    host = data["hosts"][0]
    assert host["host"] == "local" and host["reachable"] is False
    assert host["error"] == f"unreachable: connect to 127.0.0.1:{port}: Connection refused"


def test_ping_text_unreachable_exits_4(run, unreachable_inventory):
    path, port, _ = unreachable_inventory
    result = run("ping", "-i", path, "web", "--timeout", "2")
    assert result.exit_code == 4, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["host", "reachable", "python", "kernel", "cgroup", "overlayfs",
                                "userns", "payload", "rtt", "ms"]
    assert lines[1].split() == ["local", "no"]
    assert lines[2].startswith(f"local: unreachable: connect to 127.0.0.1:{port}")
    assert "[red]" not in result.stdout  # markup stripped off a terminal


def test_ping_pattern_matching_nothing(run, unreachable_inventory):
    path, _, _ = unreachable_inventory
    result = run("ping", "-i", path, "db")
    assert result.exit_code == 1
    assert "warning: pattern 'db' matched no host" in result.stderr
    assert "Error: no hosts matched 'db'" in result.stderr


def test_lab_status_when_down(run):
    result = run("lab", "status")
    assert result.exit_code == 0, result.output
    assert result.stdout == "lab is down\n"
    result = run("lab", "status", "-o", "json")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["hosts"] == []


@pytest.mark.skipif(os.geteuid() == 0, reason="runs as root: lab up would really start")
def test_lab_up_as_non_root_refuses(run):
    result = run("lab", "up", "--hosts", "1")
    assert result.exit_code == 1
    assert "fleet lab needs root" in result.stderr


@pytest.mark.parametrize("command", [["lab", "up", "--hosts", "1"], ["lab", "down"]])
def test_lab_as_a_pretend_non_root_user_refuses(run, monkeypatch, command):
    """The same check on any machine: geteuid is made to answer a user's uid."""
    from fleet.lab import lab as lab_lib

    def must_not_run(*args, **kwargs):
        raise AssertionError("the lab was really brought up or down")

    monkeypatch.setattr(lab_lib, "_up", must_not_run)
    monkeypatch.setattr(lab_lib, "_down", must_not_run)
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    result = run(*command)
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: fleet lab needs root")
    assert len(result.stderr.strip().splitlines()) == 1


def test_lab_up_rejects_zero_hosts(run):
    result = run("lab", "up", "--hosts", "0")
    assert result.exit_code == 2
    assert "--hosts" in result.stderr


def test_ping_text_keeps_bracketed_host_names(run, tmp_path):
    import socket
    known = tmp_path / "known_hosts"
    known.write_text("")
    with socket.socket() as listener:  # answers the TCP connect; the host key is unknown
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        path = tmp_path / "named.ini"
        path.write_text(f"local ansible_host=localhost ansible_port={port} "
                        f"ansible_ssh_known_hosts_file={known}\n")
        result = run("ping", "-i", str(path))
    assert result.exit_code == 4
    assert f"host key for [localhost]:{port} not found" in result.stdout


def test_plain_table_layout(capsys):
    from fleet.cli import render
    render.print_table(("name", "n"), [("a", "1"), ("[green]long-name[/green]", "100")],
                       right=("n",), notes=["[red]note[/red]"])
    assert capsys.readouterr().out == ("name         n\n"
                                       "a            1\n"
                                       "long-name  100\n"
                                       "note\n")


def test_plain_output_carries_no_markup_of_any_result_style(capsys):
    from fleet.cli import render
    from fleet.cli.apply_view import STYLE
    printer = render.Printer(terminal=False)
    for status, colour in STYLE.items():
        printer.print(f"[{colour}]{status}: {render.escape('[lab01]')}[/{colour}]")
    assert capsys.readouterr().out.splitlines() == [f"{s}: [lab01]" for s in STYLE]


class Removals(list):
    """fleet.images.remove calls, recorded; every host refuses when ``refuse`` is set."""

    refuse = False
    msg = ""

    def __call__(self, inventory, hosts, name, force=False, **kwargs):
        from fleet.images import HostOutcome
        self.append({"hosts": hosts, "name": name, "force": force, **kwargs})
        if self.refuse:
            return [HostOutcome(h, False, msg=f"unable to remove image {name}: in use by "
                                              "container web-1") for h in hosts]
        return [HostOutcome(h, True, True, msg=self.msg, images=[{"Id": "sha256:" + "a" * 64,
                                                                  "RepoTags": [name]}])
                for h in hosts]


@pytest.fixture
def removals(monkeypatch):
    from fleet import images
    calls = Removals()
    monkeypatch.setattr(images, "remove", calls)
    return calls


def test_rmi_refused_where_a_container_uses_the_image_exits_2(run, inventory, removals):
    removals.refuse = True
    result = run("rmi", "-i", inventory, "web", "busybox:latest", "-o", "json")
    assert result.exit_code == 2
    assert removals[0]["force"] is False and removals[0]["hosts"] == ["web1", "web2"]
    hosts = json.loads(result.stdout)["hosts"]
    assert [h["msg"] for h in hosts] == ["unable to remove image busybox:latest: in use by "
                                         "container web-1"] * 2


@pytest.mark.parametrize("flag", ["-f", "--force"])
def test_rmi_force(run, inventory, removals, flag):
    result = run("image", "rm", flag, "-i", inventory, "db", "busybox:latest")
    assert result.exit_code == 0, result.output
    assert removals == [{"hosts": ["db1"], "name": "busybox:latest", "force": True,
                         "forks": 32}]
    assert "--force" in run("rmi", "--help").output


def test_rmi_forks_has_no_short_option(run, inventory, removals):
    # -f is --force on rmi, as Docker users expect; --forks stays.
    assert run("rmi", "--forks", "3", "-i", inventory, "all", "x").exit_code == 0
    assert removals[0]["forks"] == 3 and removals[0]["force"] is False


def test_rmi_text_shows_why_an_image_was_kept(run, inventory, removals):
    removals.msg = "untagged busybox:latest; image sha256:aaa kept for container web-1"
    result = run("rmi", "-f", "-i", inventory, "db1", "busybox:latest")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[1].split() == [
        "db1", "changed", "a" * 12, "untagged", "busybox:latest;", "image", "sha256:aaa",
        "kept", "for", "container", "web-1"]


def test_the_console_script_exits_with_the_commands_code(tmp_path):
    # fleet.cli.run leaves through os._exit: the code, the output and the atexit
    # handlers must all survive that.
    import subprocess
    import sys
    ok = subprocess.run([sys.executable, "-m", "fleet", "--version"], capture_output=True,
                        text=True)
    assert ok.returncode == 0 and "fleet" in ok.stdout
    missing = tmp_path / "missing.yml"
    bad = subprocess.run([sys.executable, "-m", "fleet", "apply", str(missing), "-i",
                          str(tmp_path / "hosts")], capture_output=True, text=True)
    assert bad.returncode != 0 and str(missing) in bad.stderr
    script = ("import atexit, sys; from fleet.cli import run; "
              "atexit.register(lambda: print('atexit ran', flush=True)); "
              "sys.argv = ['fleet', '--version']; run()")
    handled = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert handled.returncode == 0 and handled.stdout.endswith("atexit ran\n")


@pytest.mark.parametrize("module, argv", [
    ("fleet.cli.network", ["network", "rm", "--forks", "3"]),
    ("fleet.cli.volume", ["volume", "rm", "--forks", "3"]),
])
def test_rm_of_networks_and_volumes_takes_forks(module, argv, tmp_path, monkeypatch):
    import importlib
    cli_module = importlib.import_module(module)
    seen = []

    def fake_on_hosts(inventory, hosts, name, params, forks):
        seen.append((hosts, params["state"], forks))
        return {}

    monkeypatch.setattr(cli_module, "on_hosts", fake_on_hosts)
    monkeypatch.setattr(cli_module, "report", lambda *args: None)
    inventory = tmp_path / "hosts.ini"
    inventory.write_text("h1\nh2\n")
    result = CliRunner().invoke(main, argv[:2] + ["-i", str(inventory), "all", "fleetx"]
                                + argv[2:])
    assert result.exit_code == 0, result.output
    assert seen == [(["h1", "h2"], "absent", 3)]

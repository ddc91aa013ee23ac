"""file module, run in-process through serve.call_module against tmp_path."""

import os
import stat
import time

import pytest

from tests.unit.modules.conftest import call, needs_root, snapshot


def mode_of(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


def make(path, text="x", mode=0o644):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.chmod(path, mode)
    return path


def make_tree(t):
    make(t / "d" / "f", mode=0o600)
    (t / "d" / "sub").mkdir()
    os.chmod(t / "d" / "sub", 0o700)
    make(t / "d" / "sub" / "g", mode=0o755)


# name: (setup(tmp), params(tmp), check(tmp) after the first real run)
CASES = {
    "directory with parents": (
        lambda t: None,
        lambda t: {"path": str(t / "a" / "b"), "state": "directory", "mode": "0750"},
        lambda t: mode_of(t / "a" / "b") == 0o750 and mode_of(t / "a") == 0o750),
    "directory, int mode": (
        lambda t: None,
        lambda t: {"path": str(t / "a"), "state": "directory", "mode": 0o700},
        lambda t: mode_of(t / "a") == 0o700),
    "recurse implies directory": (
        lambda t: None,
        lambda t: {"path": str(t / "a"), "recurse": True},
        lambda t: (t / "a").is_dir()),
    "file mode 0600": (
        lambda t: make(t / "f"),
        lambda t: {"path": str(t / "f"), "mode": "0600"},
        lambda t: mode_of(t / "f") == 0o600),
    "file mode 640 (alias dest)": (
        lambda t: make(t / "f"),
        lambda t: {"dest": str(t / "f"), "mode": "640", "state": "file"},
        lambda t: mode_of(t / "f") == 0o640),
    "file mode as YAML int": (
        lambda t: make(t / "f", mode=0o600),
        lambda t: {"name": str(t / "f"), "mode": 420},
        lambda t: mode_of(t / "f") == 0o644),
    "file symbolic mode": (
        lambda t: make(t / "f", mode=0o664),
        lambda t: {"path": str(t / "f"), "mode": "u+x,g-w,o=r"},
        lambda t: mode_of(t / "f") == 0o744),
    "recurse with X": (
        make_tree,
        lambda t: {"path": str(t / "d"), "state": "directory", "recurse": True,
                   "mode": "u=rwX,g=rX,o="},
        lambda t: (mode_of(t / "d") == 0o750 and mode_of(t / "d" / "f") == 0o640
                   and mode_of(t / "d" / "sub") == 0o750
                   and mode_of(t / "d" / "sub" / "g") == 0o750)),
    "symlink": (
        lambda t: make(t / "f"),
        lambda t: {"path": str(t / "l"), "state": "link", "src": "f"},
        lambda t: os.readlink(t / "l") == "f"),
    "symlink retargeted": (
        lambda t: (make(t / "f"), make(t / "g"), (t / "l").symlink_to("f")),
        lambda t: {"path": str(t / "l"), "state": "link", "src": "g"},
        lambda t: os.readlink(t / "l") == "g"),
    "symlink replaces a file with force": (
        lambda t: (make(t / "f"), make(t / "l")),
        lambda t: {"path": str(t / "l"), "state": "link", "src": "f", "force": True},
        lambda t: os.readlink(t / "l") == "f"),
    "dangling symlink with force": (
        lambda t: None,
        lambda t: {"path": str(t / "l"), "state": "link", "src": "nowhere", "force": True},
        lambda t: os.readlink(t / "l") == "nowhere"),
    "mode through a symlink (follow)": (
        lambda t: (make(t / "f"), (t / "l").symlink_to("f")),
        lambda t: {"path": str(t / "l"), "mode": "0600"},
        lambda t: mode_of(t / "f") == 0o600 and os.path.islink(t / "l")),
    "hard link": (
        lambda t: make(t / "f"),
        lambda t: {"path": str(t / "h"), "state": "hard", "src": str(t / "f")},
        lambda t: os.stat(t / "h").st_ino == os.stat(t / "f").st_ino),
    "hard link replaces a file with force": (
        lambda t: (make(t / "f"), make(t / "h")),
        lambda t: {"path": str(t / "h"), "state": "hard", "src": str(t / "f"), "force": True},
        lambda t: os.stat(t / "h").st_ino == os.stat(t / "f").st_ino),
    "absent file": (
        lambda t: make(t / "f"),
        lambda t: {"path": str(t / "f"), "state": "absent"},
        lambda t: not (t / "f").exists()),
    "absent tree": (
        make_tree,
        lambda t: {"path": str(t / "d"), "state": "absent"},
        lambda t: not (t / "d").exists()),
    "absent link keeps its target": (
        lambda t: (make(t / "f"), (t / "l").symlink_to("f")),
        lambda t: {"path": str(t / "l"), "state": "absent"},
        lambda t: not os.path.lexists(t / "l") and (t / "f").exists()),
    "touch with preserved times": (
        lambda t: None,
        lambda t: {"path": str(t / "f"), "state": "touch", "mode": "0600",
                   "modification_time": "preserve", "access_time": "preserve"},
        lambda t: mode_of(t / "f") == 0o600),
    "modification time": (
        lambda t: make(t / "f"),
        lambda t: {"path": str(t / "f"), "modification_time": "202001020304.05"},
        lambda t: os.stat(t / "f").st_mtime == time.mktime((2020, 1, 2, 3, 4, 5, 0, 0, -1))),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_second_run_is_unchanged(tmp_path, case):
    setup, params, check = CASES[case]
    setup(tmp_path)
    first, _ = call("file", params(tmp_path))
    assert first["failed"] is False, first
    assert first["changed"] is True
    assert check(tmp_path)
    second, _ = call("file", params(tmp_path))
    assert second["failed"] is False and second["changed"] is False, second


@pytest.mark.parametrize("case", sorted(CASES))
def test_check_mode_changes_nothing(tmp_path, case):
    setup, params, _ = CASES[case]
    setup(tmp_path)
    before = snapshot(tmp_path)
    result, _ = call("file", params(tmp_path), check_mode=True)
    assert result["failed"] is False and result["changed"] is True, result
    assert snapshot(tmp_path) == before
    call("file", params(tmp_path))
    again, _ = call("file", params(tmp_path), check_mode=True)
    assert again["changed"] is False


def test_result_keys(tmp_path):
    make(tmp_path / "f", mode=0o640)
    result, _ = call("file", {"path": str(tmp_path / "f")})
    assert result["path"] == str(tmp_path / "f") and result["state"] == "file"
    assert result["mode"] == "0640" and result["size"] == 1
    assert {"owner", "group", "uid", "gid"} <= set(result)
    link, _ = call("file", {"path": str(tmp_path / "l"), "state": "link", "src": "f"})
    assert (link["dest"], link["src"], link["state"]) == (str(tmp_path / "l"), "f", "link")


def test_touch_is_always_changed(tmp_path):
    params = {"path": str(tmp_path / "t"), "state": "touch"}
    first, _ = call("file", params)
    os.utime(tmp_path / "t", (0, 0))
    second, _ = call("file", params)
    assert first["changed"] is True and second["changed"] is True
    assert second["state"] == "file" and os.stat(tmp_path / "t").st_mtime > 0


def test_diff_of_attributes(tmp_path):
    make(tmp_path / "f", mode=0o644)
    result, _ = call("file", {"path": str(tmp_path / "f"), "mode": "0600"}, diff_mode=True)
    path = str(tmp_path / "f")
    assert result["diff"] == {"before": {"path": path, "mode": "0644"},
                              "after": {"path": path, "mode": "0600"}}
    unchanged, _ = call("file", {"path": path, "mode": "0600"}, diff_mode=True)
    assert "diff" not in unchanged


def test_diff_of_state_and_removed_content(tmp_path):
    made, _ = call("file", {"path": str(tmp_path / "d"), "state": "directory"}, diff_mode=True)
    assert made["diff"]["before"]["state"] == "absent"
    assert made["diff"]["after"]["state"] == "directory"
    make(tmp_path / "d" / "f")
    removed, _ = call("file", {"path": str(tmp_path / "d"), "state": "absent"},
                      diff_mode=True, check_mode=True)
    assert removed["diff"]["before"]["path_content"]["files"] == [str(tmp_path / "d" / "f")]
    assert removed["diff"]["after"]["state"] == "absent"


def test_diff_of_link_target(tmp_path):
    (tmp_path / "l").symlink_to("a")
    result, _ = call("file", {"path": str(tmp_path / "l"), "state": "link", "src": "b",
                              "force": True}, diff_mode=True)
    assert result["diff"]["before"]["src"] == "a" and result["diff"]["after"]["src"] == "b"


def _errors(t):
    make(t / "f")
    (t / "d").mkdir()
    make(t / "d" / "inner")
    (t / "l").symlink_to("f")
    return t


# (params(tmp), message fragment that names the path (formatted with t=tmp))
ERRORS = [
    (lambda t: {"path": f"{t}/missing"}, "file ({t}/missing) is absent, cannot continue"),
    (lambda t: {"path": f"{t}/f", "state": "directory"}, "{t}/f already exists as a file"),
    (lambda t: {"path": f"{t}/f", "mode": "rwxrwxrwx"}, "mode 'rwxrwxrwx' for {t}/f"),
    (lambda t: {"path": f"{t}/f", "mode": "0999"}, "for {t}/f must be in octal or symbolic"),
    (lambda t: {"path": f"{t}/f", "owner": "fleet-no-such-user"},
     "chown failed on {t}/f: failed to look up user fleet-no-such-user"),
    (lambda t: {"path": f"{t}/f", "group": "fleet-no-such-group"},
     "chgrp failed on {t}/f: failed to look up group fleet-no-such-group"),
    (lambda t: {"path": f"{t}/n", "state": "link", "src": "nowhere"},
     "src file does not exist, use 'force=yes' if you really want to create the link: "
     "{t}/nowhere"),
    (lambda t: {"path": f"{t}/f", "state": "link", "src": "d"},
     "refusing to convert from file to symlink for {t}/f"),
    (lambda t: {"path": f"{t}/d", "state": "link", "src": "f", "force": True},
     "the directory {t}/d is not empty"),
    (lambda t: {"path": f"{t}/n", "state": "link"}, "src is required for creating new symlinks"),
    (lambda t: {"path": f"{t}/n", "state": "hard", "src": f"{t}/nowhere"},
     "src {t}/nowhere does not exist"),
    (lambda t: {"path": f"{t}/d/inner", "state": "hard", "src": f"{t}/f"},
     "Cannot link, file exists at destination {t}/d/inner"),
    (lambda t: {"path": f"{t}/d", "state": "hard", "src": f"{t}/f", "force": True},
     "Cannot link, directory exists at destination {t}/d"),
    (lambda t: {"path": f"{t}/f", "state": "file", "recurse": True},
     "recurse option requires state to be 'directory' ({t}/f)"),
    (lambda t: {"path": f"{t}/f", "src": f"{t}/d"},
     "src option requires state to be 'link' or 'hard' ({t}/f)"),
    (lambda t: {"path": f"{t}/nodir/x", "state": "touch"}, "could not touch target {t}/nodir/x"),
    (lambda t: {"path": f"{t}/f/x", "state": "directory"}, "cannot create directory {t}/f/x"),
    (lambda t: {"path": f"{t}/f", "modification_time": "yesterday"},
     "Error while obtaining timestamp for time yesterday"),
    (lambda t: {"state": "file"}, "missing required parameter 'path'"),
    (lambda t: {"path": f"{t}/f", "state": "bogus"}, "state: 'bogus' is not one of"),
]


@pytest.mark.parametrize("params, message", ERRORS)
def test_errors_are_one_line_naming_the_path(tmp_path, params, message):
    _errors(tmp_path)
    before = snapshot(tmp_path)
    result, _ = call("file", params(tmp_path))
    assert result["failed"] is True and result["changed"] is False
    assert message.format(t=tmp_path) in result["msg"]
    assert "\n" not in result["msg"]
    assert snapshot(tmp_path) == before


def test_failed_touch_removes_what_it_created(tmp_path):
    result, _ = call("file", {"path": str(tmp_path / "t"), "state": "touch",
                              "owner": "fleet-no-such-user"})
    assert result["failed"] is True and not (tmp_path / "t").exists()


def test_unknown_user_in_check_mode_warns(tmp_path):
    make(tmp_path / "f")
    result, _ = call("file", {"path": str(tmp_path / "f"), "owner": "fleet-no-such-user"},
                     check_mode=True)
    assert result["failed"] is False and result["changed"] is True
    assert "fleet-no-such-user" in result["warnings"][0]


def test_follow_no_leaves_the_target_alone(tmp_path):
    make(tmp_path / "f", mode=0o644)
    (tmp_path / "l").symlink_to("f")
    result, _ = call("file", {"path": str(tmp_path / "l"), "state": "link", "mode": "0600",
                              "follow": False})
    assert result["changed"] is False and mode_of(tmp_path / "f") == 0o644


def test_default_state_is_what_exists(tmp_path):
    (tmp_path / "d").mkdir()
    result, _ = call("file", {"path": str(tmp_path / "d")})
    assert result["state"] == "directory" and result["changed"] is False


@needs_root
@pytest.mark.parametrize("owner, group", [("nobody", None), ("65534", "65534"),
                                          (None, "nogroup"), ("nobody", "0")])
def test_owner_and_group(tmp_path, owner, group):
    import grp
    if group == "nogroup":
        try:
            grp.getgrnam("nogroup")
        except KeyError:
            pytest.skip("no nogroup group here")
    make(tmp_path / "f")
    params = {"path": str(tmp_path / "f"), "owner": owner, "group": group}
    params = {k: v for k, v in params.items() if v is not None}
    first, _ = call("file", params, diff_mode=True)
    second, _ = call("file", params)
    assert first["changed"] is True and second["changed"] is False
    st = os.stat(tmp_path / "f")
    if owner:
        assert st.st_uid == 65534 and first["diff"]["after"]["owner"] == 65534
    if group == "65534":
        assert st.st_gid == 65534
    elif group == "nogroup":
        assert st.st_gid == grp.getgrnam("nogroup").gr_gid


@needs_root
def test_directory_owner_applies_to_created_parents(tmp_path):
    params = {"path": str(tmp_path / "a" / "b"), "state": "directory", "owner": "nobody"}
    first, _ = call("file", params)
    second, _ = call("file", params)
    assert first["changed"] is True and second["changed"] is False
    assert os.stat(tmp_path / "a").st_uid == 65534 == os.stat(tmp_path / "a" / "b").st_uid

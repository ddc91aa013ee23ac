"""Mode parsing and resolution shared by file and copy (agent_payload.modules._fileattrs)."""

import os
import stat

import pytest

from agent_payload.modules import _fileattrs
from agent_payload.modules._fileattrs import Failure, check_mode_value, resolve_mode


@pytest.mark.parametrize("value, expected", [
    ("0644", 0o644), ("644", 0o644), ("0o644", 0o644), (" 0755 ", 0o755), ("01777", 0o1777),
    (420, 0o644), (0o755, 0o755), (0, 0), ("u+x", "u+x"), ("u=rw,go=r", "u=rw,go=r"),
    ("a+X", "a+X"), ("=rw", "=rw"), ("g=u-w", "g=u-w"), (None, None),
])
def test_mode_values(value, expected):
    assert check_mode_value(value) == expected


@pytest.mark.parametrize("value", ["rwx", "999", "u+q", "", "u+x,,g+w", "x+u", 0o17777, -1,
                                   True, "017777"])
def test_bad_modes_fail_naming_the_path(value):
    with pytest.raises(Failure, match="/some/path") as info:
        check_mode_value(value, "/some/path")
    assert "\n" not in str(info.value)


FILE, DIR = stat.S_IFREG, stat.S_IFDIR


@pytest.mark.parametrize("kind, current, symbolic, expected", [
    (FILE, 0o644, "u+x", 0o744),
    (FILE, 0o664, "g-w", 0o644),
    (FILE, 0o640, "o=r", 0o644),
    (FILE, 0o644, "u+x,g-w,o=r", 0o744),
    (FILE, 0o777, "u=rwx,g=rx,o=", 0o750),
    (FILE, 0o644, "a+X", 0o644),
    (FILE, 0o744, "a+X", 0o755),
    (DIR, 0o600, "a+X", 0o711),
    (FILE, 0o700, "go=u", 0o777),
    (FILE, 0o740, "g=u-w", 0o750),
    (FILE, 0o755, "u+s", 0o4755),
    (FILE, 0o755, "g+s", 0o2755),
    (DIR, 0o777, "+t", 0o1777),
    (FILE, 0o4755, "u=rwx", 0o755),
    (FILE, 0o000, "+x", 0o111),
    (FILE, 0o000, "=rw", 0o644),  # no class given: the umask (022) holds back bits
    (FILE, 0o000, "a=rw", 0o666),
    (FILE, 0o777, "-w", 0o577),  # umask bits are not removed either
    (FILE, 0o777, "a-w", 0o555),
])
def test_symbolic_modes(kind, current, symbolic, expected):
    assert resolve_mode(symbolic, kind | current, umask=0o022) == expected


def test_octal_modes_ignore_the_current_mode():
    assert resolve_mode(0o600, FILE | 0o777) == 0o600


def test_umask_is_read_without_changing_it():
    assert 0 <= _fileattrs.current_umask() <= 0o777


def test_state_and_path_info(tmp_path):
    target = tmp_path / "f"
    target.write_text("x")
    (tmp_path / "l").symlink_to("f")
    assert _fileattrs.state_of(str(tmp_path / "missing" / "x")) == "absent"
    assert _fileattrs.state_of(str(tmp_path / "l")) == "link"
    assert _fileattrs.state_of(str(tmp_path)) == "directory"
    assert _fileattrs.state_of(str(target)) == "file"
    info = _fileattrs.path_info(str(target))
    assert info["size"] == 1 and info["state"] == "file" and info["mode"].startswith("0")
    assert _fileattrs.path_info(str(tmp_path / "missing")) == {}


def test_create_temp_file_is_new_private_and_unique(tmp_path):
    made = [_fileattrs.create_temp_file(str(tmp_path), ".fleet-t-") for _ in range(20)]
    for fd, path in made:
        os.close(fd)
        assert os.path.dirname(path) == str(tmp_path)
        assert os.path.basename(path).startswith(".fleet-t-")
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert len({path for _, path in made}) == 20

"""Registry credentials: stored like Docker's auths, never echoed."""

import base64
import json
import os

import pytest
from click.testing import CliRunner

from fleet import credentials
from fleet.cli import main


@pytest.fixture
def config(tmp_path, monkeypatch):
    path = tmp_path / "fleet" / "config.json"
    monkeypatch.setenv("FLEET_CONFIG", str(path))
    return path


def test_login_lookup_logout(config):
    assert credentials.login("https://Registry.example:5000/", "u", "p:w") == \
        "Registry.example:5000"
    data = json.loads(config.read_text())
    assert data == {"auths": {"Registry.example:5000": {
        "auth": base64.b64encode(b"u:p:w").decode()}}}
    assert oct(config.stat().st_mode & 0o777) == "0o600"
    assert credentials.lookup("Registry.example:5000") == ("u", "p:w")
    assert credentials.registries() == ["Registry.example:5000"]
    assert credentials.logout("Registry.example:5000") is True
    assert credentials.logout("Registry.example:5000") is False
    assert credentials.lookup("Registry.example:5000") is None


def test_docker_hub_aliases_share_one_entry(config):
    credentials.login("index.docker.io", "u", "p")
    assert credentials.lookup("docker.io") == ("u", "p")
    assert credentials.lookup("https://index.docker.io/v1/") == ("u", "p")


def test_other_keys_of_a_docker_config_survive(config):
    config.parent.mkdir(parents=True)
    config.write_text(json.dumps({"credsStore": "x", "auths": {"a": {"auth": "eDp5"}}}))
    credentials.login("b", "u", "p")
    data = json.loads(config.read_text())
    assert data["credsStore"] == "x" and set(data["auths"]) == {"a", "b"}
    assert credentials.lookup("a") == ("x", "y")


def test_broken_file_is_one_line_error(config):
    config.parent.mkdir(parents=True)
    config.write_text("{nope")
    with pytest.raises(credentials.CredentialsError) as info:
        credentials.lookup("a")
    assert str(config) in str(info.value) and "\n" not in str(info.value)


def test_cli_login_never_prints_the_password(config):
    result = CliRunner().invoke(main, ["login", "reg:5000", "-u", "bob", "--password-stdin"],
                                input="s3cret-pw\n")
    assert result.exit_code == 0, result.output
    assert "s3cret-pw" not in result.output
    assert credentials.lookup("reg:5000") == ("bob", "s3cret-pw")
    result = CliRunner().invoke(main, ["logout", "reg:5000"])
    assert result.exit_code == 0 and "Removed" in result.output
    assert os.path.exists(config)

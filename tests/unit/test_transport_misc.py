"""fleet.transport: known_hosts options, strict host keys, Target, run_parallel."""

import os
import shutil
import subprocess
import threading
import time
import types

import paramiko
import pytest

from fleet.transport import pool, ssh
from fleet.transport.ssh import HostKeyError, Target, TransportError
from tests.polling import wait_until


@pytest.mark.parametrize("args, expected", [
    ("-o UserKnownHostsFile=/lab/known_hosts", "/lab/known_hosts"),
    ("-oUserKnownHostsFile=/lab/known_hosts", "/lab/known_hosts"),
    ("-o StrictHostKeyChecking=yes -o UserKnownHostsFile=/a/kh", "/a/kh"),
    ("-o userknownhostsfile=/a/kh", "/a/kh"),
    ("-o 'UserKnownHostsFile=/with space/kh'", "/with"),  # ssh's own split: first file
    ("-o 'UserKnownHostsFile=/a/kh /b/kh'", "/a/kh"),
    ("-C -o ProxyJump=bastion -o UserKnownHostsFile=~/kh", "~/kh"),
    ("-o StrictHostKeyChecking=no", None),
    ("-o UserKnownHostsFile=", None),
    ("-o", None),
    ("", None),
    (None, None),
])
def test_known_hosts_from_common_args(args, expected):
    assert ssh.known_hosts_from_common_args(args) == expected


def test_known_hosts_option_with_a_space_separator():
    assert ssh.known_hosts_from_common_args("-o 'UserKnownHostsFile /lab/kh'") == "/lab/kh"


class FakeSocket:
    closed = False

    def close(self):
        self.closed = True


@pytest.fixture
def no_ssh(monkeypatch):
    """A TCP connect that succeeds without a network, and no SSH handshake allowed:
    an unknown host key must be refused after the host answers, before any SSH."""
    sockets = []

    def connect(*args, **kwargs):
        sockets.append(FakeSocket())
        return sockets[-1]

    def no_transport(*args, **kwargs):
        raise AssertionError("an SSH handshake was started")

    monkeypatch.setattr(ssh.socket, "create_connection", connect)
    monkeypatch.setattr(ssh.paramiko, "Transport", no_transport)
    return sockets


@pytest.mark.parametrize("port, name", [(22, "127.0.0.1"), (2222, "[127.0.0.1]:2222")])
def test_connect_with_empty_known_hosts_refuses_before_ssh(tmp_path, no_ssh, port, name):
    known = tmp_path / "known_hosts"
    known.write_text("")
    target = Target(name="web1", host="127.0.0.1", port=port, known_hosts=str(known))
    with pytest.raises(HostKeyError) as info:
        ssh.connect(target)
    message = str(info.value)
    assert message == (f"host key for {name} not found in {known} "
                       "(strict host key checking)")
    assert info.value.unreachable is True
    assert [s.closed for s in no_ssh] == [True]


def test_connect_with_a_missing_known_hosts_file(tmp_path, no_ssh):
    target = Target(name="w", host="10.0.0.9", known_hosts=str(tmp_path / "absent"))
    with pytest.raises(HostKeyError, match="not found in .*absent"):
        ssh.connect(target)


def test_known_hosts_of_another_host_do_not_count(tmp_path, no_ssh):
    key = paramiko.ECDSAKey.generate()
    known = tmp_path / "known_hosts"
    known.write_text(f"10.0.0.1 {key.get_name()} {key.get_base64()}\n")
    target = Target(name="w", host="10.0.0.2", known_hosts=str(known))
    with pytest.raises(HostKeyError, match="host key for 10.0.0.2 not found"):
        ssh.connect(target)


def test_unreadable_known_hosts_is_a_host_key_error(tmp_path):
    with pytest.raises(HostKeyError, match="cannot read known_hosts"):
        ssh.known_hosts(str(tmp_path))  # a directory


def test_known_host_but_closed_port_is_unreachable(tmp_path):
    import socket
    key = paramiko.ECDSAKey.generate()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{port} {key.get_name()} {key.get_base64()}\n")
    target = Target(name="w", host="127.0.0.1", port=port, known_hosts=str(known),
                    connect_timeout=2)
    with pytest.raises(TransportError, match=f"unreachable: connect to 127.0.0.1:{port}"):
        ssh.connect(target)


def test_changed_host_key_message():
    known_key = paramiko.ECDSAKey.generate()
    server_key = paramiko.ECDSAKey.generate()
    keys = paramiko.HostKeys()
    keys.add("[10.0.0.5]:2200", known_key.get_name(), known_key)
    expected = keys.lookup("[10.0.0.5]:2200")
    target = Target(name="w", host="10.0.0.5", port=2200)
    ssh._verify_host_key(known_key, expected, target, "/kh")  # the same key passes
    with pytest.raises(HostKeyError) as info:
        ssh._verify_host_key(server_key, expected, target, "/kh")
    message = str(info.value)
    assert message.startswith("host key for [10.0.0.5]:2200 changed: server sent "
                              f"{server_key.get_name()} {ssh.fingerprint(server_key)}")
    assert f"/kh has {known_key.get_name()} {ssh.fingerprint(known_key)}" in message
    assert "man-in-the-middle" in message


def test_fingerprint_format():
    key = paramiko.ECDSAKey.generate()
    fp = ssh.fingerprint(key)
    assert fp.startswith("SHA256:") and not fp.endswith("=") and len(fp) == 7 + 43


def test_missing_private_key_is_an_auth_error(tmp_path):
    with pytest.raises(ssh.AuthError, match="private key file .* does not exist"):
        ssh.private_key(str(tmp_path / "no_key"))


def test_target_repr_never_shows_the_become_password():
    target = Target(name="db1", host="10.0.0.7", port=2222, user="deploy",
                    become=True, become_password="hunter2-secret")
    assert repr(target) == "Target(deploy@10.0.0.7:2222)"
    assert "hunter2" not in str(target)
    assert "hunter2" not in f"{target!r} {[target]} {({'t': target})}"


def test_target_user_default(monkeypatch):
    monkeypatch.setenv("USER", "alice")
    assert Target(name="a", host="h").user_or_default == "alice"
    monkeypatch.delenv("USER")
    assert Target(name="a", host="h").user_or_default == "root"
    assert Target(name="a", host="h", user="bob").user_or_default == "bob"


def test_run_parallel_returns_results_in_item_order():
    delays = {"a": 0.06, "b": 0.0, "c": 0.03, "d": 0.01}
    done = []
    caller = threading.get_ident()

    def fn(item):
        time.sleep(delays[item])
        return item.upper()

    def on_done(item, value, error):
        assert threading.get_ident() == caller
        done.append((item, value, error))

    results = pool.run_parallel(list(delays), fn, forks=4, on_done=on_done)
    assert list(results) == ["a", "b", "c", "d"]
    assert results == {k: (k.upper(), None) for k in delays}
    assert sorted(done) == [(k, k.upper(), None) for k in sorted(delays)]
    order = [item for item, _, _ in done]
    assert order.index("b") < order.index("a")  # on_done follows completion, not item order


def test_run_parallel_captures_exceptions_per_item():
    def fn(n):
        if n % 2:
            raise ValueError(f"odd {n}")
        return n * 10

    seen = []
    results = pool.run_parallel([1, 2, 3, 4], fn, forks=2,
                                on_done=lambda item, value, error: seen.append(item))
    assert [results[n][0] for n in (2, 4)] == [20, 40]
    for n in (1, 3):
        value, error = results[n]
        assert value is None and isinstance(error, ValueError) and str(error) == f"odd {n}"
    assert sorted(seen) == [1, 2, 3, 4]


def test_run_parallel_limits_concurrency():
    running = []
    peak = []
    lock = threading.Lock()

    def fn(item):
        with lock:
            running.append(item)
            peak.append(len(running))
        time.sleep(0.01)
        with lock:
            running.remove(item)
        return item

    results = pool.run_parallel(list(range(8)), fn, forks=2)
    assert list(results) == list(range(8))
    assert max(peak) <= 2


def test_run_parallel_empty_and_forks_floor():
    assert pool.run_parallel([], lambda x: x, forks=4) == {}
    assert pool.run_parallel(["x"], lambda x: x * 2, forks=0) == {"x": ("xx", None)}


def test_paramiko_imports_without_importlib_metadata_and_knows_its_version():
    import subprocess
    import sys

    code = ("import sys, fleet.transport.ssh as s\n"
            "assert 'importlib.metadata' not in sys.modules, 'metadata imported'\n"
            "assert 'invoke' not in sys.modules or sys.modules['invoke'] is not None\n"
            "from importlib import metadata\n"
            "assert type(metadata).__name__ == 'module', metadata\n"
            "assert s.paramiko.__version__ == metadata.version('paramiko'), "
            "s.paramiko.__version__\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("text, seconds", [
    ("60", 60.0), ("60s", 60.0), ("10m", 600.0), ("1h30m", 5400.0), ("2D", 172800.0),
    ("no", 0.0), ("yes", float("inf")), ("0", float("inf")), ("0s", float("inf")),
])
def test_persist_seconds_reads_controlpersist_times(text, seconds):
    from fleet.transport.targets import persist_seconds

    assert persist_seconds(text) == seconds


@pytest.mark.parametrize("text", ["", "ten", "10x", "m5", "-1"])
def test_persist_seconds_refuses_what_ssh_refuses(text):
    from fleet.transport.targets import persist_seconds

    with pytest.raises(ValueError):
        persist_seconds(text)


def _target(tmp_path, host_line):
    from fleet.inventory import load_inventory
    from fleet.transport.targets import target_for

    path = tmp_path / "hosts"
    path.write_text(f"[web]\n{host_line}\n")
    return target_for(load_inventory(str(path)), host_line.split()[0])


def test_persist_comes_from_ssh_args_then_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("FLEET_PERSIST", raising=False)
    assert _target(tmp_path, "h1").persist == 60.0  # Ansible's ssh_args default
    monkeypatch.setenv("FLEET_PERSIST", "5m")
    assert _target(tmp_path, "h1").persist == 300.0
    assert _target(tmp_path, "h1 ansible_ssh_common_args='-o ControlPersist=30s'"
                   ).persist == 30.0
    assert _target(tmp_path, "h1 ansible_ssh_extra_args='-o ControlPersist=no' "
                   "ansible_ssh_common_args='-o ControlPersist=30s'").persist == 0.0
    assert _target(tmp_path, "h1 ansible_ssh_common_args='-o ControlMaster=no'"
                   ).persist == 0.0
    monkeypatch.setenv("FLEET_PERSIST", "no")
    assert _target(tmp_path, "h1").persist == 0.0


def test_a_bad_persist_time_names_the_host_or_the_variable(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match=r"host h1: ansible_ssh_common_args: ControlPersist "
                                         r"'soon' is not a time"):
        _target(tmp_path, "h1 ansible_ssh_common_args='-o ControlPersist=soon'")
    monkeypatch.setenv("FLEET_PERSIST", "later")
    with pytest.raises(ValueError, match="FLEET_PERSIST: 'later' is not a time"):
        _target(tmp_path, "h1")


def test_known_hosts_are_read_again_when_the_file_changes(tmp_path):
    path = tmp_path / "known_hosts"
    path.write_text("")
    assert ssh.known_hosts(str(path)).lookup("h1") is None
    blob = "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
    path.write_text(f"h1 ssh-ed25519 {blob}\n")
    assert ssh.known_hosts(str(path)).lookup("h1") is not None


def test_connections_send_without_nagle(tmp_path, monkeypatch):
    """A frame is often two writes (header, body): with Nagle's algorithm the second
    waited for the host's delayed ACK of the first, 40 ms a request."""
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    known = tmp_path / "known_hosts"
    blob = "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
    known.write_text(f"[127.0.0.1]:{port} ssh-ed25519 {blob}\n")
    seen = []

    class Refusing:
        """A Transport that notes its socket's TCP_NODELAY, then fails its handshake."""

        def __init__(self, sock):
            seen.append(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            self.sock = sock

        def get_security_options(self):
            return types.SimpleNamespace(key_types=(), ciphers=())

        def start_client(self, timeout=None):
            raise paramiko.SSHException("test: no handshake")

        def close(self):
            self.sock.close()

    monkeypatch.setattr(ssh.paramiko, "Transport", Refusing)
    target = Target(name="h", host="127.0.0.1", port=port, known_hosts=str(known))
    try:
        with pytest.raises(TransportError):
            ssh.connect(target)
    finally:
        listener.close()
    assert seen and seen[0] != 0


def test_pinned_auth_spells_out_this_process_agent_and_default_keys(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".ssh").mkdir()
    for name in ("id_rsa", "id_ed25519"):
        (tmp_path / ".ssh" / name).write_text("key")
    monkeypatch.setenv("SSH_AUTH_SOCK", "/run/user/0/agent.7")
    plain = Target(name="web1", host="10.0.0.8")
    pinned = ssh.pinned_auth(plain)
    assert pinned.agent == "/run/user/0/agent.7"
    assert pinned.identities == (str(tmp_path / ".ssh/id_ed25519"), str(tmp_path / ".ssh/id_rsa"))
    monkeypatch.delenv("SSH_AUTH_SOCK")
    assert ssh.pinned_auth(plain).agent == ""  # no agent, not "whichever the keeper has"
    assert ssh.pinned_auth(pinned) == pinned
    with_file = Target(name="web1", host="10.0.0.8", key_file="/keys/id")
    assert ssh.pinned_auth(with_file) is with_file


def test_authentication_uses_the_pinned_sources(tmp_path, monkeypatch):
    key = paramiko.ECDSAKey.generate()
    path = tmp_path / "id_ecdsa"
    key.write_private_key_file(str(path))
    monkeypatch.setenv("HOME", str(tmp_path / "elsewhere"))  # no default keys there
    monkeypatch.setattr(ssh.paramiko, "Agent", lambda: pytest.fail("asked $SSH_AUTH_SOCK"))
    offered = []

    class Transport:
        def auth_publickey(self, user, key):
            offered.append((user, ssh.fingerprint(key)))

        def is_authenticated(self):
            return True

    target = Target(name="web1", host="10.0.0.8", user="deploy", agent="",
                    identities=(str(path),))
    ssh._authenticate(Transport(), target, "10.0.0.8:22")
    assert offered == [("deploy", ssh.fingerprint(key))]
    with pytest.raises(ssh.AuthError, match="no SSH key for deploy@10.0.0.8"):
        ssh._authenticate(Transport(), Target(name="web1", host="10.0.0.8", user="deploy",
                                              agent="", identities=()), "10.0.0.8")


@pytest.mark.skipif(not shutil.which("ssh-agent"), reason="needs openssh-client")
def test_agent_keys_come_from_the_agent_at_the_given_socket(tmp_path):
    sock = tmp_path / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL)
    try:
        wait_until(sock.exists, 10)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                        str(tmp_path / "key")], check=True)
        subprocess.run(["ssh-add", "-q", str(tmp_path / "key")], check=True,
                       env=dict(os.environ, SSH_AUTH_SOCK=str(sock)),
                       stderr=subprocess.DEVNULL)
        keys = ssh.agent_keys(str(sock))
        assert [ssh.fingerprint(k) for k in keys] == [
            ssh.fingerprint(ssh.private_key(str(tmp_path / "key")))]
        assert ssh.agent_keys("") == []
        assert ssh.agent_keys(str(tmp_path / "gone.sock")) == []  # no agent: no keys
    finally:
        agent.terminate()
        agent.wait(10)

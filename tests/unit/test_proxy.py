"""agent_payload.runtime.proxy: the userland port proxy, as a real process on loopback.

Every server is a thread of this process on 127.0.0.1 with a port the kernel picked;
every proxy a process of its own, ended by its pid when a test is done.
"""

import hashlib
import os
import signal
import socket
import subprocess
import threading
import time

import pytest

from agent_payload.runtime import proxy
from agent_payload.runtime.proxy import ProxyError

LOCAL = "127.0.0.1"


def _thread(target, *args):
    thread = threading.Thread(target=target, args=args, daemon=True)
    thread.start()
    return thread


def _serve(handler):
    """A TCP server on loopback running ``handler(conn)`` per connection; its port."""
    server = socket.socket()
    server.bind((LOCAL, 0))
    server.listen(16)

    def accept():
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            _thread(handler, conn)

    _thread(accept)
    return server


def _echo(conn):
    """Echo until the client's EOF, then pass the EOF on."""
    with conn:
        while True:
            data = conn.recv(1 << 16)
            if not data:
                break
            conn.sendall(data)
        conn.shutdown(socket.SHUT_WR)


def _read_all(sock):
    chunks = []
    while True:
        data = sock.recv(1 << 16)
        if not data:
            return b"".join(chunks)
        chunks.append(data)


def _mapping(port, proto="tcp", host_port=0, host_ip=LOCAL):
    return {"host_ip": host_ip, "host_port": host_port, "proto": proto, "address": LOCAL,
            "port": port}


def _gone(pid):
    """Whether ``pid`` has ended (reaping it when it is our child)."""
    try:
        return os.waitpid(pid, os.WNOHANG)[0] == pid
    except ChildProcessError:
        return not os.path.exists(f"/proc/{pid}")


def _proxies_of(directory):
    """Pids of processes whose command line names ``directory`` (our proxies)."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/cmdline", "rb") as handle:
                    args = handle.read().split(b"\0")
            except OSError:
                continue
            if os.fsencode(str(directory)) in args:
                found.append(int(name))
    return found


@pytest.fixture
def start(tmp_path):
    """proxy.start in a directory of this test; every proxy it made is killed after."""
    pids = []

    def starter(mappings, directory=None):
        pid = proxy.start(str(directory or tmp_path), mappings)
        pids.append(pid)
        return pid

    yield starter
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass


@pytest.fixture
def echo():
    server = _serve(_echo)
    yield server.getsockname()[1]
    server.close()


def test_tcp_relays_a_large_transfer_intact(start, echo):
    mapping = _mapping(echo)
    start([mapping])
    assert mapping["host_port"]  # port 0: the one the kernel gave is written back
    payload = os.urandom(8 << 20)
    client = socket.create_connection((LOCAL, mapping["host_port"]), timeout=30)

    def send():
        client.sendall(payload)
        client.shutdown(socket.SHUT_WR)

    sender = _thread(send)
    received = _read_all(client)
    sender.join()
    client.close()
    assert len(received) == len(payload)
    assert hashlib.sha256(received).digest() == hashlib.sha256(payload).digest()


def test_tcp_serves_many_connections_at_once(start, echo):
    mapping = _mapping(echo)
    start([mapping])
    clients = [socket.create_connection((LOCAL, mapping["host_port"]), timeout=10)
               for _ in range(20)]
    for number, client in enumerate(clients):
        client.sendall(b"client %d" % number)
        client.shutdown(socket.SHUT_WR)
    for number, client in enumerate(clients):
        assert _read_all(client) == b"client %d" % number
        client.close()


def test_client_half_close_still_gets_every_reply(start):
    def answer_after_eof(conn):  # replies only once the request has ended
        with conn:
            request = _read_all(conn)
            time.sleep(0.1)
            conn.sendall(b"got " + request)

    server = _serve(answer_after_eof)
    mapping = _mapping(server.getsockname()[1])
    start([mapping])
    with socket.create_connection((LOCAL, mapping["host_port"]), timeout=10) as client:
        client.sendall(b"request")
        client.shutdown(socket.SHUT_WR)
        assert _read_all(client) == b"got request"
    server.close()


def test_server_half_close_still_gets_the_client_data(start):
    heard = []

    def banner_then_listen(conn):  # the server's EOF first, then it reads on
        with conn:
            conn.sendall(b"banner")
            conn.shutdown(socket.SHUT_WR)
            heard.append(_read_all(conn))

    server = _serve(banner_then_listen)
    mapping = _mapping(server.getsockname()[1])
    start([mapping])
    with socket.create_connection((LOCAL, mapping["host_port"]), timeout=10) as client:
        assert _read_all(client) == b"banner"
        client.sendall(b"goodbye")
    deadline = time.monotonic() + 5
    while not heard and time.monotonic() < deadline:
        time.sleep(0.01)
    assert heard == [b"goodbye"]
    server.close()


def test_refused_target_closes_the_client(start):
    closed = socket.socket()
    closed.bind((LOCAL, 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there now
    mapping = _mapping(port)
    start([mapping])
    try:  # the reset may come before create_connection has seen the connection made
        with socket.create_connection((LOCAL, mapping["host_port"]), timeout=5) as client:
            assert client.recv(100) == b""
    except ConnectionResetError:
        pass


@pytest.fixture
def udp_echo():
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind((LOCAL, 0))

    def serve():
        while True:
            try:
                data, peer = server.recvfrom(65536)
                server.sendto(b"echo " + data, peer)
            except OSError:  # closed at the end of the test
                return

    _thread(serve)
    yield server.getsockname()[1]
    server.close()


def test_udp_round_trip_per_client(start, udp_echo):
    mapping = _mapping(udp_echo, proto="udp")
    start([mapping])
    clients = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2)]
    for number, client in enumerate(clients):
        client.settimeout(5)
        client.sendto(b"ping %d" % number, (LOCAL, mapping["host_port"]))
    for number, client in enumerate(clients):
        assert client.recv(65536) == b"echo ping %d" % number
        big = os.urandom(60000)
        client.sendto(big, (LOCAL, mapping["host_port"]))
        assert client.recv(65536) == b"echo " + big
        client.close()


def test_udp_flows_idle_for_a_minute_are_forgotten(udp_echo):
    served = proxy.Proxy([_mapping(udp_echo, proto="udp")])
    try:
        service = served.services[0]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.sendto(b"ping", (LOCAL, service.port))
            deadline = time.monotonic() + 5
            while not service.flows and time.monotonic() < deadline:
                served._step()
            assert len(service.flows) == 1
            flow = next(iter(service.flows.values()))
            service.sweep(served.now + proxy.UDP_IDLE / 2)
            assert service.flows
            service.sweep(served.now + proxy.UDP_IDLE + 1)
            assert not service.flows
            assert flow.sock.fileno() == -1  # closed
    finally:
        served.close()


def test_one_proxy_serves_every_mapping(start, echo, udp_echo):
    mappings = [_mapping(echo), _mapping(udp_echo, proto="udp"), _mapping(echo)]
    start(mappings)
    for mapping in (mappings[0], mappings[2]):
        with socket.create_connection((LOCAL, mapping["host_port"]), timeout=5) as client:
            client.sendall(b"hi")
            client.shutdown(socket.SHUT_WR)
            assert _read_all(client) == b"hi"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.settimeout(5)
        client.sendto(b"hi", (LOCAL, mappings[1]["host_port"]))
        assert client.recv(100) == b"echo hi"


@pytest.mark.parametrize("host_ip, shown", [(LOCAL, LOCAL), ("", "0.0.0.0")])
def test_a_taken_port_is_a_proxy_error_and_leaves_no_process(tmp_path, echo, host_ip, shown):
    taken = socket.socket()
    taken.bind((host_ip or "0.0.0.0", 0))
    taken.listen()
    port = taken.getsockname()[1]
    fds = set(os.listdir("/proc/self/fd"))
    free = _mapping(echo)  # bound first, then given back when the second fails
    with pytest.raises(ProxyError) as caught:
        proxy.start(str(tmp_path), [free, _mapping(echo, host_port=port, host_ip=host_ip)])
    taken.close()
    assert str(caught.value) == (f"port {shown}:{port}/tcp is already taken on this host "
                                 "(Address already in use)")
    assert _proxies_of(tmp_path) == []
    assert not (tmp_path / proxy.PID_FILE).exists()
    assert not proxy.running(str(tmp_path))
    assert set(os.listdir("/proc/self/fd")) <= fds  # no pipe end left open here


def test_stop_ends_the_proxy_and_is_idempotent(start, echo, tmp_path):
    pid = start([_mapping(echo)])
    assert (tmp_path / proxy.PID_FILE).read_text().strip() == str(pid)
    assert proxy.running(str(tmp_path))
    proxy.stop(str(tmp_path))
    assert _gone(pid)
    assert not proxy.running(str(tmp_path))
    assert not (tmp_path / proxy.PID_FILE).exists()
    proxy.stop(str(tmp_path))  # nothing left to do
    proxy.stop(str(tmp_path / "never-had-one"))


def test_sigterm_closes_the_ports_and_exits_0(start, echo):
    mapping = _mapping(echo)
    pid = start([mapping])
    client = socket.create_connection((LOCAL, mapping["host_port"]), timeout=5)
    client.sendall(b"x")
    assert client.recv(1) == b"x"  # relayed: not just waiting in the listen queue
    os.kill(pid, signal.SIGTERM)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    assert _read_all(client) == b""  # its connection closed with it
    client.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((LOCAL, mapping["host_port"]), timeout=5)


def test_start_again_replaces_the_running_proxy(start, echo):
    first = start([_mapping(echo)])
    mapping = _mapping(echo)
    second = start([mapping])
    assert second != first and _gone(first)
    with socket.create_connection((LOCAL, mapping["host_port"]), timeout=5) as client:
        client.sendall(b"x")
        client.shutdown(socket.SHUT_WR)
        assert _read_all(client) == b"x"


def test_a_stale_pid_file_never_kills_another_process(tmp_path):
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        (tmp_path / proxy.PID_FILE).write_text(f"{sleeper.pid}\n")
        assert not proxy.running(str(tmp_path))
        proxy.stop(str(tmp_path))
        assert sleeper.poll() is None
        assert not (tmp_path / proxy.PID_FILE).exists()
    finally:
        sleeper.kill()
        sleeper.wait()


def test_the_proxy_holds_only_its_own_descriptors(start, echo, tmp_path):
    inherited = os.open(os.devnull, os.O_RDONLY)  # a descriptor a careless caller leaks
    os.set_inheritable(inherited, True)
    try:
        pid = start([_mapping(echo), _mapping(echo, proto="udp")])
    finally:
        os.close(inherited)
    time.sleep(0.1)
    for name in os.listdir(f"/proc/{pid}/fd"):
        target = os.readlink(f"/proc/{pid}/fd/{name}")
        if int(name) <= 2:
            assert target == os.devnull
            continue
        with open(f"/proc/{pid}/fdinfo/{name}") as handle:
            flags = int(handle.read().split("flags:")[1].split()[0], 8)
        assert flags & 0o2000000, f"fd {name} ({target}) without close-on-exec"
        assert not target.startswith("/")  # sockets, pipes, epoll: no file or directory
    assert os.readlink(f"/proc/{pid}/cwd") == "/"


def test_bad_mappings_are_refused_before_any_process(tmp_path):
    with pytest.raises(ProxyError, match="no ports"):
        proxy.start(str(tmp_path), [])
    with pytest.raises(ProxyError, match="protocol 'sctp'"):
        proxy.start(str(tmp_path), [_mapping(80, proto="sctp")])
    assert _proxies_of(tmp_path) == []


def test_an_unusable_payload_is_a_proxy_error(tmp_path):
    with pytest.raises(ProxyError, match="ended before it was ready"):
        proxy.start(str(tmp_path), [_mapping(80)], payload_dir=str(tmp_path / "nowhere"))
    assert _proxies_of(tmp_path) == []

"""The userland port proxy: published container ports on a host with neither iptables
nor nft (what Docker's docker-proxy does).

One process per container serves all of its published ports. ``start`` spawns it
(posix_spawn with a session of its own and stdio on /dev/null, as the monitor is
started, so it outlives the SSH connection) and waits until it has bound every listening
socket: the child reports ``ok PORT...`` or ``error MESSAGE`` on a pipe the parent hands
it as fd 3, so a port that is taken comes back to the caller as a one-line ProxyError
and no process is left behind. The pid goes to DIR/proxy.pid; ``stop`` ends the process
after checking, in /proc/PID/cmdline, that the pid still is this container's proxy (pids
get reused). The mappings travel on the command line (``tcp,HOST_IP,HOST_PORT,ADDR,PORT``),
so ``ps`` shows what a proxy serves and nothing else has to be written. A mapping with
host_port 0 gets a port from the kernel; the child's ``ok`` line names the ports bound.

The process is one thread around ``selectors`` with non-blocking sockets. TCP: each
accepted connection gets a non-blocking connect to the container and is relayed both
ways through one shared receive buffer; what the other side cannot take at once is kept
(copied once) and that direction stops reading until it is written, so a slow reader
holds back a fast writer as the kernel's NAT would. An EOF from one side is passed on as
shutdown(SHUT_WR) to the other (half-close); the pair is closed when both directions are
done, and reset on errors. A container that refuses the connection gets the client's
connection reset. UDP: a connected socket per client address carries its datagrams to
the container and the replies back; a flow idle for UDP_IDLE seconds is forgotten.
SIGTERM closes everything and exits 0.

The container sees connections from the host (the bridge's address), not from the
client: the cost of having no NAT.
"""

import errno
import os
import select
import selectors
import signal
import socket
import struct
import sys
import time

PID_FILE = "proxy.pid"
STATUS_FD = 3  # where the child finds the pipe on which it reports readiness
READY_TIMEOUT = 5.0
STOP_TIMEOUT = 2.0
BUFFER_SIZE = 1 << 20  # one receive buffer for all connections: big reads, few syscalls
BATCH = 64  # accepts or datagrams taken per wake-up before others get a turn
LISTEN_BACKLOG = 4096
UDP_IDLE = 60.0
SWEEP = 10.0  # how often idle UDP flows are looked for
UDP_MAX_FLOWS = 4096
PAUSE = 1.0  # how long a listener rests after accept() failed (out of descriptors)
READ, WRITE = selectors.EVENT_READ, selectors.EVENT_WRITE
_MODULE = "agent_payload.runtime.proxy"
_SPAWN = ("import sys; sys.path.insert(0, sys.argv[1]); "
          "from agent_payload.runtime.proxy import main; main(sys.argv[2], sys.argv[3:])")


class ProxyError(Exception):
    """A published port could not be proxied (one line)."""


# The parent side: start, stop, running.


def _payload_dir():
    """The directory that holds the agent_payload package this module comes from."""
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _encode(mapping):
    """A mapping as one command-line word: ``proto,host_ip,host_port,address,port``."""
    proto = mapping["proto"]
    if proto not in ("tcp", "udp"):
        raise ProxyError(f"cannot proxy protocol {proto!r} (tcp or udp)")
    return ",".join((proto, mapping.get("host_ip") or "", str(int(mapping["host_port"])),
                     mapping["address"], str(int(mapping["port"]))))


def _decode(word):
    proto, host_ip, host_port, address, port = word.split(",")
    return {"proto": proto, "host_ip": host_ip, "host_port": int(host_port),
            "address": address, "port": int(port)}


def _pid_path(directory):
    return os.path.join(directory, PID_FILE)


def _read_pid(directory):
    try:
        with open(_pid_path(directory)) as handle:
            return int(handle.read().strip())
    except (OSError, ValueError):
        return None


def _write_pid(directory, pid):
    path = _pid_path(directory)
    tmp = f"{path}.{os.getpid()}"
    with open(tmp, "w") as handle:
        handle.write(f"{pid}\n")
    os.replace(tmp, path)  # a reader never sees half a pid


def _is_proxy(pid, directory):
    """Whether ``pid`` is the proxy of ``directory`` (and not a reused pid)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            args = [os.fsdecode(arg) for arg in handle.read().split(b"\0")]
    except OSError:
        return False
    try:
        code = args.index("-c")
    except ValueError:
        return False
    # args after -c: the code, the payload dir, the container directory, the mappings
    return (len(args) > code + 3 and _MODULE in args[code + 1]
            and args[code + 3] == directory)


def _alive(pid):
    """Whether ``pid`` still runs; reaps it when it is our exited child."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass  # not ours to reap (the usual case: the payload that started it has gone)
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _wait_gone(pid, timeout):
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def _end(pid):
    """SIGTERM, and SIGKILL when that was not enough."""
    for signum, wait in ((signal.SIGTERM, STOP_TIMEOUT), (signal.SIGKILL, 1.0)):
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            return
        if _wait_gone(pid, wait):
            return


def _spawn(python, payload_dir, directory, words, status_fd):
    """posix_spawn the proxy process with ``status_fd`` as its fd 3; its pid."""
    actions = [(os.POSIX_SPAWN_OPEN, fd, os.devnull, os.O_RDWR, 0) for fd in (0, 1, 2)]
    actions.append((os.POSIX_SPAWN_DUP2, status_fd, STATUS_FD))
    argv = [python, "-I", "-S", "-c", _SPAWN, payload_dir, directory, *words]
    try:
        return os.posix_spawn(python, argv,
                              {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")},
                              file_actions=actions, setsid=True, setsigmask=(),
                              setsigdef=(signal.SIGTERM, signal.SIGINT, signal.SIGPIPE))
    except OSError as exc:
        raise ProxyError(f"cannot start the port proxy ({python}: {exc.strerror})") from None


def _status(read_fd, timeout):
    """The child's report: one line, or "" when it ended or the time ran out first."""
    poller = select.poll()
    poller.register(read_fd, select.POLLIN)
    deadline = time.monotonic() + timeout
    data = b""
    while not data.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not poller.poll(left * 1000):
            break
        chunk = os.read(read_fd, 4096)
        if not chunk:
            break
        data += chunk
    return data.decode(errors="replace").strip()


def _failed(pid, line):
    """End and reap a child that did not report ready; the ProxyError to raise."""
    try:
        os.kill(pid, signal.SIGKILL)  # a no-op when it has exited already
    except ProcessLookupError:
        pass
    try:
        _, status = os.waitpid(pid, 0)
    except ChildProcessError:  # reaped by a SIGCHLD handler of the caller's
        status = None
    if line.startswith("error "):
        return ProxyError(line[len("error "):])
    if line:
        return ProxyError(f"the port proxy did not start: {line}")
    if status is not None and os.WIFEXITED(status):
        return ProxyError("the port proxy ended before it was ready "
                          f"(exit code {os.WEXITSTATUS(status)})")
    return ProxyError("the port proxy was not ready in time")


def start(directory, mappings, python=None, payload_dir=None):
    """Start the proxy that serves ``mappings`` (dicts: host_ip ("" for all addresses),
    host_port, proto "tcp"/"udp", address, port) for the container in ``directory`` and
    return its pid, once every port is bound. A proxy already running for ``directory``
    is stopped first. A mapping with host_port 0 gets a free port from the kernel, which
    is written into that dict. ProxyError (one line) when a port cannot be bound; then
    no process is left. ``python`` (default: this interpreter) runs the payload found
    in ``payload_dir`` (default: the one this module comes from)."""
    import fcntl

    if not mappings:
        raise ProxyError("no ports to proxy")
    words = [_encode(mapping) for mapping in mappings]
    directory = os.path.abspath(directory)
    stop(directory)
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    # above 3: a dup2 onto its own number would leave close-on-exec set in the child
    status_fd = fcntl.fcntl(write_fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(write_fd)
    try:
        pid = _spawn(python or sys.executable, payload_dir or _payload_dir(), directory,
                     words, status_fd)
    except ProxyError:
        os.close(read_fd)
        raise
    finally:
        os.close(status_fd)  # the child holds its own copy: EOF when it ends
    try:
        line = _status(read_fd, READY_TIMEOUT)
    finally:
        os.close(read_fd)
    if not line.startswith("ok"):
        raise _failed(pid, line)
    try:
        _write_pid(directory, pid)
    except OSError as exc:
        _failed(pid, "")
        raise ProxyError(f"cannot write {_pid_path(directory)} ({exc.strerror})") from None
    for mapping, port in zip(mappings, line.split()[1:]):
        if not mapping["host_port"]:
            mapping["host_port"] = int(port)
    return pid


def stop(directory):
    """End the proxy of the container in ``directory`` (SIGTERM; SIGKILL when it
    lingers) and remove its pid file. Nothing to do without one; a pid that is no
    longer this container's proxy is left alone."""
    directory = os.path.abspath(directory)
    pid = _read_pid(directory)
    if pid is not None and _is_proxy(pid, directory):
        _end(pid)
    try:
        os.unlink(_pid_path(directory))
    except FileNotFoundError:
        pass


def running(directory):
    """Whether the proxy of the container in ``directory`` runs."""
    directory = os.path.abspath(directory)
    pid = _read_pid(directory)
    return pid is not None and _is_proxy(pid, directory)


# The child side: the serving loop.


def _family(host):
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _where(mapping):
    return f"port {mapping['host_ip'] or '0.0.0.0'}:{mapping['host_port']}/{mapping['proto']}"


def _listen(mapping):
    """The bound (and, for TCP, listening) non-blocking socket of ``mapping``."""
    host = mapping["host_ip"] or "0.0.0.0"
    tcp = mapping["proto"] == "tcp"
    sock = socket.socket(_family(host), socket.SOCK_STREAM if tcp else socket.SOCK_DGRAM)
    try:
        if tcp:  # connections in TIME_WAIT from an earlier proxy must not block the port
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, mapping["host_port"]))
        if tcp:
            sock.listen(LISTEN_BACKLOG)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        how = ("is already taken on this host" if exc.errno == errno.EADDRINUSE
               else "cannot be opened on this host")
        raise ProxyError(f"{_where(mapping)} {how} ({exc.strerror})") from None
    return sock


class _Service:
    """A listening socket; it rests for PAUSE seconds when it fails (no descriptors
    left, say), so a level-triggered readiness cannot make the loop spin."""

    def __init__(self, proxy, sock, mapping):
        self.proxy = proxy
        self.sock = sock
        self.target = (mapping["address"], mapping["port"])
        self.port = sock.getsockname()[1]
        proxy.selector.register(sock, READ, self)

    def fail(self):
        self.proxy.selector.unregister(self.sock)
        self.proxy.paused.append((self.proxy.now + PAUSE, self))

    def resume(self):
        self.proxy.selector.register(self.sock, READ, self)

    def close(self):
        self.sock.close()


class _TcpService(_Service):
    def ready(self, sock, mask):
        for _ in range(BATCH):
            try:
                client, _ = sock.accept()
            except BlockingIOError:
                return
            except ConnectionAbortedError:
                continue  # the client gave up before we took it
            except OSError:
                self.fail()
                return
            _Relay(self.proxy, client, self.target)


class _Relay:
    """One TCP connection relayed both ways. Side 0 is the client, side 1 our socket to
    the container; pending[i] waits to be written to side i, eof[i] says side i sent
    its FIN, shut[i] that we passed a FIN on to side i."""

    def __init__(self, proxy, client, target):
        self.proxy = proxy
        self.socks = [client, None]
        self.masks = [0, 0]
        self.pending = [None, None]
        self.eof = [False, False]
        self.shut = [False, False]
        self.connecting = True
        self.closed = False
        proxy.relays.add(self)
        try:
            client.setblocking(False)
            self.socks[1] = socket.socket(_family(target[0]), socket.SOCK_STREAM)
            self.socks[1].setblocking(False)
            code = self.socks[1].connect_ex(target)
        except OSError:
            code = errno.EMFILE
        if code not in (0, errno.EINPROGRESS):
            self.close(abort=True)
            return
        self._watch(1, WRITE)  # writable: the connect is done, one way or the other

    def ready(self, sock, mask):
        if self.closed:
            return  # closed by an earlier event of the same wake-up
        side = 0 if sock is self.socks[0] else 1
        try:
            if self.connecting:
                self._connected()
            else:
                if mask & WRITE and self.pending[side] is not None:
                    self._flush(side)
                if mask & READ and not self.eof[side] and self.pending[1 - side] is None:
                    self._pump(side)
        except OSError:
            self.close(abort=True)
            return
        if self.closed:
            return
        if self.shut[0] and self.shut[1]:
            self.close()
        else:
            self._update()

    def fail(self):
        self.close(abort=True)

    def _connected(self):
        code = self.socks[1].getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code:  # refused or unreachable: the client learns it by a reset, as with NAT
            self.close(abort=True)
            return
        self.connecting = False
        for sock in self.socks:  # pass on each write as it comes, as NAT does
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _pump(self, side):
        """Read from ``side`` and write to the other what it takes; keep the rest."""
        other = 1 - side
        view = self.proxy.view
        try:
            size = self.socks[side].recv_into(view)
        except BlockingIOError:
            return
        if not size:
            self.eof[side] = True
            self._pass_eof(other)
            return
        try:
            sent = self.socks[other].send(view[:size])
        except BlockingIOError:
            sent = 0
        if sent < size:  # a memoryview of a copy: later partial writes slice, not copy
            self.pending[other] = memoryview(bytes(view[sent:size]))

    def _flush(self, side):
        data = self.pending[side]
        try:
            sent = self.socks[side].send(data)
        except BlockingIOError:
            return
        if sent < len(data):
            self.pending[side] = data[sent:]
            return
        self.pending[side] = None
        if self.eof[1 - side]:
            self._pass_eof(side)

    def _pass_eof(self, side):
        if self.pending[side] is None and not self.shut[side]:
            self.socks[side].shutdown(socket.SHUT_WR)
            self.shut[side] = True

    def _update(self):
        """Wait for what each side can do: read while the other side has nothing
        pending (back-pressure), write while it has something pending."""
        for side in (0, 1):
            mask = 0
            if not self.eof[side] and self.pending[1 - side] is None:
                mask |= READ
            if self.pending[side] is not None:
                mask |= WRITE
            self._watch(side, mask)

    def _watch(self, side, mask):
        old = self.masks[side]
        if mask == old:
            return  # no epoll_ctl in the steady state
        selector, sock = self.proxy.selector, self.socks[side]
        if not old:
            selector.register(sock, mask, self)
        elif not mask:
            selector.unregister(sock)
        else:
            selector.modify(sock, mask, self)
        self.masks[side] = mask

    def close(self, abort=False):
        """Close both sides; ``abort``: with a reset, so the peers see an error."""
        if self.closed:
            return
        self.closed = True
        self.proxy.relays.discard(self)
        for side, sock in enumerate(self.socks):
            if sock is None:
                continue
            if self.masks[side]:
                self.proxy.selector.unregister(sock)
            if abort:
                try:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                except OSError:
                    pass
            sock.close()


class _UdpService(_Service):
    """Datagrams from clients, each client address a flow of its own."""

    def __init__(self, proxy, sock, mapping):
        super().__init__(proxy, sock, mapping)
        self.flows = {}  # client address -> _Flow

    def ready(self, sock, mask):
        view = self.proxy.view
        for _ in range(BATCH):
            try:
                size, client = sock.recvfrom_into(view)
            except BlockingIOError:
                return
            except OSError:
                continue  # an error queued on the socket; the next datagram may be fine
            flow = self.flows.get(client) or self._open(client)
            if flow is not None:
                flow.send(view[:size])

    def _open(self, client):
        if len(self.flows) >= UDP_MAX_FLOWS:
            return None  # dropped, as a full conntrack table would
        sock = socket.socket(_family(self.target[0]), socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.connect(self.target)
        except OSError:
            sock.close()
            return None
        flow = self.flows[client] = _Flow(self, client, sock)
        self.proxy.selector.register(sock, READ, flow)
        return flow

    def sweep(self, now):
        """Forget the flows idle for UDP_IDLE seconds."""
        for flow in [flow for flow in self.flows.values() if now - flow.last > UDP_IDLE]:
            flow.close()

    def close(self):
        for flow in list(self.flows.values()):
            flow.close()
        super().close()


class _Flow:
    """One UDP client: our socket connected to the container carries its datagrams."""

    def __init__(self, service, client, sock):
        self.service = service
        self.client = client
        self.sock = sock
        self.last = service.proxy.now

    def send(self, data):
        self.last = self.service.proxy.now
        try:
            self.sock.send(data)
        except OSError:
            pass  # a full buffer or an ICMP error: lost, as a datagram may be

    def ready(self, sock, mask):
        view = self.service.proxy.view
        self.last = self.service.proxy.now
        for _ in range(BATCH):
            try:
                size = sock.recv_into(view)
            except BlockingIOError:
                return
            except OSError:
                continue  # the container's port was closed (ICMP): nothing to relay
            try:
                self.service.sock.sendto(view[:size], self.client)
            except OSError:
                pass

    def fail(self):
        self.close()

    def close(self):
        if self.service.flows.pop(self.client, None) is self:
            self.service.proxy.selector.unregister(self.sock)
            self.sock.close()


class _Signals:
    """SIGTERM and SIGINT ask the loop to end; installed before the ports are bound, so
    that one sent as soon as start() returned is not the default death."""

    def __init__(self):
        self.received = False
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._handle)

    def _handle(self, _signum, _frame):
        self.received = True


class _Wakeup:
    """The read end of the signal wakeup pipe: a signal ends the wait for events."""

    def __init__(self, fd):
        self.fd = fd

    def ready(self, _sock, _mask):
        try:
            os.read(self.fd, 4096)
        except BlockingIOError:
            pass

    def fail(self):
        pass


class Proxy:
    """The listening sockets of a set of mappings and the loop that serves them."""

    def __init__(self, mappings):
        """Bind every mapping's socket (ProxyError, none left open, when one fails)."""
        self.selector = selectors.DefaultSelector()
        self.view = memoryview(bytearray(BUFFER_SIZE))
        self.now = time.monotonic()
        self.services = []
        self.relays = set()
        self.paused = []  # (monotonic time, service) to resume listening at
        self.next_sweep = self.now + SWEEP
        try:
            for mapping in mappings:
                kind = _TcpService if mapping["proto"] == "tcp" else _UdpService
                self.services.append(kind(self, _listen(mapping), mapping))
        except BaseException:
            self.close()
            raise

    def ports(self):
        """The host ports bound, in the order of the mappings."""
        return [service.port for service in self.services]

    def run(self, signals):
        """Serve until ``signals`` (a _Signals) has received one, then close every
        socket."""
        wake_r, wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        self.selector.register(wake_r, READ, _Wakeup(wake_r))
        try:
            while not signals.received:
                self._step()
        finally:
            self.close()

    def _timeout(self):
        """Seconds until the next timer (None: none), for the wait for events."""
        times = [at for at, _ in self.paused]
        if any(getattr(service, "flows", None) for service in self.services):
            times.append(self.next_sweep)
        return max(0.0, min(times) - self.now) if times else None

    def _step(self):
        events = self.selector.select(self._timeout())
        self.now = time.monotonic()
        for key, mask in events:
            try:
                key.data.ready(key.fileobj, mask)
            except Exception:  # noqa: BLE001 - one connection's trouble must not end
                key.data.fail()  # the others (nor the ports of the container)
        self._timers()

    def _timers(self):
        due = [service for at, service in self.paused if at <= self.now]
        self.paused = [(at, service) for at, service in self.paused if at > self.now]
        for service in due:
            service.resume()
        if self.now >= self.next_sweep:  # not on every wake-up: it walks every flow
            self.next_sweep = self.now + SWEEP
            for service in self.services:
                if isinstance(service, _UdpService):
                    service.sweep(self.now)

    def close(self):
        """Close every connection and listening socket."""
        for relay in list(self.relays):
            relay.close()
        for service in self.services:
            service.close()
        self.selector.close()


def _raise_fd_limit():
    """As many descriptors as allowed: two for each TCP connection."""
    import resource

    try:
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (OSError, ValueError):
        pass


def _close_inherited():
    """Close what the spawning process left open without close-on-exec (a session's
    pipes, say): the proxy must hold nothing but its own sockets."""
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        try:
            if fd > STATUS_FD and os.get_inheritable(fd):
                os.close(fd)
        except OSError:
            pass  # the descriptor listdir used, closed by now


def _report(line):
    try:
        os.write(STATUS_FD, (line + "\n").encode())
    except OSError:
        pass  # the parent gave up waiting: nothing to tell


def main(directory, words):
    """Entry point of the proxy process (``directory`` only names it, for ``stop``):
    bind the ports of ``words``, report ``ok PORT...`` or ``error MESSAGE`` on fd 3,
    then serve."""
    del directory
    os.set_inheritable(STATUS_FD, False)
    _close_inherited()
    os.chdir("/")  # hold no container directory or mount busy
    _raise_fd_limit()
    signals = _Signals()
    try:
        proxy = Proxy([_decode(word) for word in words])
    except Exception as exc:  # noqa: BLE001 - every failure goes back as one line
        message = str(exc) if isinstance(exc, ProxyError) else f"{type(exc).__name__}: {exc}"
        _report("error " + " ".join(message.split()))
        os.close(STATUS_FD)
        sys.exit(1)
    _report("ok " + " ".join(str(port) for port in proxy.ports()))
    os.close(STATUS_FD)
    proxy.run(signals)

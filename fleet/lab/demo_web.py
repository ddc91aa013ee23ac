"""The demo's web tier: a small HTTP app that reads and writes PostgreSQL and Redis.

It is not imported by fleet: ``fleet.lab.demo_images`` copies this file into the
``demo/web`` image as ``/app/web.py``, with its bytecode, where Debian's python3 runs it
(``python3 -S /app/main.py``, which imports it). It speaks PostgreSQL's protocol (simple
queries, SCRAM-SHA-256 or md5 passwords) and Redis's (RESP), and answers HTTP/1.1, all
itself, on _socket and _thread:
psycopg2 (libpq and what it links), redis-py (asyncio and all) and http.server (http.client,
ssl, email, mimetypes) cost more CPU at start-up than the rest of the app, on every
replica of a deploy, and three queries, two commands and two pages need none of them.
Even socket.py, socketserver and threading (enum, selectors and what they import) took
about 7 ms of each replica's start, for the little of them the app uses (``Stream``,
``connect`` and ``Server`` below).

- ``GET /``: inserts a row into the table ``visits`` (made when missing) and increments
  the Redis key ``hits``, then answers one line:
  ``hello from <hostname>: visits=<rows in visits> hits=<value of hits>``.
- ``GET /health``: 200 ``ok`` when both backends answer, else 503 naming the failures.

Where the backends are: Docker's legacy link variables when present
(``DBAPP_PORT_5432_TCP_ADDR`` / ``_PORT``, ``REDIS_PORT_6379_TCP_ADDR`` / ``_PORT``), else
``DB_HOST`` / ``REDIS_HOST``, else the hostnames ``dbapp`` and ``redis``, on the default
ports. ``DB_NAME``, ``DB_USER`` and ``DB_PASSWORD`` default to postgres, postgres and the
demo's password (the ``demo/postgres`` image's default ``POSTGRES_PASSWORD``). ``PORT``
(default 80) is where it listens; bound as root, it then runs as ``WEB_USER`` (default
www-data). At start-up it keeps trying the backends for ``WAIT_SECONDS`` (default 60)
in the background, logging why they do not answer yet; a request made before they do is
answered 503, and a lost connection is made again on the next request.

``python3 -S /app/main.py --check`` asks this machine's app for /health and exits 0 when it
answers 200 (the image's healthcheck).
"""

import _signal
import _socket
import _thread
import binascii
import os
import struct
import sys
import time

DEFAULT_PASSWORD = "demo"
DB_ALIAS, DB_PORT, DB_HOST = "dbapp", 5432, "dbapp"
REDIS_ALIAS, REDIS_PORT, REDIS_HOST = "redis", 6379, "redis"
CONNECT_TIMEOUT = 3
CREATE_TABLE = ("CREATE TABLE IF NOT EXISTS visits ("
                "id bigserial PRIMARY KEY, host text NOT NULL, "
                "at timestamptz NOT NULL DEFAULT now())")


def endpoint(env, alias, port, default_host, host_variable):
    """(host, port) of a backend: the legacy link variables of ``alias``, else the
    ``host_variable`` (e.g. DB_HOST), else ``default_host``; the port from the link
    variables, else ``port``."""
    prefix = f"{alias.upper()}_PORT_{port}_TCP"
    host = env.get(prefix + "_ADDR") or env.get(host_variable) or default_host
    number = env.get(prefix + "_PORT") or ""
    return host, int(number) if number.isdigit() else port


def settings(env):
    """What the app needs from its environment, as a dict."""
    db_host, db_port = endpoint(env, DB_ALIAS, DB_PORT, DB_HOST, "DB_HOST")
    redis_host, redis_port = endpoint(env, REDIS_ALIAS, REDIS_PORT, REDIS_HOST, "REDIS_HOST")
    port = env.get("PORT") or ""
    wait = env.get("WAIT_SECONDS") or ""
    return {
        "db_host": db_host, "db_port": db_port,
        "db_name": env.get("DB_NAME") or "postgres",
        "db_user": env.get("DB_USER") or "postgres",
        "db_password": env.get("DB_PASSWORD") or DEFAULT_PASSWORD,
        "redis_host": redis_host, "redis_port": redis_port,
        "port": int(port) if port.isdigit() else 80,
        "user": env.get("WEB_USER", "www-data"),
        "wait": float(wait) if wait.replace(".", "", 1).isdigit() else 60.0,
    }


def greeting(hostname, visits, hits):
    return f"hello from {hostname}: visits={visits} hits={hits}\n"


def log(message):
    sys.stderr.write(time.strftime("%Y-%m-%dT%H:%M:%S ") + message + "\n")
    sys.stderr.flush()


def connect(address, timeout):
    """A TCP connection to (host, port), each of the host's addresses tried in turn."""
    host, port = address
    failure = OSError(f"{host!r} has no address")
    for family, kind, proto, _, where in _socket.getaddrinfo(host, port, 0,
                                                             _socket.SOCK_STREAM):
        sock = _socket.socket(family, kind, proto)
        try:
            sock.settimeout(timeout)
            sock.connect(where)
            return sock
        except OSError as exc:
            sock.close()
            failure = exc
    raise failure


class Stream:
    """A connected socket read through a buffer: what the app needs of a file."""

    def __init__(self, sock):
        self.sock, self.buffer = sock, b""

    def _fill(self):
        chunk = self.sock.recv(65536)
        self.buffer += chunk
        return bool(chunk)

    def readline(self, limit=-1):
        """The next line with its newline (at most ``limit`` bytes; b"" at the end)."""
        while True:
            end = self.buffer.find(b"\n") + 1 or None
            if 0 <= limit <= len(self.buffer) and (end is None or end > limit):
                end = limit
            if end is None and not self._fill():
                end = len(self.buffer)
            if end is not None:
                line, self.buffer = self.buffer[:end], self.buffer[end:]
                return line

    def read(self, size):
        """The next ``size`` bytes (fewer at the end)."""
        while len(self.buffer) < size and self._fill():
            pass
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def write(self, data):
        self.sock.sendall(data)


class RedisError(Exception):
    """An error reply from Redis, or a reply that is not RESP."""


class Redis:
    """A Redis connection (made on first use, made again after a failure) that sends
    commands as RESP arrays of bulk strings and reads one reply per command."""

    def __init__(self, host, port, timeout=5):
        self.address = (_wire_host(host), port)
        self.timeout = timeout
        self.lock = _thread.allocate_lock()
        self.sock = None
        self.reader = None

    def command(self, *words):
        """Send one command; its reply (int, bytes, str for a status, None, or list)."""
        with self.lock:
            try:
                if self.sock is None:
                    self.sock = connect(self.address, CONNECT_TIMEOUT)
                    self.sock.settimeout(self.timeout)
                    self.reader = Stream(self.sock)
                self.sock.sendall(encode_command(words))
                return read_reply(self.reader)
            except RedisError:
                raise
            except Exception:
                self.close()
                raise

    def incr(self, key):
        return self.command("INCR", key)

    def ping(self):
        return self.command("PING") == "PONG"

    def close(self):
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
        self.sock = self.reader = None


def encode_command(words):
    """A command as a RESP array of bulk strings."""
    parts = [b"*%d\r\n" % len(words)]
    for word in words:
        data = word if isinstance(word, bytes) else str(word).encode("utf-8")
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def read_reply(reader):
    """One RESP reply from a Stream (or a binary file)."""
    line = reader.readline()
    if not line.endswith(b"\r\n"):
        raise ConnectionError("redis closed the connection")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode("utf-8", "replace")
    if kind == b"-":
        raise RedisError(rest.decode("utf-8", "replace"))
    if kind == b":":
        return int(rest)
    if kind == b"$":
        size = int(rest)
        if size < 0:
            return None
        data = reader.read(size + 2)
        if len(data) != size + 2:
            raise ConnectionError("redis closed the connection")
        return data[:-2]
    if kind == b"*":
        count = int(rest)
        return None if count < 0 else [read_reply(reader) for _ in range(count)]
    raise RedisError(f"not a RESP reply: {line[:40]!r}")


class PostgresError(Exception):
    """An ErrorResponse from PostgreSQL; ``code`` is its SQLSTATE."""

    def __init__(self, fields):
        self.code = fields.get("C", "")
        super().__init__(f"{fields.get('S', 'ERROR')}: {fields.get('M', 'error')} "
                         f"(SQLSTATE {self.code})")


UNIQUE_VIOLATION = "23505"
PROTOCOL_3 = 196608


class Postgres:
    """One connection speaking PostgreSQL's frontend/backend protocol 3: startup, the
    password (SCRAM-SHA-256, md5 or cleartext, whichever the server asks for), and simple
    queries. Connection trouble raises OSError (ConnectionError when the server hangs
    up); the server's errors raise PostgresError and leave the connection usable."""

    def __init__(self, host, port, user, password, dbname, timeout=5):
        self.address = (_wire_host(host), port)
        self.user, self.password, self.dbname = user, password, dbname
        self.timeout = timeout
        self.sock = self.reader = None

    @property
    def closed(self):
        return self.sock is None

    def connect(self):
        self.sock = connect(self.address, CONNECT_TIMEOUT)
        self.sock.settimeout(self.timeout)
        self.reader = Stream(self.sock)
        try:
            body = b"".join(_cstring(word) for word in (
                "user", self.user, "database", self.dbname,
                "application_name", "fleet-demo-web")) + b"\0"
            self.sock.sendall(struct.pack("!II", 8 + len(body), PROTOCOL_3) + body)
            self._authenticate()
            self._until_ready()
        except BaseException:
            self.close()
            raise
        return self

    def query(self, sql):
        """Run ``sql`` (one or more statements); the rows of the last result, each a list
        of text values (None for NULL)."""
        self._send(b"Q", _cstring(sql))
        return self._until_ready()

    def close(self):
        if self.sock is not None:
            try:
                self._send(b"X", b"")
            except OSError:
                pass
            self.sock.close()
        self.sock = self.reader = None

    def _send(self, kind, body):
        self.sock.sendall(kind + struct.pack("!I", 4 + len(body)) + body)

    def _receive(self):
        head = self.reader.read(5)
        if len(head) < 5:
            raise ConnectionError("postgres closed the connection")
        size = struct.unpack("!I", head[1:])[0] - 4
        body = self.reader.read(size)
        if len(body) < size:
            raise ConnectionError("postgres closed the connection")
        return head[:1], body

    def _until_ready(self):
        rows, error = [], None
        while True:
            kind, body = self._receive()
            if kind == b"T":
                rows = []
            elif kind == b"D":
                rows.append(_data_row(body))
            elif kind == b"E":
                error = PostgresError(_fields(body))
            elif kind == b"Z":
                if error is not None:
                    raise error
                return rows
            # S (parameter status), K (backend key), C (command done), N (notice), ...

    def _authenticate(self):
        scram = None
        while True:
            kind, body = self._receive()
            if kind == b"E":
                raise PostgresError(_fields(body))
            if kind != b"R":
                raise ConnectionError(f"postgres sent {kind!r} before authentication")
            code = struct.unpack("!I", body[:4])[0]
            if code == 0:
                return
            if code == 3:  # cleartext
                self._send(b"p", _cstring(self.password))
            elif code == 5:  # md5 with a 4-byte salt
                import hashlib

                inner = hashlib.md5((self.password + self.user).encode()).hexdigest()
                outer = hashlib.md5(inner.encode() + body[4:8]).hexdigest()
                self._send(b"p", _cstring("md5" + outer))
            elif code == 10:  # SASL: the mechanisms offered
                if b"SCRAM-SHA-256\0" not in body[4:]:
                    raise ConnectionError("postgres offers no SASL mechanism this app has")
                scram = Scram(self.password)
                first = scram.client_first().encode()
                self._send(b"p", _cstring("SCRAM-SHA-256") + struct.pack("!I", len(first))
                           + first)
            elif code == 11 and scram is not None:
                self._send(b"p", scram.client_final(body[4:].decode()).encode())
            elif code == 12 and scram is not None:
                scram.check_server_final(body[4:].decode())
            else:
                raise ConnectionError(f"postgres asks for authentication {code}, "
                                      "which this app does not speak")


class Scram:
    """The client side of SCRAM-SHA-256 (RFC 5802, RFC 7677) as PostgreSQL uses it: no
    channel binding, the user name left to the startup message."""

    def __init__(self, password, nonce=None, user=""):
        self.password = password
        self.nonce = nonce or _b64(os.urandom(18))
        self.first_bare = f"n={user},r={self.nonce}"
        self.server_signature = None

    def client_first(self):
        return "n,," + self.first_bare

    def client_final(self, server_first):
        import hashlib
        import hmac

        fields = dict(item.split("=", 1) for item in server_first.split(","))
        if not fields.get("r", "").startswith(self.nonce):
            raise ConnectionError("postgres answered SCRAM with another nonce")
        salted = hashlib.pbkdf2_hmac("sha256", self.password.encode(),
                                     binascii.a2b_base64(fields["s"]), int(fields["i"]))
        without_proof = "c=biws,r=" + fields["r"]
        message = ",".join((self.first_bare, server_first, without_proof)).encode()
        client_key = hmac.new(salted, b"Client Key", "sha256").digest()
        signature = hmac.new(hashlib.sha256(client_key).digest(), message, "sha256").digest()
        proof = bytes(a ^ b for a, b in zip(client_key, signature))
        server_key = hmac.new(salted, b"Server Key", "sha256").digest()
        self.server_signature = hmac.new(server_key, message, "sha256").digest()
        return without_proof + ",p=" + _b64(proof)

    def check_server_final(self, server_final):
        import hmac

        fields = dict(item.split("=", 1) for item in server_final.split(","))
        if "e" in fields:
            raise ConnectionError(f"postgres refused SCRAM: {fields['e']}")
        if not hmac.compare_digest(binascii.a2b_base64(fields.get("v", "")),
                                   self.server_signature or b""):
            raise ConnectionError("postgres's SCRAM signature does not match")


def _wire_host(host):
    """``host`` as getaddrinfo takes it cheapest: ASCII as bytes. A str goes through the
    idna codec, whose first use imports re and unicodedata, about 6 ms of every replica's
    start."""
    try:
        return host.encode("ascii")
    except UnicodeEncodeError:
        return host


def _b64(data):
    # binascii, not base64: base64 imports re, about 6 ms of every replica's start
    return binascii.b2a_base64(data, newline=False).decode()


def _cstring(text):
    data = text.encode("utf-8")
    if b"\0" in data:
        raise ValueError("a NUL byte in a PostgreSQL string")
    return data + b"\0"


def _fields(body):
    """An ErrorResponse's fields: {code letter: text}."""
    found = {}
    for item in body.split(b"\0"):
        if item:
            found[item[:1].decode()] = item[1:].decode("utf-8", "replace")
    return found


def _data_row(body):
    count = struct.unpack("!H", body[:2])[0]
    values, at = [], 2
    for _ in range(count):
        size = struct.unpack("!i", body[at:at + 4])[0]
        at += 4
        if size < 0:
            values.append(None)
        else:
            values.append(body[at:at + size].decode("utf-8"))
            at += size
    return values


def literal(text):
    """``text`` as an SQL string literal (standard_conforming_strings, PostgreSQL's
    default since 9.1: only the quote is special)."""
    if "\0" in text:
        raise ValueError("a NUL byte in an SQL literal")
    return "'" + text.replace("'", "''") + "'"


class Backends:
    """One PostgreSQL connection (used under a lock) and one Redis connection."""

    def __init__(self, config):
        self.config = config
        self.lock = _thread.allocate_lock()
        self.conn = None
        self.redis = Redis(config["redis_host"], config["redis_port"])

    def _db(self):
        if self.conn is None or self.conn.closed:
            c = self.config
            conn = Postgres(c["db_host"], c["db_port"], c["db_user"], c["db_password"],
                            c["db_name"]).connect()
            try:
                self._create_table(conn)
            except Exception:
                conn.close()
                raise
            self.conn = conn
        return self.conn

    def _create_table(self, conn):
        for attempt in range(3):
            try:
                conn.query(CREATE_TABLE)
                return
            except PostgresError as exc:
                # two apps creating it at once: one of them loses the race
                if exc.code != UNIQUE_VIOLATION or attempt == 2:
                    raise
                time.sleep(0.2)

    def _with_db(self, work):
        with self.lock:
            reused = self.conn is not None and not self.conn.closed
            try:
                return work(self._db())
            except PostgresError:
                raise  # the server's answer: the connection stays good
            except OSError:
                self._drop()
                if not reused:
                    raise
            # the server went away since the last request (a restart): once more, anew
            try:
                return work(self._db())
            except OSError:
                self._drop()
                raise

    def _drop(self):
        if self.conn is not None:
            try:
                self.conn.close()
            except Exception:
                pass
            self.conn = None

    def visit(self, hostname):
        """Record one visit in both backends; (rows in visits, hits)."""
        def insert(conn):
            rows = conn.query(f"INSERT INTO visits (host) VALUES ({literal(hostname)}); "
                              "SELECT count(*) FROM visits")
            return int(rows[0][0])

        visits = self._with_db(insert)
        hits = self.redis.incr("hits")
        return visits, hits

    def problems(self):
        """Why the backends do not answer (empty when both do)."""
        found = []
        try:
            self._with_db(lambda conn: conn.query("SELECT 1"))
        except Exception as exc:
            found.append(f"postgres {self.config['db_host']}:{self.config['db_port']}: "
                         + _one_line(exc))
        try:
            if not self.redis.ping():
                raise RedisError("PING was not answered PONG")
        except Exception as exc:
            found.append(f"redis {self.config['redis_host']}:{self.config['redis_port']}: "
                         + _one_line(exc))
        return found

    def wait(self, seconds):
        """Try both backends until they answer or ``seconds`` pass; log why not."""
        deadline = time.monotonic() + seconds
        last = None
        while True:
            found = self.problems()
            if not found:
                log("postgres and redis answer")
                return True
            if found != last:
                log("waiting: " + "; ".join(found))
                last = found
            if time.monotonic() >= deadline:
                log(f"backends still not answering after {seconds:g}s; "
                    "requests will keep trying")
                return False
            time.sleep(1)


def _one_line(exc):
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:300]


REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
           503: "Service Unavailable"}
MAX_LINE = 8192
MAX_HEADERS = 100


def route(backends, hostname, method, target):
    """(status, body text) of one request."""
    if method not in ("GET", "HEAD"):
        return 405, "only GET and HEAD\n"
    path = target.split("?", 1)[0]
    if path == "/":
        try:
            visits, hits = backends.visit(hostname)
        except Exception as exc:
            return 503, f"unavailable: {_one_line(exc)}\n"
        return 200, greeting(hostname, visits, hits)
    if path == "/health":
        found = backends.problems()
        return (503, "\n".join(found) + "\n") if found else (200, "ok\n")
    return 404, "not found\n"


def read_request(rfile):
    """(method, target, version, {header: value}) of the next request on a connection,
    None when the client closed it; ValueError for one that is not HTTP/1.x."""
    line = rfile.readline(MAX_LINE + 1)
    while line in (b"\r\n", b"\n"):  # stray empty lines between requests are allowed
        line = rfile.readline(MAX_LINE + 1)
    if not line:
        return None
    words = line.decode("latin-1").split()
    if len(words) != 3 or not words[2].startswith("HTTP/1.") or len(line) > MAX_LINE:
        raise ValueError("not an HTTP/1.x request line")
    headers = {}
    for _ in range(MAX_HEADERS + 1):
        field = rfile.readline(MAX_LINE + 1)
        if field in (b"\r\n", b"\n", b""):
            break
        name, colon, value = field.decode("latin-1").partition(":")
        if not colon or len(field) > MAX_LINE:
            raise ValueError("malformed header")
        headers[name.strip().lower()] = value.strip()
    else:
        raise ValueError("too many headers")
    length = headers.get("content-length", "0")
    if not length.isdigit():
        raise ValueError("bad Content-Length")
    if int(length):
        rfile.read(int(length))  # a body on GET means nothing here: read past it
    return words[0], words[1], words[2], headers


def keeps_alive(version, headers):
    """Whether the connection stays open after the answer (HTTP/1.1 unless closed,
    HTTP/1.0 only when asked)."""
    connection = headers.get("connection", "").lower()
    return connection == "keep-alive" if version == "HTTP/1.0" else connection != "close"


def response(code, text, keep_alive, head=False):
    """The bytes of an answer with a text/plain body."""
    body = text.encode("utf-8")
    lines = [f"HTTP/1.1 {code} {REASONS.get(code, 'Unknown')}",
             "Server: fleet-demo-web/1",
             "Content-Type: text/plain; charset=utf-8",
             f"Content-Length: {len(body)}",
             "Connection: " + ("keep-alive" if keep_alive else "close")]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (b"" if head else body)


class Handler:
    """One connection: requests answered in turn while the client keeps it open."""

    backends = None
    hostname = ""
    timeout = 60  # seconds an idle kept-alive connection is held

    def __init__(self, sock, client_address):
        sock.settimeout(self.timeout)
        self.client_address = client_address
        self.rfile = self.wfile = Stream(sock)

    def handle(self):
        while True:
            try:
                request = read_request(self.rfile)
            except ValueError as exc:
                self.wfile.write(response(400, f"{exc}\n", False))
                return
            except OSError:  # the idle timeout, or a reset
                return
            if request is None:
                return
            method, target, version, headers = request
            code, text = route(self.backends, self.hostname, method, target)
            keep = keeps_alive(version, headers)
            self.wfile.write(response(code, text, keep, head=method == "HEAD"))
            log(f'{self.client_address[0]} "{method} {target} {version}" {code}')
            if not keep:
                return


class Server:
    """A TCP server that answers each connection on a thread of its own, with
    ``handler(sock, client_address).handle()``."""

    def __init__(self, address, handler):
        self.handler, self.stopping = handler, False
        self.serving = _thread.allocate_lock()
        self.socket = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)
        try:
            self.socket.setsockopt(_socket.SOL_SOCKET, _socket.SO_REUSEADDR, 1)
            self.socket.bind(address)
            self.socket.listen(128)
        except BaseException:
            self.socket.close()
            raise
        self.server_address = self.socket.getsockname()

    def serve_forever(self):
        with self.serving:
            while not self.stopping:
                try:
                    fd, client = self.socket._accept()
                except ConnectionAbortedError:  # reset before it was accepted
                    continue
                _thread.start_new_thread(self._answer, (_socket.socket(fileno=fd), client))

    def _answer(self, sock, client):
        try:
            self.handler(sock, client).handle()
        except OSError:
            pass
        finally:
            sock.close()

    def shutdown(self):
        """Make serve_forever (on another thread) return, and wait until it has."""
        self.stopping = True
        host, port = self.server_address
        try:  # wakes its accept
            connect(("127.0.0.1" if host == "0.0.0.0" else host, port), 5).close()
        except OSError:
            pass
        with self.serving:
            pass

    def server_close(self):
        self.socket.close()


def drop_privileges(user):
    """Run as ``user`` from now on (when root and a user is named)."""
    if os.getuid() != 0 or not user:
        return
    import pwd

    entry = pwd.getpwnam(user)
    os.setgroups([])
    os.setgid(entry.pw_gid)
    os.setuid(entry.pw_uid)


def check(config, host="127.0.0.1"):
    """The healthcheck: 0 when this machine's app answers /health with 200."""
    try:
        conn = connect((_wire_host(host), config["port"]), 5)
        try:
            conn.sendall(b"GET /health HTTP/1.0\r\nHost: localhost\r\n\r\n")
            status = Stream(conn).readline(MAX_LINE).split()
        finally:
            conn.close()
    except OSError as exc:
        sys.stderr.write(_one_line(exc) + "\n")
        return 1
    if status[1:2] != [b"200"]:
        sys.stderr.write(f"/health answered {b' '.join(status[1:]).decode('latin-1')}\n")
        return 1
    return 0


def main(argv):
    config = settings(os.environ)
    if "--check" in argv:
        return check(config)
    Handler.hostname = _socket.gethostname()
    server = Server(("0.0.0.0", config["port"]), Handler)
    drop_privileges(config["user"])
    Handler.backends = backends = Backends(config)

    def stop(signum, frame):
        raise SystemExit(0)

    # PID 1 of a container gets no default action for these: exit on them ourselves
    _signal.signal(_signal.SIGTERM, stop)
    _signal.signal(_signal.SIGINT, stop)
    log(f"listening on :{config['port']} as uid {os.getuid()}; postgres "
        f"{config['db_host']}:{config['db_port']} db {config['db_name']}, redis "
        f"{config['redis_host']}:{config['redis_port']}")
    _thread.start_new_thread(backends.wait, (config["wait"],))
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""The demo's web tier: a small HTTP app that reads and writes PostgreSQL and Redis.

It is not imported by fleet: ``fleet.lab.demo_images`` copies this file into the
``demo/web`` image as ``/app/web.py``, where Debian's python3 and python3-psycopg2 run
it (``python3 /app/web.py``). It speaks Redis's protocol (RESP) and answers HTTP/1.1
itself, on socketserver: importing redis-py (asyncio and all) and http.server (which
brings http.client, ssl, email and mimetypes) cost more CPU at start-up than the rest of
the app, on every replica of a deploy, and the two commands and two pages need neither.

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

``python3 /app/web.py --check`` asks this machine's app for /health and exits 0 when it
answers 200 (the image's healthcheck).
"""

import os
import signal
import socket
import socketserver
import sys
import threading
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


class RedisError(Exception):
    """An error reply from Redis, or a reply that is not RESP."""


class Redis:
    """A Redis connection (made on first use, made again after a failure) that sends
    commands as RESP arrays of bulk strings and reads one reply per command."""

    def __init__(self, host, port, timeout=5):
        self.address = (host, port)
        self.timeout = timeout
        self.lock = threading.Lock()
        self.sock = None
        self.reader = None

    def command(self, *words):
        """Send one command; its reply (int, bytes, str for a status, None, or list)."""
        with self.lock:
            try:
                if self.sock is None:
                    self.sock = socket.create_connection(self.address, CONNECT_TIMEOUT)
                    self.sock.settimeout(self.timeout)
                    self.reader = self.sock.makefile("rb")
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
    """One RESP reply from a binary file object."""
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


class Backends:
    """One PostgreSQL connection (used under a lock) and one Redis connection."""

    def __init__(self, config):
        import psycopg2

        self.psycopg2 = psycopg2
        self.config = config
        self.lock = threading.Lock()
        self.conn = None
        self.redis = Redis(config["redis_host"], config["redis_port"])

    def _db(self):
        if self.conn is None or self.conn.closed:
            c = self.config
            conn = self.psycopg2.connect(host=c["db_host"], port=c["db_port"],
                                         dbname=c["db_name"], user=c["db_user"],
                                         password=c["db_password"],
                                         connect_timeout=CONNECT_TIMEOUT,
                                         application_name="fleet-demo-web")
            conn.autocommit = True
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
                with conn.cursor() as cur:
                    cur.execute(CREATE_TABLE)
                return
            except self.psycopg2.IntegrityError:
                # two apps creating it at once: one of them loses the race
                if attempt == 2:
                    raise
                time.sleep(0.2)

    def _with_db(self, work):
        with self.lock:
            reused = self.conn is not None and not self.conn.closed
            try:
                with self._db().cursor() as cur:
                    return work(cur)
            except (self.psycopg2.OperationalError, self.psycopg2.InterfaceError):
                self._drop()
                if not reused:
                    raise
            except self.psycopg2.Error:
                self._drop()
                raise
            # the server went away since the last request (a restart): once more, anew
            try:
                with self._db().cursor() as cur:
                    return work(cur)
            except self.psycopg2.Error:
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
        def insert(cur):
            cur.execute("INSERT INTO visits (host) VALUES (%s)", (hostname,))
            cur.execute("SELECT count(*) FROM visits")
            return cur.fetchone()[0]

        visits = self._with_db(insert)
        hits = self.redis.incr("hits")
        return visits, hits

    def problems(self):
        """Why the backends do not answer (empty when both do)."""
        found = []
        try:
            self._with_db(lambda cur: cur.execute("SELECT 1"))
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


class Handler(socketserver.StreamRequestHandler):
    """One connection: requests answered in turn while the client keeps it open."""

    backends = None
    hostname = ""
    timeout = 60  # seconds an idle kept-alive connection is held

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


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


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
        with socket.create_connection((host, config["port"]), timeout=5) as conn:
            conn.sendall(b"GET /health HTTP/1.0\r\nHost: localhost\r\n\r\n")
            status = conn.makefile("rb").readline(MAX_LINE).split()
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
    Handler.hostname = socket.gethostname()
    server = Server(("0.0.0.0", config["port"]), Handler)
    drop_privileges(config["user"])
    Handler.backends = backends = Backends(config)

    def stop(signum, frame):
        raise SystemExit(0)

    # PID 1 of a container gets no default action for these: exit on them ourselves
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log(f"listening on :{config['port']} as uid {os.getuid()}; postgres "
        f"{config['db_host']}:{config['db_port']} db {config['db_name']}, redis "
        f"{config['redis_host']}:{config['redis_port']}")
    threading.Thread(target=backends.wait, args=(config["wait"],), daemon=True).start()
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

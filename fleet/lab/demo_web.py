"""The demo's web tier: a small HTTP app that reads and writes PostgreSQL and Redis.

It is not imported by fleet: ``fleet.lab.demo_images`` copies this file into the
``demo/web`` image as ``/app/web.py``, where Debian's python3, python3-psycopg2 and
python3-redis run it (``python3 /app/web.py``).

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
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

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


class Backends:
    """One PostgreSQL connection (used under a lock) and a Redis client."""

    def __init__(self, config):
        import psycopg2
        import redis

        self.psycopg2 = psycopg2
        self.config = config
        self.lock = threading.Lock()
        self.conn = None
        self.redis = redis.Redis(host=config["redis_host"], port=config["redis_port"],
                                 socket_connect_timeout=CONNECT_TIMEOUT, socket_timeout=5)

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
            self.redis.ping()
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


def make_handler(backends, hostname):
    class Handler(BaseHTTPRequestHandler):
        server_version = "fleet-demo-web/1"
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            path = self.path.split("?", 1)[0]
            if path == "/":
                try:
                    visits, hits = backends.visit(hostname)
                except Exception as exc:
                    self._answer(503, f"unavailable: {_one_line(exc)}\n")
                    return
                self._answer(200, greeting(hostname, visits, hits))
            elif path == "/health":
                found = backends.problems()
                self._answer(503 if found else 200,
                             ("\n".join(found) if found else "ok") + "\n")
            else:
                self._answer(404, "not found\n")

        def _answer(self, code, text):
            body = text.encode("utf-8")
            self.send_response(code)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, fmt, *args):
            log(f"{self.address_string()} {fmt % args}")

    return Handler


def drop_privileges(user):
    """Run as ``user`` from now on (when root and a user is named)."""
    if os.getuid() != 0 or not user:
        return
    import pwd

    entry = pwd.getpwnam(user)
    os.setgroups([])
    os.setgid(entry.pw_gid)
    os.setuid(entry.pw_uid)


def check(config):
    """The healthcheck: 0 when this machine's app answers /health with 200."""
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{config['port']}/health",
                                    timeout=5) as reply:
            return 0 if reply.status == 200 else 1
    except Exception as exc:
        sys.stderr.write(_one_line(exc) + "\n")
        return 1


def main(argv):
    config = settings(os.environ)
    if "--check" in argv:
        return check(config)
    hostname = socket.gethostname()
    ThreadingHTTPServer.allow_reuse_address = True
    server = ThreadingHTTPServer(("0.0.0.0", config["port"]), None)
    drop_privileges(config["user"])
    backends = Backends(config)
    server.RequestHandlerClass = make_handler(backends, hostname)

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

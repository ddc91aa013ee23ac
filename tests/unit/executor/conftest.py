"""Run playbooks through the real executor and the real payload, without SSH: each
inventory host gets a local payload process (the real bootstrap) as its session."""

import os
import signal
import subprocess
import sys
import textwrap
import threading

import pytest

from fleet.executor import JsonCollector, RunOptions, exit_code, run_playbook
from fleet.inventory import load_inventory
from fleet.playbook import check_playbook, load_playbook
from fleet.transport import ssh
from fleet.transport.payload import BOOTSTRAP, current_payload
from fleet.transport.session import ChannelLink, Session, _handshake
from tests.unit.test_session_local import FakeTransport, PipeChannel


class LocalConnections:
    """Connections' interface over local payload processes; hosts in ``down`` are
    unreachable."""

    def __init__(self, root, down=()):
        self.root = root
        self.down = set(down)
        self.sessions = {}
        self.procs = []
        self.lock = threading.Lock()
        self.prefetched = []

    def prefetch(self, hosts, become=None, become_user=None, limit=32):
        self.prefetched.append(list(hosts))

    def get(self, host, become=None, become_user=None):
        if host in self.down:
            raise ssh.TransportError(f"unreachable: {host} is down in this test")
        with self.lock:
            if host in self.sessions:
                return self.sessions[host]
            home = self.root / f"home-{host}"
            home.mkdir(exist_ok=True)
            payload = current_payload()
            proc = subprocess.Popen(
                [sys.executable, "-I", "-S", "-c", BOOTSTRAP, payload.digest],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                env={"HOME": str(home), "PATH": os.environ.get("PATH", "/usr/bin")},
                cwd=home, start_new_session=True)
            self.procs.append(proc)
            channel = PipeChannel(proc)
            target = ssh.Target(name=host, host="127.0.0.1", connect_timeout=5)
            session = Session(target, ChannelLink(FakeTransport(), channel),
                              _handshake(channel, target, payload))
            self.sessions[host] = session
            return session

    def drop(self, host, reason):
        self.down.add(host)

    def close(self):
        for session in self.sessions.values():
            session.link.channel.shutdown_write()
        for proc in self.procs:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            for stream in (proc.stdout, proc.stderr):
                stream.close()


@pytest.fixture
def run(tmp_path):
    """run(playbook_text, inventory_text="h1\\nh2\\n", down=(), **options) -> (code, doc)."""

    def run(playbook, inventory="h1\nh2\n", down=(), files=None, **options):
        (tmp_path / "hosts.ini").write_text(textwrap.dedent(inventory))
        book_path = tmp_path / "site.yml"
        book_path.write_text(textwrap.dedent(playbook).replace("TMP", str(tmp_path)))
        for name, text in (files or {}).items():
            path = tmp_path / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        book = load_playbook(book_path)
        check_playbook(book)
        inventory_obj = load_inventory(tmp_path / "hosts.ini")
        collector = JsonCollector()
        connections = run.connections = LocalConnections(tmp_path, down)
        stats = run_playbook(book, inventory_obj, RunOptions(**options), collector,
                             connections=connections)
        return exit_code(stats), collector.document(stats)

    run.tmp = tmp_path
    return run


def results(document, task_name):
    """{host: result} of the task named ``task_name`` (first play that has it)."""
    for play in document["plays"]:
        for entry in play["tasks"]:
            if entry["task"]["name"] == task_name:
                return entry["hosts"]
    raise KeyError(task_name)

"""The payload sessions of a run: one per host (and per become user), opened on first
use (by the task threads, so in parallel) or ahead of it (``prefetch``, at the start of
a play), and kept for every later task and play."""

import queue
import threading
from dataclasses import replace

from fleet.transport.session import Session
from fleet.transport.ssh import TransportError
from fleet.transport.targets import target_for


class Connections:
    """Sessions keyed by (host, become user); failures remembered as unreachable reasons."""

    def __init__(self, inventory, connect_timeout=10.0):
        self.inventory = inventory
        self.connect_timeout = connect_timeout
        self._sessions = {}
        self._errors = {}
        self._targets = {}
        self._opening = {}  # key -> Event set when the thread opening it is done
        self._lock = threading.Lock()
        self._closed = False

    def _key(self, host, become, become_user):
        target = self._targets.get(host)
        if target is None:
            try:
                target = target_for(self.inventory, host, self.connect_timeout)
            except Exception as exc:  # a bad connection variable: this host cannot be used
                raise TransportError(str(exc)) from None
            self._targets[host] = target
        if become is not None:
            target = replace(target, become=bool(become))
        if become_user:
            target = replace(target, become_user=become_user)
        return (host, target.become and target.become_user), target

    def address(self, host):
        """The address fleet reaches ``host`` at (ansible_host, else its name)."""
        return self._key(host, None, None)[1].host

    def get(self, host, become=None, become_user=None):
        """The open session for ``host``, opening it now if needed; raises TransportError.
        Threads asking for the same session at once share one connection: the first
        opens it, the others wait for it (a service task's listing asks every host while
        their own task threads do)."""
        key, target = self._key(host, become, become_user)
        while True:
            with self._lock:
                session = self._sessions.get(key)
                error = self._errors.get(key)
                opening = self._opening.get(key)
                if session is None and error is None and opening is None:
                    self._opening[key] = threading.Event()
            if session is not None:
                return session
            if error is not None:
                raise TransportError(error)
            if opening is None:
                break
            opening.wait()
        try:
            session = Session.open(target)
        except BaseException as exc:
            with self._lock:
                if isinstance(exc, TransportError):
                    self._errors[key] = str(exc)
                self._opening.pop(key).set()  # waiters see the error, or try themselves
            raise
        with self._lock:
            closed = self._closed
            if not closed:
                self._sessions[key] = session
            else:
                self._errors[key] = "the run is over"
            self._opening.pop(key).set()
        if closed:  # a prefetch that finished after close(): nobody will use it
            session.close()
            raise TransportError(f"{target.host}: the run is over")
        return session

    def prefetch(self, hosts, become=None, become_user=None, limit=32):
        """Start opening the sessions of ``hosts`` in the background, ``limit`` at a time,
        and return at once. A play's first task may run on one host only (a database
        before the web tier): the other hosts' connections and payload start-ups then
        overlap it instead of following it. A failure is remembered and reported by the
        ``get`` of the first task that needs the host, as without prefetch; a host no task
        needs is never reported."""
        waiting = queue.SimpleQueue()
        for host in hosts:
            waiting.put(host)
        for _ in range(max(1, min(limit, len(hosts)))):
            threading.Thread(target=self._prefetch, args=(waiting, become, become_user),
                             daemon=True, name="fleet-prefetch").start()

    def _prefetch(self, waiting, become, become_user):
        while not self._closed:
            try:
                host = waiting.get_nowait()
            except queue.Empty:
                return
            try:
                self.get(host, become, become_user)
            except Exception:  # remembered (TransportError), or raised again by get()
                pass

    def drop(self, host, reason):
        """Forget every session of ``host`` (it became unreachable)."""
        with self._lock:
            for key in [k for k in self._sessions if k[0] == host]:
                self._sessions.pop(key).close()
                self._errors[key] = reason

    def close(self):
        """Close every session (each payload exits when its channel closes); a session a
        prefetch opens later is closed as soon as it is open."""
        with self._lock:
            self._closed = True
            sessions = list(self._sessions.values())
            self._sessions.clear()
        for session in sessions:
            session.close()

"""The payload sessions of a run: one per host (and per become user), opened on first
use (by the task threads, so in parallel) and kept for every later task and play."""

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
            self._sessions[key] = session
            self._opening.pop(key).set()
        return session

    def drop(self, host, reason):
        """Forget every session of ``host`` (it became unreachable)."""
        with self._lock:
            for key in [k for k in self._sessions if k[0] == host]:
                self._sessions.pop(key).close()
                self._errors[key] = reason

    def close(self):
        """Close every session (each payload exits when its channel closes)."""
        with self._lock:
            sessions = list(self._sessions.values())
            self._sessions.clear()
        for session in sessions:
            session.close()

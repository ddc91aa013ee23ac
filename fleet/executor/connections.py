"""The payload sessions of a run: one per host (and per become user), opened on first
use, in parallel, and kept for every later task and play."""

import threading
from dataclasses import replace

from fleet.transport.pool import run_parallel
from fleet.transport.session import Session
from fleet.transport.targets import target_for


class Connections:
    """Sessions keyed by (host, become user); failures remembered as unreachable reasons."""

    def __init__(self, inventory, connect_timeout=10.0, forks=32):
        self.inventory = inventory
        self.connect_timeout = connect_timeout
        self.forks = forks
        self._sessions = {}
        self._errors = {}
        self._targets = {}
        self._lock = threading.Lock()

    def _key(self, host, become, become_user):
        target = self._targets.get(host)
        if target is None:
            target = self._targets[host] = target_for(self.inventory, host, self.connect_timeout)
        if become is not None:
            target = replace(target, become=bool(become))
        if become_user:
            target = replace(target, become_user=become_user)
        return (host, target.become and target.become_user), target

    def open_many(self, hosts, become=None, become_user=None):
        """Open the sessions of ``hosts`` in parallel; return {host: error text} of failures."""
        wanted = []
        for host in hosts:
            key, target = self._key(host, become, become_user)
            with self._lock:
                if key not in self._sessions and key not in self._errors:
                    wanted.append((key, target))
        outcomes = run_parallel(wanted, lambda kt: Session.open(kt[1]), self.forks)
        with self._lock:
            for (key, _), (session, error) in outcomes.items():
                if error is None:
                    self._sessions[key] = session
                else:
                    self._errors[key] = str(error)
        return {host: self.error(host, become, become_user) for host in hosts
                if self.error(host, become, become_user)}

    def get(self, host, become=None, become_user=None):
        """The open session for ``host``, opening it now if needed; raises TransportError."""
        key, target = self._key(host, become, become_user)
        with self._lock:
            session = self._sessions.get(key)
            error = self._errors.get(key)
        if session is not None:
            return session
        if error is not None:
            from fleet.transport.ssh import TransportError
            raise TransportError(error)
        session = Session.open(target)
        with self._lock:
            self._sessions[key] = session
        return session

    def error(self, host, become=None, become_user=None):
        key, _ = self._key(host, become, become_user)
        with self._lock:
            return self._errors.get(key)

    def drop(self, host, reason):
        """Forget every session of ``host`` (it became unreachable)."""
        with self._lock:
            for key in [k for k in self._sessions if k[0] == host]:
                self._sessions.pop(key).close()
                self._errors[key] = reason

    def close(self):
        with self._lock:
            sessions = list(self._sessions.values())
            self._sessions.clear()
        for session in sessions:
            session.close()

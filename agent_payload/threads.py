"""The few thread primitives serve mode needs, on the C _thread module alone.

The threading module costs a host several milliseconds of imports per connection
(functools, collections, weakrefs); serve mode only needs to start threads, lock,
signal an event and hand chunks from one thread to another.
"""

import _thread

allocate_lock = _thread.allocate_lock


def start(function, *args):
    """Run ``function(*args)`` in a new thread (it does not hold the process open)."""
    _thread.start_new_thread(function, args)


class InputTimeout(Exception):
    """No input arrived within the timeout."""


class Event:
    """threading.Event's set / is_set / wait."""

    def __init__(self):
        self._mutex = _thread.allocate_lock()
        self._gate = _thread.allocate_lock()
        self._gate.acquire()  # held until set
        self._set = False

    def set(self):
        with self._mutex:
            if not self._set:
                self._set = True
                self._gate.release()

    def is_set(self):
        return self._set

    def wait(self, timeout=None):
        """Block until set (or ``timeout`` seconds); return whether it is set."""
        if self._set:
            return True
        if self._gate.acquire(True, -1 if timeout is None else max(0.0, timeout)):
            self._gate.release()  # let the next waiter through too
        return self._set


class Inbox:
    """A first-in, first-out hand-over from one producer to one consumer thread."""

    def __init__(self):
        self._mutex = _thread.allocate_lock()
        self._ready = _thread.allocate_lock()
        self._ready.acquire()  # held while empty
        self._items = []

    def put(self, item):
        with self._mutex:
            self._items.append(item)
            if self._ready.locked():
                self._ready.release()

    def get(self, timeout=None):
        """The oldest item; InputTimeout when none comes within ``timeout`` seconds."""
        if not self._ready.acquire(True, -1 if timeout is None else max(0.0, timeout)):
            raise InputTimeout()
        with self._mutex:
            item = self._items.pop(0)
            if self._items and self._ready.locked():
                self._ready.release()
        return item

"""The keeper process's first steps, before it imports paramiko: leave the spawner,
bind the socket, say "ready", then serve (keeper.py).

A command that finds no keeper starts one and waits for its "ready" line; the socket is
bound first, so the command can connect at once and wait there while the keeper imports
what it serves with, rather than wait for the whole start-up before it can connect.
Standard library only, up to ``serve``.
"""

import fcntl
import os
import socket


def listen(path):
    """Bind ``path`` unless a live keeper already listens there; the socket or None.

    Under a lock, so that two commands starting keepers at once end with one."""
    lock = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(path)
            return None  # another keeper answers
        except OSError:
            pass
        finally:
            probe.close()
        try:
            os.unlink(path)  # a keeper that died without cleaning up
        except FileNotFoundError:
            pass
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_mask = os.umask(0o177)
        try:
            listener.bind(path)
        finally:
            os.umask(old_mask)
        listener.listen(128)
        return listener
    finally:
        os.close(lock)


def stop_listening(path, listener):
    """Close the listener and remove its socket file. Under the lock, as no other keeper
    can have bound ``path`` while this one answered there."""
    lock = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        listener.close()
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
    finally:
        os.close(lock)


def main(path, digest):
    """Entry point of the keeper process (see persist.spawn)."""
    # Out of the spawner's way: it reaps this process now, and the keeper, an orphan,
    # is nobody's zombie when it leaves (a test run, a long-lived program using fleet).
    if os.fork():
        os._exit(0)
    listener = listen(path)
    try:
        os.write(1, b"ready\n")
    except OSError:
        pass  # the command that started it is gone; the next one will use it
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 1)
    os.close(devnull)
    if listener is None:
        return
    try:
        from fleet.transport.keeper import serve

        serve(listener, path, digest)
    finally:  # whatever happened, no socket is left for commands to find dead
        stop_listening(path, listener)
        os._exit(0)

"""A process on a terminal for the controller: a pty on the host whose output streams to
the controller as the request's data, whose input is the request's input stream, and
whose size follows the controller's resize messages (fleet exec -t, fleet run -t)."""

import os
import select
import struct

from agent_payload import jsonwire, threads
from agent_payload.runtime.run import RunError


def _set_size(fd, rows, cols):
    import fcntl
    import termios

    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def _feed_terminal(ctx, master):
    """The request's input stream to the terminal, until it ends or the command does."""
    while True:
        try:
            data = ctx.read_data()
        except threads.InputTimeout:
            continue
        if not data:
            try:
                os.write(master, b"\x04")  # end of input, as a terminal says it: ^D
            except OSError:
                pass
            return
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(master, view):]
        except OSError:
            return


def run_on_terminal(ctx, params, start):
    """Start a process on a new pty with ``start(slave_fd)`` (which returns the launcher's
    pid and its events fd) and pump it: the request's input to the terminal, the
    terminal's output back, resize messages to its size; return {"rc": exit code}."""
    master, slave = os.openpty()
    try:
        _set_size(master, params["rows"], params["cols"])
        launcher, events_r = start(slave)
    except BaseException:
        os.close(master)
        raise
    finally:
        os.close(slave)
    threads.start(_feed_terminal, ctx, master)
    poller = select.poll()
    poller.register(master, select.POLLIN)
    poller.register(events_r, select.POLLIN)
    ended, reported = False, b""
    while not ended:
        for fd, _ in poller.poll(50):
            if fd == events_r:
                chunk = os.read(events_r, 65536)
                reported += chunk
                ended = not chunk  # the launcher is done when it closes its events
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: no process holds the terminal any more
                chunk = b""
            if chunk:
                ctx.send_data(chunk)
            else:
                poller.unregister(master)
        size = ctx.extra.pop("resize", None)
        if size and all(size):
            _set_size(master, *size)
        if ctx.cancelled():
            break
    while True:  # what the command wrote last
        try:
            chunk = os.read(master, 65536) if select.select([master], [], [], 0)[0] else b""
        except OSError:
            chunk = b""
        if not chunk:
            break
        ctx.send_data(chunk)
    ctx.send_eof()
    os.close(events_r)
    events = [jsonwire.loads(line) for line in reported.decode().splitlines() if line]
    os.waitpid(launcher, 0)
    os.close(master)
    errors = [e["error"] for e in events if "error" in e]
    if errors:
        raise RunError(errors[0])
    exited = [e["exited"] for e in events if "exited" in e]
    return {"rc": exited[0] if exited else -1}

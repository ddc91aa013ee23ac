"""An interactive terminal on a host's payload request (fleet exec -t): the local terminal
in raw mode, keystrokes up as the request's input, the remote terminal's output down,
window size changes passed on."""

import os
import shutil
import signal
import sys
import threading

from fleet.transport.session import Session
from fleet.transport.targets import target_for


def _size():
    size = shutil.get_terminal_size((80, 24))
    return size.lines, size.columns


def _pump_keys(request, fd):
    while True:
        try:
            data = os.read(fd, 4096)
        except OSError:
            data = b""
        try:
            if not data:
                request.send_eof()
                return
            request.send_data(data)
        except Exception:  # the session is gone: nothing more to send
            return


def interactive(inventory, host, module, params):
    """Run ``module`` with tty on ``host`` interactively; return its exit code. Raises
    RuntimeError with the module's message when it failed to run."""
    stdin = sys.stdin.fileno()
    rows, cols = _size()
    session = Session.open(target_for(inventory, host, 10.0))
    saved = None
    try:
        request = session.start(module, dict(params, tty=True, rows=rows, cols=cols))
        if os.isatty(stdin):
            import termios
            import tty
            saved = termios.tcgetattr(stdin)
            tty.setraw(stdin)
            signal.signal(signal.SIGWINCH, lambda *_: request.resize(*_size()))
        threading.Thread(target=_pump_keys, args=(request, stdin), daemon=True).start()
        out = sys.stdout.buffer
        result = {}
        for kind, value in request.events():
            if kind == "data":
                out.write(value)
                out.flush()
            elif kind == "result":
                result = value
    finally:
        if saved is not None:
            import termios
            termios.tcsetattr(stdin, termios.TCSADRAIN, saved)
        session.close()
    if "rc" not in result:
        raise RuntimeError(result.get("msg", "the command did not run"))
    return result["rc"]

"""Waiting in tests for something another process or thread does."""

import time


def wait_until(check, timeout=10.0, interval=0.02):
    """Return once ``check()`` is true; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out after {timeout:g}s"
        time.sleep(interval)

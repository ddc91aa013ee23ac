"""Healthchecks as Docker runs them: a command in the container every ``interval``,
failing after ``timeout``; ``retries`` failures in a row make it unhealthy; failures
during ``start_period`` do not count. Reported as docker inspect's State.Health
(Status starting | healthy | unhealthy, FailingStreak, the last 5 results in Log).

The supervisor owns a ``Checker``. Each check runs in a short-lived child of the
supervisor, which joins the container (launch.start_exec changes the PID namespace of
the children of the process that calls it, so the supervisor must not call it itself)
and reports {code, output, start, end} on a pipe the supervisor polls.
"""

import _signal as signal  # the signal module imports enum: milliseconds per payload
import os
import select
import time

from agent_payload import jsonwire, tools

DEFAULTS = {"interval": 30.0, "timeout": 30.0, "retries": 3, "start_period": 0.0}
OUTPUT_LIMIT = 4096  # bytes of a check's output Docker keeps
LOG_LENGTH = 5
_UNITS = (("ms", 0.001), ("us", 1e-6), ("ns", 1e-9), ("h", 3600.0), ("m", 60.0),
          ("s", 1.0))


class HealthError(Exception):
    """A healthcheck option that cannot be honoured."""


def parse_duration(value, option):
    """Seconds from a number (seconds) or Go's notation ("1m30s", "500ms", "2h")."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    text = str(value).strip()
    total, rest = 0.0, text
    while rest:
        digits = ""
        while rest and (rest[0].isdigit() or rest[0] == "."):
            digits, rest = digits + rest[0], rest[1:]
        unit = next((u for u, _ in _UNITS if rest.startswith(u)), None)
        if not digits or unit is None:
            raise HealthError(f"healthcheck {option}: {value!r} is not a duration "
                              "(e.g. 30s, 1m30s, 500ms)")
        total += float(digits) * dict(_UNITS)[unit]
        rest = rest[len(unit):]
    if not text:
        raise HealthError(f"healthcheck {option}: empty duration")
    return total


def _argv(test):
    if isinstance(test, str):
        return ["/bin/sh", "-c", test]
    test = list(test or [])
    if not test or test[0] == "NONE":
        return None
    if test[0] == "CMD":
        return test[1:] or None
    if test[0] == "CMD-SHELL":
        return ["/bin/sh", "-c", " ".join(test[1:])]
    return test  # a plain list: the command itself


def config_of(option, image_healthcheck):
    """The healthcheck to run (argv, interval, timeout, retries, start_period), from the
    option (test, interval, timeout, retries, start_period, disable) or else the image's
    Healthcheck; None when there is none."""
    if option and option.get("disable"):
        return None
    image = image_healthcheck or {}
    config = dict(DEFAULTS)
    for key, image_key in (("interval", "Interval"), ("timeout", "Timeout"),
                           ("start_period", "StartPeriod")):
        if image.get(image_key):
            config[key] = image[image_key] / 1e9  # the image says nanoseconds
    if image.get("Retries"):
        config["retries"] = int(image["Retries"])
    test = image.get("Test")
    if option:
        for key in ("interval", "timeout", "start_period"):
            if option.get(key) is not None:
                config[key] = parse_duration(option[key], key)
        if option.get("retries") is not None:
            config["retries"] = int(option["retries"])
        if option.get("test") is not None:
            test = option["test"]
    argv = _argv(test)
    if argv is None:
        return None
    if config["interval"] <= 0 or config["timeout"] <= 0 or config["retries"] < 1:
        raise HealthError("healthcheck: interval and timeout must be positive, retries >= 1")
    config["argv"] = argv
    return config


def _check(plan, timeout, result_w):
    """The child that runs one check and reports it (never returns)."""
    # Here, not at the top: the payload reads healthcheck options (config_of) on every
    # create and needs none of the launcher's imports; the monitor has them loaded.
    from agent_payload.runtime import launch

    started = time.time()
    code, output = -1, b""
    devnull = os.open(os.devnull, os.O_RDONLY)
    out_r, out_w = os.pipe2(os.O_CLOEXEC)
    try:
        pid = launch.start_exec(plan, stdio=(devnull, out_w, out_w))
    except launch.LaunchError as exc:
        output = str(exc).encode()
        pid = None
    os.close(out_w)
    deadline = time.monotonic() + timeout
    poller = select.poll()
    poller.register(out_r, select.POLLIN)
    open_pipe = True
    while pid is not None:
        left = deadline - time.monotonic()
        if left <= 0:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            code, output = -1, f"Health check exceeded timeout ({timeout:g}s)".encode()
            break
        if open_pipe and poller.poll(int(min(left, 0.05) * 1000)):
            chunk = os.read(out_r, 65536)
            if chunk:
                output = (output + chunk)[:OUTPUT_LIMIT]
            else:
                poller.unregister(out_r)
                open_pipe = False
        elif not open_pipe:
            time.sleep(min(left, 0.01))
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            code = tools.exit_code(status)
            break
    os.write(result_w, jsonwire.dumps({"code": code, "output": output.decode(
        "utf-8", "replace"), "start": started, "end": time.time()}).encode())
    os._exit(0)


class Checker:
    """When to check, the running check, and the health it adds up to."""

    def __init__(self, config, exec_plan):
        self.config = config
        self.plan = exec_plan
        self.reset()

    def reset(self):
        """A (re)started container: starting, first check after one interval."""
        self.started = time.monotonic()
        self.next_due = self.started + self.config["interval"]
        self.running = None  # (pid, result fd) of the check in flight
        self.health = {"Status": "starting", "FailingStreak": 0, "Log": []}

    def wait_ms(self):
        """Milliseconds until the next check is due (for the supervisor's poll)."""
        if self.running is not None:
            return 1000
        return max(0, int((self.next_due - time.monotonic()) * 1000))

    def maybe_start(self, container_pid):
        """Start a check when one is due; return its result fd (or None)."""
        if self.running is not None or time.monotonic() < self.next_due:
            return None
        result_r, result_w = os.pipe2(os.O_CLOEXEC)
        pid = os.fork()
        if pid == 0:
            try:
                os.close(result_r)
                _check(dict(self.plan, pid=container_pid), self.config["timeout"], result_w)
            finally:
                # Never back into the supervisor's loop, whatever failed (say, the result
                # pipe broken by a container removed mid-check): a copy of it would run on.
                os._exit(1)
        os.close(result_w)
        self.running = (pid, result_r)
        return result_r

    def finish(self):
        """Read the check's result (its fd is readable); return the new health."""
        pid, result_r = self.running
        data = b""
        while True:
            chunk = os.read(result_r, 65536)
            if not chunk:
                break
            data += chunk
        os.close(result_r)
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass  # reaped by the supervisor's own loop
        self.running = None
        self.next_due = time.monotonic() + self.config["interval"]
        try:
            result = jsonwire.loads(data.decode())
        except ValueError:
            result = {"code": -1, "output": "the check did not report", "start": time.time(),
                      "end": time.time()}
        in_start_period = time.monotonic() - self.started < self.config["start_period"]
        log = self.health["Log"] + [{"Start": stamp(result["start"]),
                                     "End": stamp(result["end"]),
                                     "ExitCode": result["code"], "Output": result["output"]}]
        self.health["Log"] = log[-LOG_LENGTH:]
        if result["code"] == 0:
            self.health.update(Status="healthy", FailingStreak=0)
        elif not in_start_period:
            self.health["FailingStreak"] += 1
            if self.health["FailingStreak"] >= self.config["retries"]:
                self.health["Status"] = "unhealthy"
        return dict(self.health)


def stamp(seconds):
    """RFC 3339 UTC time with nanoseconds, as Docker writes it."""
    whole = int(seconds)
    return (time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
            + f".{int((seconds - whole) * 1e9):09d}Z")

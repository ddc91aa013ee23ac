"""Payload calls outside a playbook, on one host or many: what the image, container,
volume and network commands build on."""

from fleet.transport.pool import run_parallel
from fleet.transport.session import Session
from fleet.transport.targets import target_for


def call_module(inventory, host, module, params, timeout=10.0, on_event=None, check=False):
    """Open a session to ``host``, call ``module`` with ``params`` (``check``: in check
    mode) and return its result.

    ``on_event(event)`` receives the module's progress events. Raises TransportError when
    the host cannot be reached, RequestError when the payload answers with an error.
    """
    session = Session.open(target_for(inventory, host, timeout))
    try:
        request = session.start(module, params, check=check)
        return request.wait(on_progress=on_event)
    finally:
        session.close()


def call_on_hosts(inventory, hosts, module, params_for, forks=32, timeout=10.0,
                  on_event=None, check=False, on_host_done=None):
    """``module`` with ``params_for(host)`` on every host, ``forks`` at a time; return
    {host: (result, error)} in host order. ``on_event(host, event)`` gets progress,
    ``on_host_done(host)`` each host's end."""

    def one(host):
        return call_module(inventory, host, module, params_for(host), timeout,
                           (lambda e: on_event(host, e)) if on_event else None, check)

    done = (lambda host, _value, _error: on_host_done(host)) if on_host_done else None
    return run_parallel(hosts, one, forks, done)

"""One payload call on one host, outside a playbook: what the image and container
commands build on."""

from fleet.transport.session import Session
from fleet.transport.targets import target_for


def call_module(inventory, host, module, params, timeout=10.0, on_event=None):
    """Open a session to ``host``, call ``module`` with ``params`` and return its result.

    ``on_event(event)`` receives the module's progress events. Raises TransportError when
    the host cannot be reached, RequestError when the payload answers with an error.
    """
    session = Session.open(target_for(inventory, host, timeout))
    try:
        request = session.start(module, params)
        return request.wait(on_progress=on_event)
    finally:
        session.close()

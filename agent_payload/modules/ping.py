"""ping: answer ``pong`` (or ``data``), as Ansible's ping module does.

Options:
  data: the value to echo back; the string ``crash`` makes the module fail.
"""

ARGUMENT_SPEC = {"data": {"type": "str", "default": "pong"}}


def run(params, ctx):
    """Echo ``data``; fail on purpose for ``crash`` (tests error paths)."""
    if params["data"] == "crash":
        raise RuntimeError("boom")
    return {"changed": False, "ping": params["data"]}

"""assert: fail the host unless every condition in ``that`` holds.

Options:
  that: a condition or list of conditions (Jinja expressions without braces).
  fail_msg (alias msg): the message when a condition fails.
  success_msg: the message when all hold.
  quiet: say less on success.
"""

ARGUMENT_SPEC = {
    "that": {"type": "list", "required": True},
    "fail_msg": {"type": "raw", "aliases": ["msg"]},
    "success_msg": {"type": "raw"},
    "quiet": {"type": "bool", "default": False},
}


def run(args, actx):
    """Evaluate every condition; fail on the first false one."""
    from fleet import templating
    for condition in args["that"]:
        if not templating.evaluate_condition(condition, actx.variables):
            return {"failed": True, "changed": False, "assertion": condition,
                    "evaluated_to": False,
                    "msg": args.get("fail_msg") or "Assertion failed"}
    return {"changed": False, "msg": args.get("success_msg") or "All assertions passed"}

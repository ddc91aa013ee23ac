"""debug: print a message or a variable's value, as Ansible's debug does.

Options:
  msg: the message (any value; templated). Default "Hello world!".
  var: a variable name or expression whose value is shown instead.
  verbosity: show only at this -v level or above.
"""

ARGUMENT_SPEC = {
    "msg": {"type": "raw"},
    "var": {"type": "str"},
    "verbosity": {"type": "int", "default": 0},
}


def run(args, actx):
    """Show ``msg`` or ``var``; skipped below its verbosity."""
    from fleet import templating
    if args.get("verbosity", 0) > actx.run.options.verbosity:
        return {"skipped": True, "skipped_reason": "verbosity threshold not met"}
    if args.get("var"):
        name = args["var"]
        try:
            value = templating.render("{{ " + name + " }}", actx.variables)
        except templating.TemplateError:
            value = "VARIABLE IS NOT DEFINED!"
        return {"changed": False, name: value}
    msg = args.get("msg")
    return {"changed": False, "msg": "Hello world!" if msg is None else msg}

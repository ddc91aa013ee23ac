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

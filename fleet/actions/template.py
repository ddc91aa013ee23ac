"""template: render a Jinja2 template on the controller and ship it like copy.

Options:
  src: the template file on the controller (relative to the playbook's templates/ or
       its directory).
  dest: where it goes on the host.
  mode, owner, group: as for copy and file.
  force: replace a different existing file (default yes).
"""

ARGUMENT_SPEC = {
    "src": {"type": "path", "required": True},
    "dest": {"type": "path", "required": True},
    "mode": {"type": "raw"},
    "owner": {"type": "str"},
    "group": {"type": "str"},
    "force": {"type": "bool", "default": True},
}

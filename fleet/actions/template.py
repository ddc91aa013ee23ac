"""template: render a Jinja2 template on the controller and ship it like copy.

Options:
  src: the template file on the controller (relative to the playbook's templates/ or
       its directory).
  dest: where it goes on the host.
  mode, owner, group: as for copy and file.
  force: replace a different existing file (default yes).
"""

import os

ARGUMENT_SPEC = {
    "src": {"type": "path", "required": True},
    "dest": {"type": "path", "required": True},
    "mode": {"type": "raw"},
    "owner": {"type": "str"},
    "group": {"type": "str"},
    "force": {"type": "bool", "default": True},
}


def run(args, actx):
    """Render ``src`` with the host's variables, then ship it with the copy module."""
    from fleet import templating
    from fleet.executor.content import Content
    from fleet.executor.taskrun import find_file
    path = find_file(actx.run, args["src"], "templates")
    with open(path, encoding="utf-8") as handle:
        text = templating.render_text(handle.read(), actx.variables)
    content = Content(data=text.encode())
    params = {k: v for k, v in args.items() if k != "src" and v is not None}
    params.update(content.copy_params(basename=os.path.basename(path)))
    return actx.remote("copy", params, content)

"""Playbooks: load the YAML, check it, and hand the executor plain dataclasses.

::

    from fleet.playbook import load_playbook, check_playbook, PlaybookError

    try:
        book = load_playbook("site.yml")
        check_playbook(book)
    except PlaybookError as exc:
        print(exc)            # site.yml:12: copy: unsupported parameter 'dset' (...)

``load_playbook`` checks the structure (keywords, types, one known action per task);
``check_playbook`` checks arguments against the actions' specs, template syntax,
notify targets and vars files. Every error is one line ``FILE:LINE: message``.
Not supported (a clear error each): roles, include_*/import_*, import_playbook,
``with_<lookup>`` other than with_items/with_list, and the Ansible keywords fleet does
not implement (delegate_to, until, async, ...).
"""

from .check import check_args, check_playbook, walk_tasks
from .errors import PlaybookError
from .model import Block, Origin, Play, Playbook, Task
from .parser import load_playbook
from .vars_files import load_vars_file, load_vars_files

__all__ = [
    "Block",
    "Origin",
    "Play",
    "Playbook",
    "PlaybookError",
    "Task",
    "check_args",
    "check_playbook",
    "load_playbook",
    "load_vars_file",
    "load_vars_files",
    "walk_tasks",
]

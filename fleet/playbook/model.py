"""The parsed playbook: plays, blocks and tasks as plain dataclasses.

Values in ``args``, ``vars``, ``when``, ``loop`` ... are the raw values from the YAML
(plain dicts, lists, strings, numbers), templates included; templating happens per
host when the play runs. ``origin`` says where each object starts in its file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Origin", "Task", "Block", "Play", "Playbook"]


@dataclass(frozen=True)
class Origin:
    """A place in a file; ``str()`` is ``file:line`` (the file as the user gave it)."""

    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


UNKNOWN = Origin("<unknown>", 0)


@dataclass
class Task:
    """One task (or handler).

    ``when`` holds this task's own conditions (all must hold); the conditions of the
    enclosing blocks are on the blocks. ``tags`` already include the play's and the
    enclosing blocks' tags. ``loop`` is the raw ``loop`` value; ``with_items`` maps
    to a :class:`fleet.templating.WithItems` (rendering it flattens one level) and
    ``with_list`` to ``loop``. ``key_origins`` and ``arg_origins`` give the line of
    each keyword and argument (the action's own line is ``key_origins["action"]``).
    """

    name: str | None
    action: str
    args: dict
    origin: Origin
    when: list = field(default_factory=list)
    loop: object | None = None
    loop_var: str = "item"
    register: str | None = None
    notify: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    ignore_errors: object = False
    changed_when: list | None = None
    failed_when: list | None = None
    vars: dict = field(default_factory=dict)
    become: bool | None = None
    become_user: str | None = None
    listen: list[str] = field(default_factory=list)
    check_mode: bool | None = None
    no_log: bool = False
    key_origins: dict = field(default_factory=dict, repr=False, compare=False)
    arg_origins: dict = field(default_factory=dict, repr=False, compare=False)


@dataclass
class Block:
    """A block: ``block`` runs, ``rescue`` if it failed, ``always`` in any case.

    Items are Task or Block. ``when``/``vars``/``become``/``ignore_errors`` apply to
    everything inside (the executor combines them); ``tags`` include inherited tags.
    """

    name: str | None = None
    block: list = field(default_factory=list)
    rescue: list = field(default_factory=list)
    always: list = field(default_factory=list)
    when: list = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    vars: dict = field(default_factory=dict)
    become: bool | None = None
    become_user: str | None = None
    ignore_errors: object = False
    origin: Origin = UNKNOWN
    key_origins: dict = field(default_factory=dict, repr=False, compare=False)


@dataclass
class Play:
    """A play. ``hosts`` is one pattern string (a YAML list is joined with ":");
    ``serial`` is None or a list of batch sizes (ints or "N%" strings)."""

    name: str
    hosts: str
    origin: Origin
    gather_facts: bool = True
    vars: dict = field(default_factory=dict)
    vars_files: list[str] = field(default_factory=list)
    become: bool = False
    become_user: str | None = None
    serial: list | None = None
    strategy: str = "linear"
    pre_tasks: list = field(default_factory=list)
    tasks: list = field(default_factory=list)
    post_tasks: list = field(default_factory=list)
    handlers: list[Task] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    ignore_errors: bool = False
    project: str | None = None  # the label of what its tasks create (default: the file's)
    key_origins: dict = field(default_factory=dict, repr=False, compare=False)


@dataclass
class Playbook:
    """A playbook file: its path (as given) and its plays in order."""

    path: Path
    plays: list[Play]

    def project_of(self, play: Play) -> str:
        """The project a play's objects are labelled with: its ``project``, else the
        first play's that names one, else the playbook's file name without .yml."""
        named = [p.project for p in self.plays if p.project]
        return play.project or (named[0] if named else default_project(self.path))

    @property
    def projects(self) -> list[str]:
        """Every project the playbook's plays label their objects with."""
        return sorted({self.project_of(play) for play in self.plays})


def default_project(path) -> str:
    """A playbook's default project name: its file name without the extension."""
    stem = Path(path).name
    for suffix in (".yml", ".yaml"):
        if stem.endswith(suffix):
            return stem[: -len(suffix)]
    return stem

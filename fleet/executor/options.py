"""What a run of a playbook is asked to do (the CLI's flags, as data)."""

from dataclasses import dataclass, field


@dataclass(frozen=True)
class RunOptions:
    """Options of one ``fleet apply``."""

    check: bool = False
    diff: bool = False
    limit: str | None = None
    tags: tuple = ()
    skip_tags: tuple = ()
    extra_vars: dict = field(default_factory=dict)
    forks: int = 32
    verbosity: int = 0
    connect_timeout: float = 10.0
    # fleet scale: {service: replicas}; only those services' tasks run, with that count
    scale: dict | None = None

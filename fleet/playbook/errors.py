"""PlaybookError: every problem in a playbook, as one line ``FILE:LINE: message``."""

from __future__ import annotations

from .model import Origin


class PlaybookError(Exception):
    """A playbook (or vars file) that cannot be used.

    ``str()`` is one line: ``FILE:LINE: reason`` when the place is known, ``FILE:
    reason`` when only the file is. ``.origin``, ``.file`` and ``.reason`` keep the
    parts; ``.errors`` lists every problem found (check_playbook collects them all,
    this one is the first).
    """

    def __init__(
        self,
        reason: str,
        origin: Origin | None = None,
        file: str | None = None,
        errors: list[PlaybookError] | None = None,
    ) -> None:
        self.reason = " ".join(str(reason).split())
        self.origin = origin
        self.file = origin.file if origin is not None else file
        self.errors = errors if errors else [self]
        super().__init__(self.__str__())

    def __str__(self) -> str:
        if self.origin is not None:
            return f"{self.origin}: {self.reason}"
        if self.file is not None:
            return f"{self.file}: {self.reason}"
        return self.reason

"""The one exception type of fleet.inventory."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Union


class InventoryError(Exception):
    """A malformed inventory or an invalid request against one.

    ``str()`` is always a single line: ``FILE:LINE: reason`` when the file and line
    are known, ``FILE: reason`` when only the file is, else just ``reason``.
    The parts stay available as ``.path``, ``.line`` and ``.reason``.
    """

    def __init__(
        self,
        reason: str,
        path: Optional[Union[str, Path]] = None,
        line: Optional[int] = None,
    ) -> None:
        # Collapse newlines: callers print this as one line next to other output.
        self.reason = " ".join(str(reason).split("\n")).strip()
        self.path = str(path) if path is not None else None
        self.line = line
        super().__init__(self.__str__())

    def __str__(self) -> str:
        if self.path is None:
            return self.reason
        if self.line is None:
            return f"{self.path}: {self.reason}"
        return f"{self.path}:{self.line}: {self.reason}"

    def located(self, path: Union[str, Path], line: Optional[int]) -> InventoryError:
        """Return this error with a file (and line) attached, unless it already has one."""
        if self.path is not None:
            return self
        return InventoryError(self.reason, path, line)

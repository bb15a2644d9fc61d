"""User-facing errors: one line that names the file and the problem."""

from __future__ import annotations

from os import PathLike


class AtstSedError(Exception):
    """An error the CLI reports as a single line (no traceback)."""


class InputError(AtstSedError):
    """Bad user input: a file that cannot be used, with the reason."""

    def __init__(self, path: str | PathLike[str] | None, problem: str, line: int | None = None):
        self.path = None if path is None else str(path)
        self.problem = problem
        self.line = line
        where = self.path or "<input>"
        if line is not None:
            where = f"{where}:{line}"
        super().__init__(f"{where}: {problem}")

"""What the verbs that work through many files (``detect``, ``embed``) show on stderr: a progress bar
while they run (only on a terminal, and only for two files or more) and, when they finish, one
summary line that stays — what was written where, and how long it took."""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import TextIO


class FileProgress:
    """A rich progress bar over files on ``stream`` that clears itself when the block ends (the
    summary line takes its place); invisible off a terminal and for a single file. Also times the
    block (:attr:`seconds`)."""

    def __init__(self, verb: str, stream: TextIO | None = None):
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        console = Console(file=stream or sys.stderr)
        self._bar = Progress(
            TextColumn(verb), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), TextColumn("{task.description}"),
            console=console, transient=True, disable=not console.is_terminal,
        )
        self._task = self._bar.add_task("", total=None, visible=False)
        self._start = time.perf_counter()
        self.seconds = 0.0

    def __enter__(self) -> "FileProgress":
        self._start = time.perf_counter()
        self._bar.__enter__()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        self._bar.__exit__(kind, error, trace)
        self.seconds = time.perf_counter() - self._start

    def update(self, done: int, total: int, name: str) -> None:
        """``done`` of ``total`` files finished; ``name``: the file at hand."""
        self._bar.update(self._task, completed=done, total=total, description=name, visible=total >= 2)


def count(n: int, noun: str) -> str:
    """``1 file``, ``2 files``, ``0 events``."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def destination(path: str) -> str:
    """How the summary names an output: the path as given, ``stdout`` for ``-``."""
    from atst_sed.fileio import is_standard_output

    return "stdout" if is_standard_output(path) else str(path)


def summary_line(verb: str, done: str, target: str, seconds: float, problems: int = 0) -> str:
    """``atst-sed detect: 12 files, 57 events → events.csv (3.2 s)``, plus ``; 2 problems (above)``."""
    tail = f"; {count(problems, 'problem')} (above)" if problems else ""
    return f"atst-sed {verb}: {done} → {target} ({seconds:.1f} s){tail}"

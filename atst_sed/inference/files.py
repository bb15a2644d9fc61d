"""Detection over many inputs (files, folders, globs) with per-file error reporting."""

from __future__ import annotations

import glob
import logging
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import numpy as np
import pandas as pd

from atst_sed.audio import is_audio_file, unusable_path_reason
from atst_sed.errors import AtstSedError
from atst_sed.fileio import check_output_folder, resolve_output
from atst_sed.inference.postprocess import SCORED_EVENT_COLUMNS

if TYPE_CHECKING:  # the detector (torch) is imported when detection runs
    from atst_sed.inference.detector import FileScores

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InputFile:
    """A file to process and the name it gets in the outputs (relative to its input folder)."""

    path: Path
    name: str


def collect_inputs(inputs: Sequence[str]) -> tuple[list[InputFile], list[str]]:
    """Expand files, folders (recursive, audio extensions only) and glob patterns.

    Returns (files in input order, each once; problems as one-line messages). A file found in a
    folder is named by its path relative to that folder (``/``-separated); other files by their name.
    Entries with an audio extension that cannot be opened — dangling symbolic links, link loops —
    are problems, one line each, not skipped silently.
    """
    found: list[InputFile] = []
    problems: list[str] = []
    seen: set[Path] = set()

    def add(path: Path, name: str) -> None:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            found.append(InputFile(path, name))

    def usable(path: Path) -> bool:
        reason = unusable_path_reason(path)
        if reason is not None:
            problems.append(f"{path}: {reason}")
        return reason is None

    for item in inputs:
        path = Path(item)
        if path.is_dir():
            entries = sorted(p for p in path.rglob("*") if is_audio_file(p) and not p.is_dir())
            files = [p for p in entries if usable(p)]
            if not entries:
                problems.append(f"{item}: folder contains no audio files")
            for p in files:
                add(p, p.relative_to(path).as_posix())
        elif path.is_file():
            add(path, path.name)
        elif glob.has_magic(item):
            matches = sorted(Path(m) for m in glob.glob(item, recursive=True))
            files = [m for m in matches if not m.is_dir() and usable(m)]
            if not matches:
                problems.append(f"{item}: no file matches this pattern")
            for p in files:
                add(p, p.name)
        else:
            reason = unusable_path_reason(path)
            problems.append(f"{item}: {'no such file or folder' if reason == 'no such file' else reason}")
    return found, problems


def _progress(total: int, stream: TextIO):
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    console = Console(file=stream)
    return Progress(
        TextColumn("detect"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), TextColumn("{task.description}"),
        console=console, transient=True, disable=total < 2 or not console.is_terminal,
    )


PLOT_FORMATS = ("png", "html", "both")
DEFAULT_PLOT_CLASSES = 10


def write_pictures(
    stem: Path, plot_format: str, audio: np.ndarray, scores: FileScores, events: pd.DataFrame, classes: Sequence[str],
    thresholds: Sequence[float], max_classes: int,
) -> list[Path]:
    """Write the pictures of one recording (``audio`` (N,) at 16 kHz): ``stem.png`` (``stem_p1.png``
    … for a long one) for ``plot_format`` png, ``stem.html`` for html, both for both."""
    from atst_sed.inference.plot import PlotInput, plot_detection

    data = PlotInput(audio, scores.probs, events, classes, scores.frame_seconds, scores.filename, thresholds)
    written: list[Path] = []
    if plot_format in ("png", "both"):
        written += plot_detection(stem.with_name(stem.name + ".png"), data, max_classes=max_classes)
    if plot_format in ("html", "both"):
        from atst_sed.inference.plot_html import write_detection_html

        written.append(write_detection_html(stem.with_name(stem.name + ".html"), data, max_classes=max_classes))
    return written


def run_detect(
    inputs: Sequence[str],
    checkpoint: str,
    output: str = "-",
    scores_dir: str | None = None,
    plot_dir: str | None = None,
    plot_format: str | None = None,
    plot_classes: int | None = None,
    thresholds: float | Mapping[str, float] | None = None,
    median_filter: int | Mapping[str, int] | None = None,
    hop: float = 5.0,
    batch_size: int | None = None,
    device: str = "auto",
    precision: str = "auto",
    variant: str | None = None,
    stderr: TextIO | None = None,
) -> int:
    """The ``atst-sed detect`` command. Returns 0, or 1 when any input failed (each reported as
    one line on ``stderr``). Bad settings or checkpoint raise :class:`AtstSedError` (exit 2).

    ``plot_dir`` gets, per file, PNG page(s) and/or an interactive HTML view (``plot_format``
    ``png`` (default), ``html`` or ``both``) showing at most ``plot_classes`` classes (default
    ``DEFAULT_PLOT_CLASSES``); both options need ``plot_dir``."""
    from atst_sed.errors import InputError
    from atst_sed.inference.detector import Detector
    from atst_sed.inference.outputs import score_file_id, write_events_csv, write_scores
    from atst_sed.inference.windows import plan_windows, read_audio_16k

    stderr = stderr or sys.stderr
    for folder, option in ((scores_dir, "--scores-dir"), (plot_dir, "--plot")):
        if folder is not None:
            check_output_folder(folder, option)
    resolve_output(output)  # a folder given as -o is refused before the model runs
    if batch_size is not None and batch_size < 1:
        raise AtstSedError("--batch-size must be at least 1")
    if plot_dir is None:
        for option, value in (("--plot-format", plot_format), ("--plot-classes", plot_classes)):
            if value is not None:
                raise AtstSedError(f"{option} needs --plot DIR (the folder for the pictures)")
    plot_format = plot_format or "png"
    plot_classes = DEFAULT_PLOT_CLASSES if plot_classes is None else plot_classes
    if plot_format not in PLOT_FORMATS:
        raise AtstSedError(f"--plot-format must be one of {', '.join(PLOT_FORMATS)}, not {plot_format!r}")
    if plot_classes < 1:
        raise AtstSedError("--plot-classes must be at least 1")
    try:
        detector = Detector.from_checkpoint(
            checkpoint, device=device, batch_size=batch_size, hop_seconds=hop, thresholds=thresholds, median_filter=median_filter,
            precision=precision, variant=variant,
        )
    except ValueError as err:
        raise AtstSedError(str(err)) from None
    files, problems = collect_inputs(inputs)
    for line in problems:
        print(f"atst-sed detect: {line}", file=stderr)
    failed = len(problems)
    events: list[pd.DataFrame] = []

    def report(f: InputFile, err: Exception) -> None:
        nonlocal failed
        failed += 1
        if isinstance(err, InputError):
            print(f"atst-sed detect: {err}", file=stderr)
        elif isinstance(err, MemoryError):
            print(f"atst-sed detect: {f.path}: out of memory", file=stderr)
        else:
            print(f"atst-sed detect: {f.path}: {err}", file=stderr)

    def finish(group: list[tuple[InputFile, np.ndarray]]) -> None:
        """Score a group of read recordings together, then write each one's outputs."""
        try:
            all_scores = detector.scores_many([(audio, f.name) for f, audio in group])
        except (AtstSedError, MemoryError) as err:
            for f, _ in group:
                report(f, err)
            return
        for (f, audio), scores in zip(group, all_scores):
            try:
                found = detector.events(scores, f.name)
                if scores_dir:
                    write_scores(scores_dir, {score_file_id(f.name): scores.probs}, detector.classes)
                if plot_dir:
                    write_pictures(Path(plot_dir) / score_file_id(f.name), plot_format, audio, scores, found,
                                   detector.classes, detector.thresholds, plot_classes)
                events.append(found)
            except (AtstSedError, OSError) as err:
                report(f, err)

    # Recordings are read one by one and scored in groups of about one batch of windows, so that
    # many short files share forward passes; a long recording forms its own group.
    with _progress(len(files), stderr) as progress:
        task = progress.add_task("", total=len(files))
        group: list[tuple[InputFile, np.ndarray]] = []
        windows = 0
        for f in files:
            progress.update(task, description=f.name)
            try:
                audio = read_audio_16k(f.path)
                detector.check_length(len(audio), str(f.path))
                if not np.any(audio):
                    print(f"atst-sed detect: {f.path}: warning: the recording is digitally silent (processed anyway)", file=stderr)
                group.append((f, audio))
                windows += len(plan_windows(len(audio), detector.hop_tokens))
            except (AtstSedError, MemoryError) as err:
                report(f, err)
                progress.advance(task)
            if windows >= detector.batch_size:
                finish(group)
                progress.advance(task, len(group))
                group, windows = [], 0
        if group:
            finish(group)
            progress.advance(task, len(group))
    events = [e for e in events if len(e)]
    table = pd.concat(events, ignore_index=True) if events else pd.DataFrame(columns=SCORED_EVENT_COLUMNS)
    write_events_csv(output, table)
    n_ok = len(files) - (failed - len(problems))
    log.debug("detect: %d files processed, %d failed, %d events", n_ok, failed, len(table))
    return 1 if failed else 0

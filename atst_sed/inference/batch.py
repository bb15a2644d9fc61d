"""Detection over many inputs (files, folders, globs): the library side of ``atst-sed detect``.

:func:`detect_inputs` writes the events CSV, score files and pictures and returns a
:class:`DetectionReport` with one line per input that could not be used; it prints nothing (the
CLI prints the lines, ``atst-sed package --eval-audio`` collects them).
"""

from __future__ import annotations

import glob
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from atst_sed.audio import is_audio_file, load_audio, unusable_path_reason
from atst_sed.class_names import check_label_format
from atst_sed.errors import AtstSedError, InputError
from atst_sed.events import SCORED_EVENT_COLUMNS, write_events_csv
from atst_sed.fileio import check_output_folder, resolve_output
from atst_sed.frontend import FrontendConfig
from atst_sed.inference.windows import DEFAULT_HOP_SECONDS
from atst_sed.score_files import score_file_id, write_score_files

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


@dataclass
class DetectionReport:
    """What :func:`detect_inputs` did: audio files found, how many of them failed, one line per problem
    (an input that could not be used or failed) and per warning (e.g. a digitally silent recording,
    processed anyway), and the number of events written."""

    files: int = 0
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    events: int = 0
    failed_files: int = 0

    @property
    def failed(self) -> bool:
        return bool(self.problems)


PLOT_FORMATS = ("png", "html", "both")
DEFAULT_PLOT_CLASSES = 10


def write_pictures(
    stem: Path, plot_format: str, audio: np.ndarray, scores: FileScores, events: pd.DataFrame, classes: Sequence[str],
    thresholds: Sequence[float], max_classes: int, frontend: FrontendConfig | None = None,
) -> list[Path]:
    """Write the pictures of one recording (``audio`` (N,) at 16 kHz): ``stem.png`` (``stem_p1.png``
    … for a long one) for ``plot_format`` png, ``stem.html`` for html, both for both."""
    from atst_sed.inference.plot import PlotInput, plot_detection

    data = PlotInput(audio, scores.probs, events, classes, scores.frame_seconds, scores.filename, thresholds,
                     frontend or FrontendConfig())
    written: list[Path] = []
    if plot_format in ("png", "both"):
        written += plot_detection(stem.with_name(stem.name + ".png"), data, max_classes=max_classes)
    if plot_format in ("html", "both"):
        from atst_sed.inference.plot_html import write_detection_html

        written.append(write_detection_html(stem.with_name(stem.name + ".html"), data, max_classes=max_classes))
    return written


def detect_inputs(
    inputs: Sequence[str],
    checkpoint: str,
    output: str = "-",
    scores_dir: str | None = None,
    raw_scores_dir: str | None = None,
    plot_dir: str | None = None,
    plot_format: str | None = None,
    plot_classes: int | None = None,
    thresholds: float | Mapping[str, float] | None = None,
    median_filter: int | Mapping[str, int] | None = None,
    hop: float = DEFAULT_HOP_SECONDS,
    batch_size: int | None = None,
    device: str = "auto",
    precision: str = "auto",
    variant: str | None = None,
    role: str | None = None,
    short_clips: str | None = None,
    labels: str | None = None,
    label_format: str = "name",
    classes: Sequence[str] | None = None,
    top_k: int | None = None,
    top_k_per: str = "frame",
    on_message: Callable[[str], None] | None = None,
    on_progress: Callable[[int, int, str], None] | None = None,
) -> DetectionReport:
    """Detect events in files, folders and glob patterns with a SED checkpoint; write the events CSV
    to ``output`` (``-``: standard output), per-file score files into ``scores_dir`` and pictures
    into ``plot_dir``. The library side of ``atst-sed detect``: nothing is printed.

    ``scores_dir`` gets the post-processed scores (median-filtered with the detector's sizes: the
    scores the CSV's events are thresholded from, what ``atst-sed evaluate`` and a DCASE 2023
    submission score); ``raw_scores_dir`` the model's scores before the median filter.

    Inputs that cannot be used are reported one line each in the returned
    :class:`DetectionReport` (and, as they happen, to ``on_message``); the others are still
    processed. ``on_progress(done, total, current file name)`` follows the files. Bad settings or an
    unusable checkpoint raise :class:`AtstSedError` before anything is read.

    ``plot_dir`` gets, per file, PNG page(s) and/or an interactive HTML view (``plot_format``
    ``png`` (default), ``html`` or ``both``) showing at most ``plot_classes`` classes (default
    ``DEFAULT_PLOT_CLASSES``); both options need ``plot_dir``. ``checkpoint``, ``variant``,
    ``role``, ``short_clips``, ``labels``, ``classes``, ``top_k`` and ``top_k_per`` are those of
    :meth:`Detector.from_checkpoint`.

    The CSV's ``event_label`` and the pictures use display names (``label_format="name"``, e.g.
    ``Speech``) or class ids (``"mid"``, e.g. ``/m/09x0r``); score files always use class ids, as
    ``atst-sed evaluate`` and sed_scores_eval expect.
    """
    from atst_sed.inference.detector import Detector

    for folder, option in ((scores_dir, "--scores-dir"), (raw_scores_dir, "--raw-scores-dir"), (plot_dir, "--plot")):
        if folder is not None:
            check_output_folder(folder, option)
    if scores_dir and raw_scores_dir and Path(scores_dir).resolve() == Path(raw_scores_dir).resolve():
        raise AtstSedError("--scores-dir and --raw-scores-dir must be different folders")
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
    check_label_format(label_format)
    try:
        detector = Detector.from_checkpoint(
            checkpoint, device=device, batch_size=batch_size, hop_seconds=hop, thresholds=thresholds, median_filter=median_filter,
            precision=precision, variant=variant, role=role, short_clips=short_clips, labels=labels, classes=classes,
            top_k=top_k, top_k_per=top_k_per,
        )
    except ValueError as err:
        raise AtstSedError(str(err)) from None
    report = DetectionReport()
    shown_names = [detector.display_names[c] for c in detector.classes] if label_format == "name" else detector.classes

    def note(line: str, problem: bool = True) -> None:
        (report.problems if problem else report.warnings).append(line)
        if on_message is not None:
            on_message(line)

    files, problems = collect_inputs(inputs)
    for line in problems:
        note(line)
    report.files = len(files)
    events: list[pd.DataFrame] = []
    done = 0

    def progress(name: str) -> None:
        if on_progress is not None:
            on_progress(done, len(files), name)

    def failed(f: InputFile, err: Exception) -> None:
        report.failed_files += 1
        if isinstance(err, InputError):
            note(str(err))
        elif isinstance(err, MemoryError):
            note(f"{f.path}: out of memory")
        else:
            note(f"{f.path}: {err}")

    def finish(group: list[tuple[InputFile, np.ndarray]]) -> None:
        """Score a group of read recordings together, then write each one's outputs."""
        try:
            all_scores = detector.scores_many([(audio, f.name) for f, audio in group])
        except (AtstSedError, MemoryError) as err:
            for f, _ in group:
                failed(f, err)
            return
        for (f, audio), scores in zip(group, all_scores):
            try:
                found = detector.events(scores, f.name)
                clip = score_file_id(f.name)
                if label_format == "name":
                    found = detector.readable(found)
                if scores_dir:
                    write_score_files(scores_dir, {clip: detector.decoding.filtered(scores.probs)}, detector.classes,
                                      scores.frame_seconds)
                if raw_scores_dir:
                    write_score_files(raw_scores_dir, {clip: scores.probs}, detector.classes, scores.frame_seconds)
                if plot_dir:
                    write_pictures(Path(plot_dir) / score_file_id(f.name), plot_format, audio, scores, found,
                                   shown_names, detector.thresholds, plot_classes, detector.spec.frontend)
                events.append(found)
            except (AtstSedError, OSError) as err:
                failed(f, err)

    # Recordings are read one by one and scored in groups of about one batch of windows, so that
    # many short files share forward passes; a long recording forms its own group.
    group: list[tuple[InputFile, np.ndarray]] = []
    windows = 0
    for f in files:
        progress(f.name)
        try:
            audio = load_audio(f.path, detector.spec.sample_rate).numpy()
            detector.check_length(len(audio), str(f.path))
            if not np.any(audio):
                note(f"{f.path}: warning: the recording is digitally silent (processed anyway)", problem=False)
            group.append((f, audio))
            windows += len(detector.windows.plan(len(audio)))
        except (AtstSedError, MemoryError) as err:
            failed(f, err)
            done += 1
            progress(f.name)
        if windows >= detector.batch_size:
            finish(group)
            done += len(group)
            progress(f.name)
            group, windows = [], 0
    if group:
        finish(group)
        done += len(group)
        progress(group[-1][0].name)
    events = [e for e in events if len(e)]
    table = pd.concat(events, ignore_index=True) if events else pd.DataFrame(columns=list(SCORED_EVENT_COLUMNS))
    write_events_csv(output, table)
    report.events = len(table)
    log.debug("detect: %d files, %d problems, %d events", len(files), len(report.problems), len(table))
    return report

"""The Python API: a SED model by name or file, its events and frame scores, and evaluation.

    from atst_sed import load_model
    model = load_model("atst-sed:stage2")        # a published model (downloaded once), or a file
    events = model.detect("recording.wav")       # DataFrame: filename, onset, offset, event_label, score

Everything runs through the code of the command line (:class:`~atst_sed.inference.detector.Detector`
for ``atst-sed detect``, :func:`~atst_sed.evaluation.files.evaluate_files` for ``atst-sed evaluate``),
so a script and the CLI give the same numbers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from os import PathLike
from pathlib import Path

import pandas as pd

from atst_sed.evaluation.files import evaluate_files
from atst_sed.inference.detector import Detector
from atst_sed.inference.windows import DEFAULT_HOP_SECONDS
from atst_sed.models.spec import ModelSpec
from atst_sed.score_files import score_dataframe

AudioPath = str | PathLike[str]


class Model:
    """A loaded SED model ready to run on recordings of any length (see :func:`load_model`).

    Attributes:
        detector: the :class:`~atst_sed.inference.detector.Detector` doing the work (windows,
            overlap-add on the model's grid, decoding).
    """

    def __init__(self, detector: Detector):
        self.detector = detector

    @property
    def classes(self) -> list[str]:
        """Output classes, in order."""
        return list(self.detector.classes)

    @property
    def display_names(self) -> dict[str, str]:
        """Class id → readable name (AudioSet MIDs → ontology names; DESED ids are their own names)."""
        return dict(self.detector.display_names)

    @property
    def spec(self) -> ModelSpec:
        """The model's contract: family, frame grid (40 ms ATST, 64 ms ATST-SED), window, decoding …"""
        return self.detector.spec

    def detect(self, audio: AudioPath | Iterable[AudioPath], label_format: str = "name") -> pd.DataFrame:
        """Events of one audio file or of several (any format, rate and channel count).

        Args:
            label_format: ``name`` (display names, as ``atst-sed detect`` writes its CSV) or ``mid``
                (class ids, e.g. AudioSet MIDs, as ground truths and score files name classes).

        Returns:
            One row per event, as ``atst-sed detect`` writes its CSV: ``filename`` (the file name
            without folders), ``onset`` and ``offset`` (seconds), ``event_label``, ``score`` (the
            event's mean probability), sorted by filename, onset and class.
        """
        return self.detector.detect(audio, label_format)

    def scores(self, audio: AudioPath, filtered: bool = False) -> pd.DataFrame:
        """Frame probabilities of one audio file: one row per frame of the model's grid with its
        ``onset`` and ``offset`` in seconds and one column per class (sed_scores_eval's layout).

        ``filtered=False``: the model's probabilities (as ``atst-sed detect --raw-scores-dir`` writes
        them); ``True``: after the model's median filters, the scores its events are cut from (as
        ``--scores-dir`` writes them)."""
        file_scores = self.detector.scores(audio)
        probs = self.detector.decoding.filtered(file_scores.probs) if filtered else file_scores.probs
        return score_dataframe(probs, self.classes, file_scores.frame_seconds)

    def __repr__(self) -> str:
        spec = self.spec
        name = spec.meta.get("name") or spec.meta.get("layout") or "checkpoint"
        return (f"Model({name!r}: {spec.family}, {len(spec.classes)} classes, "
                f"{spec.grid.frame_seconds * 1000:g} ms frames, device {self.detector.device})")


def load_model(
    source: str | PathLike[str],
    *,
    role: str | None = None,
    device: str = "auto",
    thresholds: float | Sequence[float] | Mapping[str, float] | None = None,
    median_filter: int | Sequence[int] | Mapping[str, int] | None = None,
    short_clips: str | None = None,
    hop_seconds: float = DEFAULT_HOP_SECONDS,
    batch_size: int | None = None,
    precision: str = "auto",
    labels: AudioPath | None = None,
    classes: Sequence[str] | None = None,
    top_k: int | None = None,
    top_k_per: str = "frame",
) -> Model:
    """A SED model from a published model's name (``atst-sed:stage2``, ``atst-frame:audioset-strong``
    …; ``atst-sed models`` lists them — downloaded once into the cache), a published SED file (the
    layout is read from its keys) or a checkpoint of ``atst-sed train``.

    Args:
        role: ``teacher`` (default) or ``student`` of a published ATST-SED file.
        device: ``auto`` (a CUDA GPU when there is one), ``cpu`` or ``cuda``.
        thresholds: decision thresholds: one for all classes, one per class, or ``{class: value}``
            (default: the model's).
        median_filter: median filter sizes in the model's frames, given the same ways.
        short_clips: ``pad`` or ``mask`` for recordings shorter than the model's window (default:
            the model's own; see :class:`~atst_sed.inference.detector.Detector`).
        hop_seconds: hop between the windows of a long recording.
        batch_size: windows per forward pass (default 4 on CPU, 32 on GPU).
        precision: ``auto`` (bf16 on GPU, fp32 on CPU), ``fp32`` or ``bf16``.
        labels: a label file: class ids in output order (optionally TAB display name) or an AudioSet
            ``ontology.json`` (names only); see :mod:`atst_sed.class_names`.
        classes: keep only these classes (ids or display names, e.g. ``["Dog", "/m/09x0r"]``).
        top_k: for browsing: at most ``top_k`` active classes per frame (``top_k_per="frame"``) or
            the ``top_k`` highest-scoring events per file (``"event"``).

    Raises:
        AtstSedError: an unknown name, an unusable file, or settings that do not fit the model
            (one line naming the problem).
    """
    if isinstance(source, PathLike):
        source = Path(source)
    return Model(Detector.from_checkpoint(
        source, device=device, batch_size=batch_size, hop_seconds=hop_seconds, thresholds=thresholds,
        median_filter=median_filter, precision=precision, role=role, short_clips=short_clips, labels=labels,
        classes=classes, top_k=top_k, top_k_per=top_k_per,
    ))


#: Score predictions on disk (a folder of operating points or score files, or one event table such as
#: ``Model.detect(...).to_csv(...)`` / ``atst-sed detect``'s CSV) against a strong ground truth; see
#: :func:`~atst_sed.evaluation.files.evaluate_files`.
evaluate = evaluate_files

__all__ = ["Model", "evaluate", "load_model"]

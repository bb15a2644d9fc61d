"""Helpers of ``recipes/mini/demo.sh`` (standard library only, so any ``python3`` runs them).

  python3 demo_steps.py pick CORPUS                    the test clip the demo detects on (a path)
  python3 demo_steps.py compare CORPUS CLIP EVENTS.csv ground truth beside the detections, per class
  python3 demo_steps.py table RUN_DIR                  the run's test PSDS as the README's Markdown table

Exit status 1 with one line on stderr when the corpus or the run is not there.
"""

from __future__ import annotations

import csv
import json
import sys
import textwrap
from pathlib import Path

TEST_AUDIO = "audio/validation/validation_16k"  # the corpus's test split (DESED's "validation")
TEST_LABELS = "metadata/validation/validation.tsv"


class DemoError(Exception):
    """A one-line reason the step cannot run."""


def _ground_truth(corpus: Path) -> dict[str, list[tuple[float, float, str]]]:
    """Strong labels of the test split per file name (clips without events map to [])."""
    path = corpus / TEST_LABELS
    if not path.is_file():
        raise DemoError(f"{path}: no test labels; run the corpus step first (demo.sh corpus)")
    events: dict[str, list[tuple[float, float, str]]] = {}
    with open(path, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            clip = events.setdefault(row["filename"], [])
            if row.get("event_label"):
                clip.append((float(row["onset"]), float(row["offset"]), row["event_label"]))
    return events


def pick_clip(corpus: Path) -> Path:
    """The first test clip (by name) with at least two labelled events (else one, else any)."""
    audio = corpus / TEST_AUDIO
    clips = sorted(p for p in audio.glob("*.wav")) if audio.is_dir() else []
    if not clips:
        raise DemoError(f"{audio}: no test clip (*.wav); run the corpus step first (demo.sh corpus)")
    events = _ground_truth(corpus)
    for wanted in (2, 1, 0):
        for clip in clips:
            if len(events.get(clip.name, [])) >= wanted:
                return clip
    raise AssertionError("unreachable: wanted=0 matches any clip")


def _spans(items: list[tuple[float, float, str]], scores: list[float] | None = None) -> str:
    if not items:
        return "—"
    parts = [f"{on:.2f}–{off:.2f}" for on, off, _ in items]
    if scores is not None:
        parts = [f"{p} ({s:.2f})" for p, s in zip(parts, scores)]
    return ", ".join(parts)


def compare(corpus: Path, clip: Path, detections: Path) -> str:
    """Per class: the labelled events of ``clip`` and the detected ones (seconds, with scores)."""
    truth = sorted(_ground_truth(corpus).get(clip.name, []))
    found: list[tuple[float, float, str, float]] = []
    with open(detections, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            found.append((float(row["onset"]), float(row["offset"]), row["event_label"], float(row["score"])))
    found.sort()
    classes = list(dict.fromkeys([c for _, _, c in truth] + [c for _, _, c, _ in found]))
    if not classes:
        return f"{clip.name}: no event labelled, none detected"
    lines = [f"{'class':<28}{'ground truth (s)':<34}detected (s, mean score)"]
    for name in classes:
        labelled = [e for e in truth if e[2] == name]
        detected = [e for e in found if e[2] == name]
        lines.append(f"{name:<28}{_spans(labelled):<34}{_spans([e[:3] for e in detected], [e[3] for e in detected])}")
    return "\n".join(lines)


def _number(value: object) -> str:
    return f"{value:.3f}" if isinstance(value, (int, float)) else "–"


def results_table(run: Path) -> str:
    """One Markdown row per tested model of the run, in stage order, as README.md shows them."""
    manifest_path = run / "manifest.json"
    if not manifest_path.is_file():
        raise DemoError(f"{manifest_path}: no run here; run the train step first (demo.sh train)")
    stages = json.loads(manifest_path.read_text(encoding="utf-8")).get("stages") or []
    rows = []
    for stage in stages:
        path = run / stage / "metrics.json"
        tested = json.loads(path.read_text(encoding="utf-8")).get("test") if path.is_file() else None
        for role, m in (tested or {}).items():
            values = [m.get(k) for k in ("psds1", "psds2", "psds1_sed_scores_eval", "psds2_sed_scores_eval")]
            rows.append(f"| {m.get('model', role)}, stage `{stage}` | " + " | ".join(map(_number, values)) + " |")
    if not rows:
        raise DemoError(f"{run}: no stage has test results yet")
    header = ["| model (test split) | PSDS1 | PSDS2 | PSDS1 (sed_scores_eval) | PSDS2 (sed_scores_eval) |",
              "|---|---|---|---|---|"]
    return "\n".join(header + rows)


def main(argv: list[str]) -> int:
    try:
        if len(argv) == 2 and argv[0] == "pick":
            print(pick_clip(Path(argv[1])))
        elif len(argv) == 4 and argv[0] == "compare":
            print(textwrap.indent(compare(Path(argv[1]), Path(argv[2]), Path(argv[3])), "   "))
        elif len(argv) == 2 and argv[0] == "table":
            print(results_table(Path(argv[1])))
        else:
            print(__doc__, file=sys.stderr)
            return 2
    except DemoError as err:
        print(f"demo: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

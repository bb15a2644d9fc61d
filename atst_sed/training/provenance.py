"""Where a run came from: package versions, the source commit, and the manifest both run kinds write."""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import platform
import subprocess
from pathlib import Path
from typing import Any

from atst_sed.version import __version__

#: The packages whose versions every run manifest records.
PACKAGES = ("atst-sed", "torch", "torchaudio", "pytorch-lightning", "numpy", "pandas", "scipy", "psds-eval",
            "sed-eval", "sed-scores-eval", "librosa", "soundfile")

_SOURCE = Path(__file__).resolve().parents[1]  # the atst_sed package folder


def package_versions() -> dict[str, str]:
    """Installed versions of :data:`PACKAGES` (those present) and of Python."""
    out = {}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    out["python"] = platform.python_version()
    return out


def git_commit() -> str | None:
    """``git rev-parse HEAD`` of the source tree (None outside a git checkout)."""
    try:
        res = subprocess.run(["git", "rev-parse", "HEAD"], cwd=_SOURCE, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return (res.stdout.strip() or None) if res.returncode == 0 else None


def now() -> str:
    """The current UTC time, ISO 8601 to the second."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def run_manifest(
    *,
    seed: int,
    dataset: dict[str, Any],
    classes: list[str],
    frontend: dict[str, Any],
    model: dict[str, Any] | None,
    training_data: list[str],
    stages: list[str],
    created: str | None = None,
    updated: bool = False,
    **extra: Any,
) -> dict[str, Any]:
    """A run's ``manifest.json``: the atst-sed version, source commit, creation time (``created``,
    default now) and, with ``updated``, the time of this update; seed, package versions, dataset
    (root, fingerprint, missing files), classes, frontend, model (encoder, parameter counts),
    ``extra`` entries, training data and the stages done."""
    manifest = {
        "atst_sed_version": __version__,
        "git_commit": git_commit(),
        "created": created or now(),
    }
    if updated:
        manifest["updated"] = now()
    manifest.update({
        "seed": seed,
        "versions": package_versions(),
        "dataset": dataset,
        "classes": classes,
        "frontend": frontend,
        "model": model,
        **extra,
        "training_data": training_data,
        "stages": stages,
    })
    return manifest

"""Frame embeddings of whole recordings (``atst-sed embed``): consecutive 10 s chunks through an
ATST encoder.

Many inputs (:func:`embed_inputs`): files, folders and glob patterns as ``atst-sed detect`` takes them,
one ``.npz`` per file in an output folder (sub-folders of an input folder kept); a single file named
directly can go to any output file instead.

Audio longer than the encoder's positional table is cut, as audiossl's embedding API does, into
consecutive chunks of the whole file's features (1001 mel frames: the 250-token table of 4-frame
tokens, and the frame a 10 s window drops; no overlap); each chunk is encoded on its own and the
chunks' tokens are concatenated. Unlike audiossl, the reported timestamps are exact (each chunk
starts at its own first mel frame, so there is no 10 ms drift per chunk). For overlapping windows
with edge-discounted scores use :class:`atst_sed.inference.detector.Detector`.
"""

from __future__ import annotations

import glob
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from atst_sed.audio import load_audio
from atst_sed.errors import AtstSedError, InputError
from atst_sed.fileio import check_output_folder, describe, open_output, resolve_output
from atst_sed.frontend import FrontendConfig, LogMelFrontend
from atst_sed.inference.batch import InputFile, collect_inputs
from atst_sed.models.encoder import ATSTEncoder
from atst_sed.timegrid import FrameGrid


def chunk_frames(encoder: ATSTEncoder, grid: FrameGrid) -> int:
    """Mel frames per chunk: those of the longest input the encoder's positional table takes (1001)."""
    return int(grid.n_mel_frames(encoder.config.max_tokens * grid.hop_samples))


def chunk_bounds(n_frames: int, chunk: int, frames_per_token: int) -> list[tuple[int, int]]:
    """[start, end) mel frames of consecutive chunks of ``chunk`` frames; chunks too short for one
    token are dropped."""
    bounds = [(s, min(s + chunk, n_frames)) for s in range(0, n_frames, chunk)]
    return [(s, e) for s, e in bounds if e - s >= frames_per_token]


def embed_features(
    features: torch.Tensor,
    encoder: ATSTEncoder,
    grid: FrameGrid,
    all_blocks: bool = False,
    batch_size: int = 16,
) -> dict[str, np.ndarray]:
    """Encode normalised log-mel ``features`` (64, T) of one file, chunk by chunk; ``grid`` is the
    encoder's behind its frontend (:meth:`ATSTEncoder.grid`).

    Returns numpy arrays ``embeddings`` ((N, D) or (L, N, D)), ``cls`` (ATST-Clip only), ``blocks``,
    ``timestamps`` (seconds), ``token_frames``, ``token_chunk`` and ``chunk_frames``. Runs on
    ``features.device``; on cuda under bf16 autocast (outputs returned as float32).
    """
    n_frames = features.shape[-1]
    per_token = grid.frames_per_output
    bounds = chunk_bounds(n_frames, chunk_frames(encoder, grid), per_token)
    if not bounds:
        raise AtstSedError(f"audio is shorter than one {grid.frame_seconds * 1000:g} ms token ({n_frames} mel frames)")
    depth = encoder.config.depth
    layers = list(range(depth)) if all_blocks else None
    device = features.device
    frames_out: list[torch.Tensor] = []  # per chunk: (L, n_i, D)
    cls_out: list[torch.Tensor] = []  # per chunk: (L, D)
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        for first in range(0, len(bounds), batch_size):
            group = bounds[first : first + batch_size]
            lengths = torch.tensor([e - s for s, e in group], device=device)
            width = int(lengths.max())
            batch = torch.stack([F.pad(features[:, s:e], (0, width - (e - s))) for s, e in group])
            outs = encoder(batch, frame_lengths=lengths, layers=layers)
            outs = outs if isinstance(outs, list) else [outs]
            for i, n in enumerate(grid.outputs_of_mel_frames(lengths).tolist()):
                frames_out.append(torch.stack([o.frames[i, :n].float() for o in outs]).cpu())
                if outs[0].cls is not None:
                    cls_out.append(torch.stack([o.cls[i].float() for o in outs]).cpu())
    embeddings = torch.cat(frames_out, dim=1).numpy()  # (L, N, D)
    token_frames = np.concatenate(
        [s + per_token * np.arange(grid.outputs_of_mel_frames(e - s), dtype=np.int64) for s, e in bounds]
    )
    token_chunk = np.concatenate(
        [np.full(grid.outputs_of_mel_frames(e - s), i, dtype=np.int64) for i, (s, e) in enumerate(bounds)]
    )
    chunk_start_s = np.array([s * grid.mel_hop_samples / grid.sample_rate for s, _ in bounds])
    within = token_frames - np.array([s for s, _ in bounds], dtype=np.int64)[token_chunk]
    timestamps = chunk_start_s[token_chunk] + grid.frame_to_seconds(within // per_token)
    out = {
        "embeddings": embeddings if all_blocks else embeddings[0],
        "blocks": np.arange(depth, dtype=np.int64) if all_blocks else np.array([depth - 1], dtype=np.int64),
        "timestamps": timestamps.astype(np.float64),
        "token_frames": token_frames,
        "token_chunk": token_chunk,
        "chunk_frames": np.array(bounds, dtype=np.int64).reshape(-1, 2),
    }
    if cls_out:
        cls = torch.stack(cls_out, dim=1).numpy()  # (L, C, D)
        out["cls"] = cls if all_blocks else cls[0]
    return out


def embed_file(
    path: str | PathLike[str],
    encoder: ATSTEncoder,
    frontend: FrontendConfig | None = None,
    device: torch.device | str = "cpu",
    all_blocks: bool = False,
    batch_size: int = 16,
) -> dict[str, np.ndarray]:
    """The arrays ``atst-sed embed`` writes for the audio file ``path``: its normalised log-mel
    ``features`` (64, T) (``frontend``: the encoder's checkpoint's, default ATST's), the arrays of
    :func:`embed_features`, and the scalars ``sample_rate``, ``hop_seconds`` (mel hop),
    ``token_seconds`` and ``duration`` (seconds). :class:`InputError` for audio shorter than one
    token."""
    logmel = LogMelFrontend(frontend).to(device)
    grid = encoder.grid(logmel.config)
    rate = grid.sample_rate
    wave = load_audio(path, rate)
    if wave.shape[0] < grid.hop_samples:  # one token, and more than the STFT's reflect padding
        raise InputError(path, f"too short to embed: {wave.shape[0] / rate:.3f} s "
                               f"(needs at least {grid.hop_samples / rate:.3f} s for one {grid.frame_seconds * 1000:g} ms token)")
    encoder = encoder.to(device).eval()
    with torch.inference_mode():
        features = logmel(wave.to(device))  # (64, T), always float32
    arrays = embed_features(features, encoder, grid, all_blocks=all_blocks, batch_size=batch_size)
    return {
        "features": features.cpu().numpy().astype(np.float32),
        **arrays,
        "sample_rate": np.int64(rate),
        "hop_seconds": np.float64(grid.mel_hop_seconds),
        "token_seconds": np.float64(grid.frame_seconds),
        "duration": np.float64(wave.shape[0] / rate),
    }


def write_npz(path: str | PathLike[str], arrays: dict[str, np.ndarray]) -> None:
    """``np.savez`` to the output ``path`` (atomically for a file: :mod:`atst_sed.fileio`)."""
    with open_output(path) as handle:
        np.savez(handle, **arrays)


def is_single_file(inputs: Sequence[str]) -> bool:
    """True for one input that names a file (not a folder or a glob pattern): its output is a file."""
    return len(inputs) == 1 and not Path(inputs[0]).is_dir() and not glob.has_magic(inputs[0])


def npz_targets(inputs: Sequence[str], files: Sequence[InputFile], output: str | PathLike[str]) -> list[Path]:
    """Where the ``.npz`` of each of ``files`` goes: ``output`` itself for a single file named
    directly (unless ``output`` is an existing folder), else ``output/<name>.npz`` with the name the
    file has in its input (``sub/b.flac`` → ``output/sub/b.npz``). Raises :class:`InputError` for an
    output that cannot take them and when two files would write the same ``.npz``."""
    if is_single_file(inputs) and describe(output) != "folder":
        resolve_output(output)  # refuses a socket now, before the model loads
        return [Path(output)] * len(files)
    folder = check_output_folder(output, "-o" if is_single_file(inputs) else "-o with several inputs")
    targets = [folder / Path(f.name).with_suffix(".npz") for f in files]
    first: dict[Path, InputFile] = {}
    for f, target in zip(files, targets):
        if target in first:
            raise InputError(target, f"{first[target].path} and {f.path} would both be written here; "
                                     "give them in separate runs or rename one")
        first[target] = f
    return targets


@dataclass
class EmbeddingReport:
    """What :func:`embed_inputs` did: the files written and one line per input that could not be used."""

    written: list[Path] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def embed_inputs(
    inputs: Sequence[str],
    encoder: ATSTEncoder,
    output: str | PathLike[str],
    frontend: FrontendConfig | None = None,
    device: torch.device | str = "cpu",
    all_blocks: bool = False,
    batch_size: int = 16,
    on_message: Callable[[str], None] | None = None,
    on_progress: Callable[[int, int, str], None] | None = None,
) -> EmbeddingReport:
    """:func:`embed_file` for every audio file of ``inputs`` (files, folders searched recursively,
    glob patterns), each written as ``.npz`` where :func:`npz_targets` says. Inputs that cannot be
    used are reported one line each (also to ``on_message`` as they happen) and the others are still
    processed; ``on_progress(done, total, current file name)`` follows the files. An unusable output
    raises :class:`InputError` before anything is read."""
    files, problems = collect_inputs(inputs)
    targets = npz_targets(inputs, files, output)
    report = EmbeddingReport()

    def note(line: str) -> None:
        report.problems.append(line)
        if on_message is not None:
            on_message(line)

    for line in problems:
        note(line)
    for done, (f, target) in enumerate(zip(files, targets)):
        if on_progress is not None:
            on_progress(done, len(files), f.name)
        try:
            arrays = embed_file(f.path, encoder, frontend, device, all_blocks=all_blocks, batch_size=batch_size)
            if target != Path(output):  # a file in the output folder (sub-folders as in the input)
                target.parent.mkdir(parents=True, exist_ok=True)
            write_npz(target, arrays)
        except InputError as err:
            note(str(err))
            continue
        except (AtstSedError, OSError) as err:
            note(f"{f.path}: {err}")
            continue
        report.written.append(target)
    if on_progress is not None:
        on_progress(len(files), len(files), "")
    return report

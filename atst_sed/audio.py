"""Audio input: any readable file → mono float32 waveform at 16 kHz.

Files libsndfile reads (WAV, FLAC, Ogg, Opus, AIFF, MP3) are decoded in blocks, down-mixed and
resampled block by block, so memory follows the 16 kHz result (≈ 230 MB per hour), never the file
at its own rate and channel count; other formats, and files libsndfile rejects, go through librosa's
decoders (audioread: ffmpeg where installed) whole. Resampling
keeps torchaudio's windowed sinc for every common rate and uses polyphase filtering with the exact
ratio for rates that share little with 16 kHz (:func:`resample_plan`). Unusable files raise
:class:`~atst_sed.errors.InputError`: one line naming the file and the problem.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import math
import os
import re
import stat
import sys
import tempfile
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

from atst_sed.errors import InputError
from atst_sed.fileio import open_output

SAMPLE_RATE = 16000
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".mp3", ".aiff", ".aif", ".opus", ".m4a")
DEFAULT_BLOCK_SECONDS = 10.0

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------- paths
def unusable_path_reason(path: str | PathLike[str]) -> str | None:
    """Why ``path`` cannot be opened as a file (a symbolic-link loop, a dangling link, nothing
    there, a folder or device), or None when it is a regular file."""
    path = Path(path)
    try:
        st = path.stat()
    except OSError as err:
        if err.errno == errno.ELOOP:
            return "symbolic link loop (the link leads back to itself)"
        if path.is_symlink():
            return f"dangling symbolic link (its target {os.readlink(path)!r} does not exist)"
        if err.errno == errno.ENOENT:
            return "no such file"
        return f"cannot be opened ({err.strerror or type(err).__name__})"
    if not stat.S_ISREG(st.st_mode):
        return "a folder, not an audio file" if stat.S_ISDIR(st.st_mode) else "not a regular file"
    return None


def seconds_to_samples(seconds: float, sample_rate: int = SAMPLE_RATE) -> int:
    """The nearest whole number of samples to ``seconds`` at ``sample_rate``."""
    return int(round(seconds * sample_rate))


def check_audio_path(path: str | PathLike[str]) -> Path:
    """``path`` as a Path; :class:`InputError` if it is not a usable regular file or is empty."""
    path = Path(path)
    reason = unusable_path_reason(path)
    if reason is not None:
        raise InputError(path, reason)
    if path.stat().st_size == 0:
        raise InputError(path, "empty file")
    return path


def is_audio_file(path: Path) -> bool:
    return path.suffix.lower() in AUDIO_EXTENSIONS


# ------------------------------------------------------------------------- decoder chatter, errors
_STDERR_LOCK = threading.Lock()


@contextlib.contextmanager
def _decoder_chatter_captured() -> Iterator[list[str]]:
    """Send the process's stderr (file descriptor 2) to a temporary file while libsndfile works.

    Its MP3 decoder (libmpg123) prints "Note: ..." lines straight to the terminal on damaged or
    non-MP3 data; they are collected here instead (the yielded list gets the text) and logged at
    debug level, or used in the error message. Process-wide, so kept to single library calls.
    """
    chatter: list[str] = []
    with _STDERR_LOCK, tempfile.TemporaryFile() as sink:
        sys.stderr.flush()
        try:
            saved = os.dup(2)
        except OSError:  # no stderr to protect (a daemon without file descriptor 2)
            yield chatter
            return
        os.dup2(sink.fileno(), 2)
        try:
            yield chatter
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            text = sink.read().decode("utf-8", errors="replace").strip()
            if text:
                chatter.append(text)
                log.debug("decoder messages: %s", text.replace("\n", " | "))


def _decode_error(err: Exception, chatter: list[str]) -> str:
    """One-line reason for a failed open/decode, without libsndfile's misleading "File does not
    exist or is not a regular file" (what it says for any data its MP3 decoder rejects)."""
    message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    message = re.sub(r"^Error opening '.*?': ", "", message)
    if "does not exist or is not a regular file" in message:
        notes = [line.removeprefix("Note:").strip() for text in chatter for line in text.splitlines()]
        detail = f"; decoder: {notes[0]}" if notes else ""
        message = f"unrecognised format or corrupt data{detail}"
    return message



# -------------------------------------------------------------------------------------- resampling
#: torchaudio's windowed sinc builds a (step_out, step_in + 2·width) kernel, in float64 while it is
#: made: fine for the common rates (44.1 kHz → 16 kHz: 160 × 475 values), gigabytes for rates
#: sharing little with the target (16001 Hz: 16000 × 16015). Above this many values: polyphase.
MAX_SINC_KERNEL_VALUES = 1 << 20
_SINC_WIDTH, _SINC_ROLLOFF = 6, 0.99  # torchaudio's defaults (lowpass_filter_width, rolloff)
_POLY_HALF_PERIODS = 10  # scipy.signal.resample_poly's default half filter length, in periods
_POLY_WINDOW = ("kaiser", 5.0)  # and its default window


@dataclass(frozen=True)
class ResamplePlan:
    """How audio at ``sr`` is brought to ``target_sr``.

    Attributes:
        step_in, step_out: the rate ratio in lowest terms (``step_out / step_in = target_sr / sr``).
        method: ``"sinc"`` (torchaudio's windowed sinc, what every common rate has always used) or
            ``"polyphase"`` (``scipy.signal.resample_poly`` with the exact ratio: memory and time
            grow with the filter, 20·max(step_in, step_out) taps, not with their product).
        margin: input samples of context either side of a block, a multiple of ``step_in``, that
            make block-wise resampling (blocks starting on multiples of ``step_in``) equal to
            resampling the whole signal.
    """

    sr: int
    target_sr: int
    step_in: int
    step_out: int
    method: str
    margin: int


def resample_plan(sr: int, target_sr: int = SAMPLE_RATE) -> ResamplePlan:
    """The :class:`ResamplePlan` for ``sr`` → ``target_sr`` (both in Hz)."""
    g = math.gcd(sr, target_sr)
    step_in, step_out = sr // g, target_sr // g
    width = math.ceil(_SINC_WIDTH * step_in / (min(step_in, step_out) * _SINC_ROLLOFF))
    if step_out * (step_in + 2 * width) <= MAX_SINC_KERNEL_VALUES:
        method, reach = "sinc", max(width + 2, 64)
    else:
        method, reach = "polyphase", math.ceil(_POLY_HALF_PERIODS * max(step_in, step_out) / step_out) + 2
    margin = step_in * max(1, math.ceil(reach / step_in))
    return ResamplePlan(sr, target_sr, step_in, step_out, method, margin)


@functools.lru_cache(maxsize=8)
def _sinc_kernel(sr: int, target_sr: int) -> tuple[torch.Tensor, int]:
    """torchaudio's float32 sinc kernel for ``sr`` → ``target_sr``, built once: building it is most
    of ``torchaudio.functional.resample``'s time on a 10 s block (0.24 of 0.33 s at 44.1 kHz)."""
    from torchaudio.functional.functional import _get_sinc_resample_kernel

    return _get_sinc_resample_kernel(sr, target_sr, math.gcd(sr, target_sr), _SINC_WIDTH, _SINC_ROLLOFF,
                                     "sinc_interp_hann", None, torch.device("cpu"), torch.float32)


def _sinc_resample(wave: torch.Tensor, sr: int, target_sr: int) -> torch.Tensor:
    """``torchaudio.functional.resample(wave, sr, target_sr)`` (float32, CPU) with the kernel cached;
    the same two library steps, so the same numbers (tests check equality)."""
    try:
        from torchaudio.functional.functional import _apply_sinc_resample_kernel

        kernel, width = _sinc_kernel(sr, target_sr)
    except (ImportError, TypeError):  # a torchaudio whose private helpers changed: the public call
        return AF.resample(wave, sr, target_sr)
    return _apply_sinc_resample_kernel(wave, sr, target_sr, math.gcd(sr, target_sr), kernel, width)


@functools.lru_cache(maxsize=8)
def _polyphase_filter(step_in: int, step_out: int) -> np.ndarray:
    """resample_poly's default low-pass (float64, so that float32 audio is filtered in float64)."""
    from scipy.signal import firwin

    high = max(step_in, step_out)
    return firwin(2 * _POLY_HALF_PERIODS * high + 1, 1.0 / high, window=_POLY_WINDOW)


def resample(wave: np.ndarray, sr: int, target_sr: int = SAMPLE_RATE) -> np.ndarray:
    """Mono float32 (samples,) at ``sr`` → float32 (ceil(samples · target_sr / sr),) at ``target_sr``.

    The method follows :func:`resample_plan`: torchaudio's default sinc where its kernel is small
    (every common rate; results unchanged), else polyphase filtering with the exact ratio.
    """
    wave = np.ascontiguousarray(wave, dtype=np.float32)
    if sr == target_sr:
        return wave
    plan = resample_plan(sr, target_sr)
    if plan.method == "sinc":
        return _sinc_resample(torch.from_numpy(wave), sr, target_sr).numpy()
    from scipy.signal import resample_poly

    out = resample_poly(wave, plan.step_out, plan.step_in, window=_polyphase_filter(plan.step_in, plan.step_out))
    return out.astype(np.float32)


def to_mono_16k(data: np.ndarray, sr: int, target_sr: int = SAMPLE_RATE) -> torch.Tensor:
    """(channels, samples) at ``sr`` → mono float32 tensor (samples,) at ``target_sr``."""
    wav = torch.from_numpy(np.ascontiguousarray(data, dtype=np.float32)).mean(dim=0).numpy()
    return torch.from_numpy(np.ascontiguousarray(resample(wav, sr, target_sr)))


# ----------------------------------------------------------------------------------------- reading
def _read_fallback(path: Path) -> tuple[np.ndarray, int]:
    """(channels, samples) float32 and rate from librosa's decoders (formats libsndfile lacks)."""
    import librosa  # slow import: only for formats libsndfile cannot read

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data, sr = librosa.load(str(path), sr=None, mono=False, dtype=np.float32)
    return np.atleast_2d(data), int(sr)


def _checked(data: np.ndarray, sr: int, path: Path) -> np.ndarray:
    if data.size == 0 or data.shape[-1] == 0:
        raise InputError(path, "contains no audio samples")
    if sr <= 0:
        raise InputError(path, f"invalid sample rate {sr}")
    if not np.isfinite(data).all():
        raise InputError(path, "contains NaN or infinite samples")
    return data


def _read_whole(path: Path, failed: tuple[Exception, list[str]] | None = None) -> tuple[np.ndarray, int]:
    """The whole file with libsndfile, else with librosa's decoders (e.g. ffmpeg through audioread).

    ``failed``: libsndfile's error and decoder notes when it was already tried; errors give its reason.
    """
    if failed is None:
        try:
            with _decoder_chatter_captured() as chatter:
                data, sr = sf.read(str(path), dtype="float32", always_2d=True)
            return _checked(data.T, sr, path), sr
        except InputError:
            raise
        except Exception as err:
            failed = (err, chatter)
    try:
        with _decoder_chatter_captured():
            data, sr = _read_fallback(path)
    except Exception:
        raise InputError(path, f"not a readable audio file ({_decode_error(*failed)})") from None
    return _checked(data, sr, path), sr


def read_audio(path: str | PathLike[str]) -> tuple[np.ndarray, int]:
    """Read a whole file as it is stored: (channels, samples) float32 and its sample rate."""
    return _read_whole(check_audio_path(path))


def read_audio_16k(path: str | PathLike[str], block_seconds: float = DEFAULT_BLOCK_SECONDS) -> np.ndarray:
    """Read any audio file as mono float32 (N,) at 16 kHz, decoding in blocks.

    Formats libsndfile reads are decoded ``block_seconds`` at a time (downmix and resampling per
    block, equal to doing it on the whole file), so peak memory is the 16 kHz result plus one
    block. A file shorter than its header announces (a truncated WAV) is read as far as it goes,
    with a warning. Raises :class:`InputError` for unreadable, empty or non-finite audio.
    """
    path = check_audio_path(path)
    try:
        with _decoder_chatter_captured() as chatter:
            f = sf.SoundFile(str(path))
    except Exception as err:  # a format libsndfile lacks, or data it rejects: the fallback decoders
        data, sr = _read_whole(path, failed=(err, chatter))
        return to_mono_16k(data, sr).numpy()
    with f:
        sr, n_in = int(f.samplerate), int(f.frames)
        if sr <= 0:
            raise InputError(path, f"invalid sample rate {sr}")
        if n_in <= 0:
            raise InputError(path, "contains no audio samples")
        announced = _announced_frames(f)
        try:
            if sr == SAMPLE_RATE:
                out = _read_native(f, path, n_in, block_seconds)
            else:
                out = _read_resampled(f, path, sr, n_in, block_seconds)
        except InputError:
            raise
        except Exception as err:
            raise InputError(path, f"cannot decode audio ({type(err).__name__}: {str(err).strip()[:120]})") from None
    if announced is not None and announced > n_in:
        log.warning("%s: truncated: the header announces %.2f s of audio, the file holds %.2f s "
                    "(read as far as it goes)", path, announced / sr, n_in / sr)
    return out


def load_audio(path: str | PathLike[str], target_sr: int = SAMPLE_RATE) -> torch.Tensor:
    """Load any common audio file as a mono float32 waveform (samples,) at ``target_sr`` Hz.

    At 16 kHz this is :func:`read_audio_16k` (block-wise decoding, bounded memory). Raises
    :class:`InputError` (one line naming the file) for missing, empty, unreadable, zero-length or
    non-finite audio.
    """
    if target_sr == SAMPLE_RATE:
        return torch.from_numpy(read_audio_16k(path))
    data, sr = read_audio(path)
    return to_mono_16k(data, sr, target_sr)


#: libsndfile's header log line for a data chunk longer than the file: "data : 320000 (should be 95969)".
_SHORT_DATA_CHUNK = re.compile(r"^\s*(?:data|SSND)\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)


def _announced_frames(f: sf.SoundFile) -> int | None:
    """Frames the header announces when its data chunk is longer than the file (truncated), else None.

    A size of 0 or 0xFFFFFFFF is a streaming writer's placeholder ("unknown length"), not a promise.
    """
    found = _SHORT_DATA_CHUNK.search(f.extra_info or "")
    if found is None or f.frames <= 0:
        return None
    announced_bytes, present_bytes = int(found.group(1)), int(found.group(2))
    if announced_bytes <= present_bytes or announced_bytes >= 0xFFFFFFFF or present_bytes <= 0:
        return None
    bytes_per_frame = max(1, round(present_bytes / f.frames))
    return announced_bytes // bytes_per_frame


def _mono_block(f: sf.SoundFile, path: Path, n: int) -> np.ndarray:
    if f.format == "MP3":  # libmpg123 reports damaged frames on stderr while decoding
        with _decoder_chatter_captured():
            data = f.read(n, dtype="float32", always_2d=True)
    else:
        data = f.read(n, dtype="float32", always_2d=True)
    mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if not np.isfinite(mono).all():
        raise InputError(path, "contains NaN or infinite samples")
    return mono


def _read_native(f: sf.SoundFile, path: Path, n_in: int, block_seconds: float) -> np.ndarray:
    block = max(1, int(block_seconds * SAMPLE_RATE))
    out = np.empty(n_in, dtype=np.float32)
    pos = 0
    while pos < n_in:
        mono = _mono_block(f, path, min(block, n_in - pos))
        if len(mono) == 0:  # truncated: the header promised more frames than the file holds
            break
        out[pos : pos + len(mono)] = mono
        pos += len(mono)
    if pos == 0:
        raise InputError(path, "contains no audio samples")
    if pos < n_in:
        log.warning("%s: truncated (%d of %d samples)", path, pos, n_in)
    return out[:pos]


def _read_resampled(f: sf.SoundFile, path: Path, sr: int, n_in: int, block_seconds: float) -> np.ndarray:
    # Blocks start on multiples of the input step, so that each block's output grid is the whole
    # file's; the plan's margin covers the filter, so inner samples equal whole-file resampling.
    plan = resample_plan(sr)
    step_in, step_out, margin = plan.step_in, plan.step_out, plan.margin
    block = max(step_in, int(block_seconds * sr) // step_in * step_in)
    n_out = math.ceil(n_in * step_out / step_in)  # the resampled length of the whole file
    out = np.empty(n_out, dtype=np.float32)
    # A sliding buffer of decoded mono input: [buf_start, buf_start + len(buf)).
    buf = np.zeros(0, dtype=np.float32)
    buf_start = 0
    a = 0
    while a < n_in:
        b = min(a + block, n_in)
        want_stop = min(b + margin, n_in)
        have_stop = buf_start + len(buf)
        if want_stop > have_stop:
            more = _mono_block(f, path, want_stop - have_stop)
            buf = np.concatenate([buf, more])
            if len(more) < want_stop - have_stop:  # truncated file
                n_in = buf_start + len(buf)
                n_out = math.ceil(n_in * step_out / step_in)
                b = min(b, n_in)
                if a >= n_in:
                    break
        lo = max(0, a - margin)
        seg = buf[lo - buf_start : min(b + margin, n_in) - buf_start]
        res = resample(seg, sr)
        o0 = (a - lo) // step_in * step_out
        out_a = a // step_in * step_out
        out_b = n_out if b >= n_in else b // step_in * step_out
        out[out_a:out_b] = res[o0 : o0 + (out_b - out_a)]
        # keep only the margin before the next block
        keep_from = max(0, b - margin)
        buf = buf[keep_from - buf_start :]
        buf_start = keep_from
        a = b
    if n_out == 0:
        raise InputError(path, "contains no audio samples")
    return out[:n_out]


def write_wav(path: str | PathLike[str], wave: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """Write ``wave`` ((n,) float in [-1, 1]) as 16-bit PCM WAV to the output ``path``
    (atomically for a file: :mod:`atst_sed.fileio`)."""
    with open_output(path, seekable=True) as handle:  # libsndfile seeks back to fill the header
        sf.write(handle, wave, sample_rate, subtype="PCM_16", format="WAV")

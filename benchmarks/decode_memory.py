"""Peak memory of decoding long recordings to 16 kHz mono, at common and odd sample rates.

    .venv/bin/python benchmarks/decode_memory.py [--minutes 60] [--dir /tmp] [--rates 44100x2,16001]

For each case a WAV of ``--minutes`` (16-bit PCM, a chirp plus noise) is written block by block,
then read in a fresh subprocess with ``atst_sed.audio.read_audio_16k`` (what ``atst-sed detect``,
``embed`` and the datasets use through ``load_audio``: 10 s blocks, downmix and resampling per block).
The subprocess reports its resident set size just before the read (``VmRSS``, torch, torchaudio and
scipy imported) and its peak (``VmHWM`` from ``/proc/self/status``; ``ru_maxrss`` elsewhere).
Prints a Markdown table; files are deleted after each case.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

DEFAULT_CASES = "44100x2,48000x2,22050,11025,16001,8001,16000"

CHILD = r"""
import json, resource, sys, time
import numpy as np
import scipy.signal, torch, torchaudio
from atst_sed.audio import read_audio_16k

def status(key):
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

before = status("VmRSS")
start = time.perf_counter()
n = len(read_audio_16k(sys.argv[1]))
print(json.dumps({"before_mb": before, "peak_mb": status("VmHWM"), "seconds": time.perf_counter() - start, "samples": n}))
"""


def write_wav(path: Path, sr: int, channels: int, minutes: float) -> None:
    """A ``minutes``-long 16-bit WAV written one minute at a time (never held in memory whole)."""
    rng = np.random.default_rng(sr)
    t = np.arange(sr * 60) / sr
    chirp = 0.3 * np.sin(2 * np.pi * (200 + 30 * t) * t)
    with sf.SoundFile(path, "w", sr, channels, subtype="PCM_16") as f:
        remaining = int(round(minutes * 60 * sr))
        while remaining > 0:
            n = min(remaining, sr * 60)
            block = chirp[:n, None] + 0.02 * rng.standard_normal((n, channels))
            f.write(block.astype(np.float32))
            remaining -= n


def measure(path: Path) -> dict:
    env = dict(os.environ)
    repo = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = repo + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    proc = subprocess.run([sys.executable, "-c", CHILD, str(path)], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["killed"])[-1][:80]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--dir", default=tempfile.gettempdir(), help="where the temporary WAVs go")
    parser.add_argument("--rates", default=DEFAULT_CASES, help="comma-separated RATE or RATExCHANNELS")
    args = parser.parse_args()
    from atst_sed.audio import resample_plan

    print(f"{args.minutes:g} min per file, 16-bit PCM WAV, read_audio_16k in a fresh process (MB)\n")
    print("| rate (Hz) | channels | resampling | file (MB) | RSS before the read | peak RSS | read time (s) |")
    print("|---:|---:|---|---:|---:|---:|---:|")
    for case in args.rates.split(","):
        rate, _, channels = case.partition("x")
        sr, ch = int(rate), int(channels or 1)
        method = "none" if sr == 16000 else resample_plan(sr).method
        path = Path(args.dir) / f"decode_memory_{sr}x{ch}.wav"
        try:
            write_wav(path, sr, ch, args.minutes)
            size = path.stat().st_size / 2**20
            r = measure(path)
            if "error" in r:
                print(f"| {sr} | {ch} | {method} | {size:.0f} | | failed: {r['error']} | |", flush=True)
                continue
            expected = int(np.ceil(round(args.minutes * 60 * sr) * 16000 / sr))
            assert r["samples"] == expected, (r["samples"], expected)
            print(f"| {sr} | {ch} | {method} | {size:.0f} | {r['before_mb']:.0f} | **{r['peak_mb']:.0f}** | "
                  f"{r['seconds']:.1f} |", flush=True)
        finally:
            path.unlink(missing_ok=True)


if __name__ == "__main__":
    main()

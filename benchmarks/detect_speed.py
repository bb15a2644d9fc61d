"""Speed of ``atst-sed detect`` end to end: real-time factor on a long recording, files/s on short clips.

    .venv/bin/python benchmarks/detect_speed.py                                  # 1 h recording, 3 rounds
    .venv/bin/python benchmarks/detect_speed.py --seconds 600 --rounds 5
    .venv/bin/python benchmarks/detect_speed.py --short-files 100 --compare-tree ../main   # 100 × 10 s clips: this tree vs another checkout
    .venv/bin/python benchmarks/detect_speed.py --checkpoint best.ckpt --recording long.wav    # a trained model: + equivalence
    .venv/bin/python benchmarks/detect_speed.py --seconds 600 --readme long      # rewrites that table in benchmarks/README.md

Each run is one ``python -m atst_sed.cli.main detect …`` process, timed from start to exit (imports,
checkpoint, reading, windows, encoder, decoding, CSV). The contenders run interleaved (round 1: A B C,
round 2: A B C, …) so that a change of load on a shared machine hits all of them alike; each gets the
median, min and max of its wall time over the rounds and its *paired* ratio to the reference contender
(run r's time ÷ the reference's time in the same round r: median, min, max). The 1-minute load average
before each run and the CPU's bf16 features are recorded with the figures.

Each contender's events CSV is compared with the reference's (same recording, same checkpoint):
"identical" means the same (filename, onset, offset, label) rows; score columns are compared to the
CSV's 3 decimals. With the default random-weight checkpoint the events mean nothing (a random head
hovers around every threshold): give a trained ``--checkpoint`` to make this column an equivalence check.

The recording, unless given, is seeded noise with tone bursts (speed does not depend on the content);
the checkpoint, unless given, is frame_base with random weights (ATST-Frame base's size and cost).
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RATE = 16000
#: Contenders for a long recording: (label, extra ``atst-sed detect`` arguments). The first is the
#: reference of the paired ratios and of the event comparison: the pre-#18 default.
LONG_CONTENDERS = [
    ("fp32 (the default before #18)", ["--precision", "fp32"]),
    ("default (auto precision)", []),
    ("default, --hop 10", ["--hop", "10"]),
]


@dataclass
class Contender:
    label: str
    args: list[str]
    tree: Path = REPO  # the checkout whose code runs (PYTHONPATH)
    walls: list[float] = field(default_factory=list)
    cpus: list[float] = field(default_factory=list)
    loads: list[float] = field(default_factory=list)
    csv_rows: list[tuple] | None = None


# ------------------------------------------------------------------------------------- machine
def cpu_description() -> tuple[str, list[str]]:
    """(CPU model name, the bf16-relevant flags /proc/cpuinfo lists)."""
    name, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    name = value.strip()
                elif key.strip() in ("flags", "Features") and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    wanted = ("avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16", "bf16")
    return name, [f for f in wanted if f in flags]


def load_average() -> float:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


# ------------------------------------------------------------------------------------- inputs
def write_recording(path: Path, seconds: float, seed: int = 0) -> Path:
    """Seeded noise (−40 dBFS) with 0.3–3 s tone bursts every few seconds: a 16 kHz mono 16-bit WAV."""
    import soundfile as sf

    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    with sf.SoundFile(path, "w", RATE, 1, "PCM_16") as out:
        for start in range(0, n, 60 * RATE):  # one minute at a time
            block = (rng.standard_normal(min(60 * RATE, n - start)) * 0.01).astype(np.float32)
            t = 0
            while t < len(block):
                t += int(rng.uniform(1, 6) * RATE)
                length = int(rng.uniform(0.3, 3) * RATE)
                piece = block[t : t + length]
                phase = 2 * np.pi * rng.uniform(300, 3000) / RATE * np.arange(len(piece))
                piece += (0.2 * np.sin(phase)).astype(np.float32)
            out.write(block)
    return path


def write_clips(folder: Path, n: int, seconds: float = 10.0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        write_recording(folder / f"clip_{i:04d}.wav", seconds, seed=i)
    return folder


def write_random_checkpoint(path: Path, encoder: str = "frame_base") -> Path:
    import torch

    from atst_sed.labels import DESED_CLASSES
    from atst_sed.models.checkpoint import save_checkpoint
    from atst_sed.models.encoder import EncoderConfig
    from atst_sed.models.sed import SEDModel

    torch.manual_seed(0)
    model = SEDModel(EncoderConfig.named(encoder), DESED_CLASSES).eval()
    with torch.no_grad():
        model.head.linear.weight.normal_(0.0, 0.05)
    return save_checkpoint(path, model)


# ------------------------------------------------------------------------------------- runs
def run_detect(contender: Contender, inputs: Path, checkpoint: Path, out_csv: Path, common: list[str]) -> None:
    """One ``atst-sed detect`` process; appends its wall time, CPU time and the load before it."""
    env = dict(os.environ, PYTHONPATH=str(contender.tree))
    command = [sys.executable, "-m", "atst_sed.cli.main", "detect", str(inputs), "--checkpoint", str(checkpoint),
               "-o", str(out_csv), *common, *contender.args]
    contender.loads.append(load_average())
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    # cwd outside every checkout: ``python -m`` puts the working directory first on sys.path, which
    # would run that checkout's code whatever PYTHONPATH says.
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=out_csv.parent)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{contender.label}: atst-sed detect failed ({done.returncode}):\n{done.stderr[-2000:]}")
    contender.walls.append(wall)
    contender.cpus.append((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime))
    if contender.csv_rows is None:
        with open(out_csv, newline="") as handle:
            contender.csv_rows = [tuple(row) for row in csv.reader(handle)][1:]


def compare_events(rows: list[tuple], reference: list[tuple], frame_seconds: float) -> str:
    """``identical (N events)``, or how many events differ, as (filename, onset, offset, label) rows,
    and how many of the differing ones only have an edge moved by at most one frame (``frame_seconds``:
    the model's output frame)."""
    ours = {r[:4]: float(r[4]) for r in rows}
    ref = {r[:4]: float(r[4]) for r in reference}
    same = set(ours) & set(ref)
    score = max((abs(ours[k] - ref[k]) for k in same), default=0.0)
    if len(same) == len(ours) == len(ref):
        return f"identical ({len(ref)} events; scores within {score:.3f})"
    new = set(ours) - same
    missing = set(ref) - same
    tolerance = frame_seconds + 1e-6

    def moved(event: tuple) -> bool:
        name, onset, offset, label = event[0], float(event[1]), float(event[2]), event[3]
        return any(m[0] == name and m[3] == label and abs(float(m[1]) - onset) <= tolerance
                   and abs(float(m[2]) - offset) <= tolerance for m in missing)

    shifted = sum(moved(e) for e in new)
    return (f"{len(same)} of {len(ref)} identical; {len(new)} new, {len(missing)} missing "
            f"({shifted} of the new ones = a missing one with its edges moved by ≤ {frame_seconds * 1000:g} ms)")


def interleave(contenders: list[Contender], rounds: int, inputs: Path, checkpoint: Path, common: list[str],
               work: Path, quiet: bool) -> None:
    for r in range(rounds):
        for i, c in enumerate(contenders):
            run_detect(c, inputs, checkpoint, work / f"events_{i}.csv", common)
            if not quiet:
                print(f"round {r + 1}/{rounds}  {c.label:32s} {c.walls[-1]:8.2f} s wall  {c.cpus[-1]:8.2f} s CPU  "
                      f"load {c.loads[-1]:.2f}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------- report
def _spread(values: list[float], fmt: str) -> str:
    return f"{format(statistics.median(values), fmt)} ({format(min(values), fmt)}–{format(max(values), fmt)})"


def frame_seconds_of(checkpoint: Path) -> float:
    """The output frame of a SED checkpoint's model (ATST: 0.04 s, ATST-SED: 0.064 s)."""
    from atst_sed.models.checkpoint import load_checkpoint

    return load_checkpoint(checkpoint, mmap=True).model.spec.grid.frame_seconds


def table(contenders: list[Contender], seconds: float | None, files: int | None, frame_seconds: float) -> str:
    """One row per contender. Wall time is what a user waits; CPU seconds (the process's, all threads)
    are what the work costs, and vary far less than wall time when other jobs share the cores."""
    ref = contenders[0]
    speed = "RTF" if seconds else "files/s"
    head = ["contender", "arguments", "wall s, median (min–max)", f"{speed}, median (min–max)",
            "CPU s, median (min–max)", f"{speed} from CPU s ÷ {os.cpu_count()} cores",
            "paired ratio to the first: wall (median, min–max)", "paired ratio: CPU s", "load before (median)",
            "events vs the first"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    cores = os.cpu_count() or 1
    for c in contenders:
        rate = [w / seconds for w in c.walls] if seconds else [files / w for w in c.walls]
        cpu_rate = statistics.median(c.cpus) / cores
        cells = [
            c.label + ("" if c.tree == REPO else f" [{c.tree}]"),
            "`" + (" ".join(c.args) or "(none)") + "`",
            _spread(c.walls, ".1f"),
            _spread(rate, ".4f" if seconds else ".2f"),
            _spread(c.cpus, ".1f"),
            f"{cpu_rate / seconds:.4f}" if seconds else f"{files / cpu_rate:.2f}",
            "1" if c is ref else _spread([w / r for w, r in zip(c.walls, ref.walls)], ".3f"),
            "1" if c is ref else _spread([w / r for w, r in zip(c.cpus, ref.cpus)], ".3f"),
            f"{statistics.median(c.loads):.2f}",
            "reference" if c is ref else compare_events(c.csv_rows or [], ref.csv_rows or [], frame_seconds),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def machine_line(rounds: int, n: int) -> str:
    import torch

    name, flags = cpu_description()
    native = [f for f in ("avx512_bf16", "amx_bf16") if f in flags]
    return (f"{name}, {os.cpu_count()} cores ({platform.machine()}), flags: {' '.join(flags) or 'none of interest'} "
            f"(native bf16: {'yes, ' + '/'.join(native) if native else 'no'}); torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads; {rounds} rounds of {n} contenders interleaved; "
            f"1-minute load average at the end: {load_average():.2f}")


def write_readme_section(name: str, text: str, readme: Path = REPO / "benchmarks" / "README.md") -> None:
    """Replace what lies between ``<!-- detect_speed NAME -->`` and ``<!-- /detect_speed NAME -->``."""
    start, end = f"<!-- detect_speed {name} -->", f"<!-- /detect_speed {name} -->"
    content = readme.read_text()
    if start not in content or end not in content:
        raise SystemExit(f"{readme}: no '{start}' … '{end}' lines to write between")
    head, rest = content.split(start, 1)
    _, tail = rest.split(end, 1)
    readme.write_text(f"{head}{start}\n{text}\n{end}{tail}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=3600.0, help="length of the generated recording (default 1 h)")
    p.add_argument("--recording", type=Path, help="use this recording instead of generated noise")
    p.add_argument("--short-files", type=int, metavar="N", help="measure a folder of N × 10 s clips (files/s) instead")
    p.add_argument("--checkpoint", type=Path, help="SED checkpoint (default: frame_base, random weights)")
    p.add_argument("--rounds", type=int, default=3, help="runs per contender (interleaved)")
    p.add_argument("--contender", action="append", metavar="LABEL=ARGS", default=[],
                   help="replace the default contenders, e.g. 'bf16 hop 8=--precision bf16 --hop 8' (repeatable; "
                        "the first is the reference)")
    p.add_argument("--compare-tree", type=Path, metavar="DIR",
                   help="also run each contender with another checkout's code (e.g. main before a change)")
    p.add_argument("--device", default=None, help="--device for atst-sed detect (e.g. cuda)")
    p.add_argument("--batch-size", type=int, default=None, help="--batch-size for atst-sed detect")
    p.add_argument("--markdown", action="store_true", help="print only the Markdown section (no progress lines)")
    p.add_argument("--note", default="", help="text added after the Input line (what the checkpoint or recording is)")
    p.add_argument("--readme", metavar="NAME",
                   help="also write the section into benchmarks/README.md, between the lines "
                        "'<!-- detect_speed NAME -->' and '<!-- /detect_speed NAME -->'")
    args = p.parse_args(argv)

    if args.contender:
        specs = [(label, value.split()) for label, _, value in (c.partition("=") for c in args.contender)]
    elif args.short_files:
        specs = [("default", [])]
    else:
        specs = LONG_CONTENDERS
    contenders = [Contender(label, list(a)) for label, a in specs]
    if args.compare_tree:
        contenders = [Contender(c.label, c.args, tree) for c in contenders
                      for tree in (args.compare_tree.resolve(), REPO)]
    common = (["--device", args.device] if args.device else []) + (
        ["--batch-size", str(args.batch_size)] if args.batch_size else [])
    with tempfile.TemporaryDirectory(prefix="detect_speed_") as tmp:
        work = Path(tmp)
        checkpoint = args.checkpoint or write_random_checkpoint(work / "frame_base.ckpt")
        if args.short_files:
            inputs, seconds, files = write_clips(work / "clips", args.short_files), None, args.short_files
            what = f"a folder of {files} × 10 s clips (16 kHz mono WAV)"
        else:
            inputs = args.recording or write_recording(work / "recording.wav", args.seconds)
            import soundfile as sf

            seconds, files = sf.info(str(inputs)).duration, None
            what = (f"{inputs.name if args.recording else 'generated noise with tone bursts'}: {seconds:.0f} s, "
                    f"{sf.info(str(inputs)).samplerate} Hz")
        model = str(args.checkpoint) if args.checkpoint else "frame_base, random weights"
        interleave(contenders, args.rounds, inputs, checkpoint, common, work, args.markdown)
        lines = [f"Machine: {machine_line(args.rounds, len(contenders))}.", "",
                 f"Input: {what}; checkpoint: {model}" + (f"; {' '.join(common)}" if common else "") + "."
                 + (f" {args.note}" if args.note else ""), "",
                 table(contenders, seconds, files, frame_seconds_of(checkpoint))]
    print("\n".join(lines))
    if args.readme:
        write_readme_section(args.readme, "\n".join(lines))


if __name__ == "__main__":
    main()

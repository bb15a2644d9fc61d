"""``atst-sed prepare synth|dcase22|custom``: build the offline synthetic corpus, prepare real
DESED, or turn your own labelled audio into a corpus."""

from __future__ import annotations

import argparse
import json


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "prepare",
        help="build the synthetic corpus or prepare DESED (DCASE 2022 layout, 16 kHz)",
        description="Prepare a corpus in the DCASE 2022 Task 4 layout: 16 kHz audio, DESED TSVs, "
        "manifests and a dataset fingerprint (ROOT/fingerprint.json). Safe to rerun.",
    )
    corpora = p.add_subparsers(dest="corpus", metavar="CORPUS", required=True)

    s = corpora.add_parser("synth", help="offline DESED-like synthetic corpus (deterministic by seed)")
    s.add_argument("--root", required=True, help="output folder")
    s.add_argument("--seed", type=int, default=0, help="corpus seed (default 0)")
    s.add_argument("--size", choices=("tiny", "small"), default="small",
                   help="tiny: 84 clips in seconds (tests); small: 1,200 clips (make demo) (default small)")
    s.add_argument("--sources", choices=("synthetic", "real"), default="synthetic",
                   help="synthetic generators (+ real speech from --speech-dir), or real recordings from Debian/PyPI packages")
    s.add_argument("--jobs", type=int, default=None, help="worker processes (default: all cores)")
    s.add_argument("--speech-dir", default=None, help="folder of real speech WAVs to mix into the Speech events (default: none, synthetic babble only)")
    s.add_argument("--cache-dir", default=None, help="--sources real: download cache (default ROOT/.audio_cache)")
    s.set_defaults(func=run_synth)

    d = corpora.add_parser("dcase22", help="real DESED: download (optional), resample to 16 kHz, verify")
    d.add_argument("--root", required=True, help="DESED folder in the DCASE 2022 layout (…/dcase/dataset)")
    d.add_argument("--download", action="store_true",
                   help="download first with the `desed` package (pip install 'desed>=1.3.7'; YouTube + Zenodo)")
    d.add_argument("--no-synthetic", action="store_true", help="with --download: skip the synthetic soundscapes")
    d.add_argument("--strong-real", action="store_true", help="with --download: also the AudioSet strong set")
    d.add_argument("--strong-val-list", metavar="TSV", default=None,
                   help="the AudioSet strong clips that validate (strong_real_val), e.g. ATST-SED's "
                   "train/val_utils/audioset_strong_val.tsv; default: a seeded draw of the same share (11 %%), kept on reruns")
    d.add_argument("--strong-train-list", metavar="TSV", default=None,
                   help="with --strong-val-list: the clips that train (strong_real_train), e.g. ATST-SED's "
                   "audioset_strong_train.tsv; default: every other AudioSet strong clip")
    d.add_argument("--only-verify", action="store_true",
                   help="resample nothing: report missing/unreadable clips and write the fingerprint")
    d.add_argument("--jobs", type=int, default=None, help="parallel workers (default: all cores)")
    d.set_defaults(func=run_dcase22)

    c = corpora.add_parser(
        "custom", help="your own labelled audio (any classes, rates, formats) → the same layout",
        description="Build a corpus from your own data: DESED-format label TSVs (strong: filename onset "
        "offset event_label; weak: filename event_labels) with the audio folders their file names are "
        "relative to. Give any of the parts; train with recipes/custom (see its README).",
    )
    c.add_argument("--root", required=True, help="output corpus folder")
    c.add_argument("--classes", required=True, help="class names: comma-separated, or a text file with one per line")
    for part, what in (("strong", "strong-labelled training clips"), ("weak", "weakly labelled training clips"),
                       ("validation", "strong-labelled validation clips (model selection)"),
                       ("test", "strong-labelled test clips")):
        c.add_argument(f"--{part}", nargs=2, metavar=("TSV", "AUDIO_DIR"), help=what)
    c.add_argument("--unlabeled", metavar="AUDIO_DIR", help="unlabelled clips: every audio file below the folder")
    c.add_argument("--jobs", type=int, default=None, help="parallel workers (default: all cores)")
    c.set_defaults(func=run_custom)


def _progress(description: str):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(TextColumn(description), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), transient=True)
    task = progress.add_task(description, total=None)

    def update(done: int, total: int) -> None:
        progress.update(task, completed=done, total=total)

    return progress, update


def run_synth(args: argparse.Namespace) -> int:
    from atst_sed.data.synth import prepare_synth
    from atst_sed.fileio import check_output_folder

    check_output_folder(args.root, "--root")
    progress, update = _progress(f"prepare synth ({args.size})")
    with progress:
        body = prepare_synth(
            args.root, seed=args.seed, size=args.size, sources=args.sources, jobs=args.jobs,
            speech_dir=args.speech_dir, cache_dir=args.cache_dir, progress=update,
        )
    print(json.dumps(body, indent=2, sort_keys=True))
    return 0


def run_dcase22(args: argparse.Namespace) -> int:
    from atst_sed.data.desed import download_dcase22, prepare_dcase22
    from atst_sed.fileio import check_output_folder

    check_output_folder(args.root, "--root")
    if args.download:
        download_dcase22(args.root, synthetic=not args.no_synthetic, strong_real=args.strong_real,
                         jobs=args.jobs or 3)
    progress, update = _progress("verify dcase22" if args.only_verify else "resample dcase22 → 16 kHz")
    with progress:
        report = prepare_dcase22(args.root, jobs=args.jobs, only_verify=args.only_verify, progress=update,
                                 strong_val_list=args.strong_val_list, strong_train_list=args.strong_train_list)
    print(json.dumps(report, indent=2, sort_keys=True))
    return 0


def run_custom(args: argparse.Namespace) -> int:
    from atst_sed.data.custom import prepare_custom, read_classes
    from atst_sed.fileio import check_output_folder

    check_output_folder(args.root, "--root")
    parts = {part: tuple(getattr(args, part)) for part in ("strong", "weak", "validation", "test") if getattr(args, part)}
    if args.unlabeled:
        parts["unlabeled"] = (None, args.unlabeled)
    progress, update = _progress("prepare custom → 16 kHz")
    with progress:
        report = prepare_custom(args.root, read_classes(args.classes), parts, jobs=args.jobs, progress=update)
    print(json.dumps(report, indent=2, sort_keys=True))
    return 0

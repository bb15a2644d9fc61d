"""``atst-sed prepare synth|dcase22|custom``: build the offline synthetic corpus, prepare real
DESED, or turn your own labelled audio into a corpus."""

from __future__ import annotations

import argparse
import json


SYNTH_DESCRIPTION = """\
Build an offline, DESED-like synthetic corpus in the DCASE 2022 layout: strong-labelled synthetic
soundscapes (train and validation), weakly labelled and unlabelled clips and a strong-labelled test
split (--size small: 400 / 100 / 200 / 400 / 100 clips), 10 s at 16 kHz, the 10 DESED classes. Every class has its own spectro-temporal
signature; events last 0.3-10 s, overlap, and sit in background noise. Deterministic for a --seed;
nothing is downloaded (--sources real takes recordings from Debian packages instead). Writes
manifests/, fingerprint.json and a README.md describing the corpus; safe to rerun."""

SYNTH_EPILOG = """\
examples:
  atst-sed prepare synth --root data/synth --size small          # 1,200 clips, what make demo uses
  atst-sed prepare synth --root data/synth_tiny --size tiny --seed 1
  atst-sed prepare synth --root data/synth --speech-dir my_speech/   # real speech in the Speech events
  atst-sed prepare synth --root data/synth_real --sources real       # needs apt (Debian sound packages)
"""

DCASE22_DESCRIPTION = """\
Prepare real DESED (DCASE 2022 Task 4) in ROOT: optionally download it first with the `desed`
package (YouTube clips + Zenodo soundscapes; pip install 'desed>=1.3.7'), then resample every clip to
16 kHz mono into the *_16k folders, and verify: clips named in the metadata but absent or unreadable
go to ROOT/missing_files.tsv (YouTube clips disappear over time), the per-set counts and a hash of
the whole corpus to ROOT/fingerprint.json, which every training run records. Safe to rerun: finished
clips are skipped."""

DCASE22_EPILOG = """\
examples:
  atst-sed prepare dcase22 --root data/dcase/dataset --download --jobs 8
  atst-sed prepare dcase22 --root data/dcase/dataset                  # already downloaded: resample + verify
  atst-sed prepare dcase22 --root data/dcase/dataset --only-verify    # report + missing_files.tsv + fingerprint.json
"""

CUSTOM_DESCRIPTION = """\
Build a corpus from your own data: DESED-format label TSVs (strong: filename onset offset
event_label; weak: filename event_labels) with the audio folders their file names are relative to,
and your class list. Audio of any rate, channel count, format or sub-folder is converted to 16 kHz
mono in the same DCASE 2022 layout as the other corpora. Give any of the parts; train with
recipes/custom (see its README)."""

CUSTOM_EPILOG = """\
examples:
  atst-sed prepare custom --root data/mine --classes knock,kettle \\
      --strong strong.tsv audio/ --validation val.tsv audio/ --test test.tsv audio/
  atst-sed prepare custom --root data/mine --classes classes.txt --weak weak.tsv clips/ --unlabeled more_clips/
"""


def register(subparsers) -> None:
    from atst_sed.cli.options import add_jobs

    p = subparsers.add_parser(
        "prepare",
        help="build the synthetic corpus, prepare DESED or your own data (DCASE 2022 layout, 16 kHz)",
        description="Prepare a corpus in the DCASE 2022 Task 4 layout: 16 kHz audio, DESED TSVs, "
        "manifests and a dataset fingerprint (ROOT/fingerprint.json). Safe to rerun. "
        "'atst-sed prepare CORPUS --help' describes each corpus.",
    )
    corpora = p.add_subparsers(dest="corpus", metavar="CORPUS", required=True)
    raw = argparse.RawDescriptionHelpFormatter

    s = corpora.add_parser("synth", help="offline DESED-like synthetic corpus (deterministic by seed)",
                           description=SYNTH_DESCRIPTION, epilog=SYNTH_EPILOG, formatter_class=raw)
    s.add_argument("--root", required=True, metavar="DIR", help="output corpus folder")
    s.add_argument("--seed", type=int, default=0, help="corpus seed (default 0)")
    s.add_argument("--size", choices=("tiny", "small"), default="small",
                   help="tiny: 84 clips in seconds (tests); small: 1,200 clips (make demo) (default small)")
    s.add_argument("--sources", choices=("synthetic", "real"), default="synthetic",
                   help="synthetic generators (+ real speech from --speech-dir), or real recordings from Debian/PyPI packages")
    add_jobs(s)
    s.add_argument("--speech-dir", default=None, metavar="DIR",
                   help="folder of real speech WAVs to mix into the Speech events (default: none, synthetic babble only)")
    s.add_argument("--cache-dir", default=None, metavar="DIR", help="--sources real: download cache (default ROOT/.audio_cache)")
    s.set_defaults(func=run_synth)

    d = corpora.add_parser("dcase22", help="real DESED: download (optional), resample to 16 kHz, verify",
                           description=DCASE22_DESCRIPTION, epilog=DCASE22_EPILOG, formatter_class=raw)
    d.add_argument("--root", required=True, metavar="DIR", help="DESED folder in the DCASE 2022 layout (…/dcase/dataset)")
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
    add_jobs(d, "all CPU cores for resampling; 3 for --download")
    d.set_defaults(func=run_dcase22)

    c = corpora.add_parser("custom", help="your own labelled audio (any classes, rates, formats) → the same layout",
                           description=CUSTOM_DESCRIPTION, epilog=CUSTOM_EPILOG, formatter_class=raw)
    c.add_argument("--root", required=True, metavar="DIR", help="output corpus folder")
    c.add_argument("--classes", required=True, help="class names: comma-separated, or a text file with one per line")
    for part, what in (("strong", "strong-labelled training clips"), ("weak", "weakly labelled training clips"),
                       ("validation", "strong-labelled validation clips (model selection)"),
                       ("test", "strong-labelled test clips")):
        c.add_argument(f"--{part}", nargs=2, metavar=("TSV", "AUDIO_DIR"), help=what)
    c.add_argument("--unlabeled", metavar="AUDIO_DIR", help="unlabelled clips: every audio file below the folder")
    add_jobs(c)
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

"""``atst-sed pretrain RECIPE_OR_CONFIG [key=value ...] [--resume]``: self-supervised pretraining."""

from __future__ import annotations

import argparse


EPILOG = """\
examples:
  atst-sed pretrain frame_base data.source=/data/audioset -o runs/frame_base
  atst-sed pretrain runs/frame_base/config.yaml --resume
  atst-sed pretrain frame_base data.source=/data/mine --init atstframe_base.ckpt -o runs/mine
  atst-sed pretrain mini data.source=data/synth/audio/train/unlabel_in_domain_16k optim.max_steps=20 --print-config

Progress: a bar on a terminal; in a file or a pipe one log line every trainer.log_every_n_steps steps
(step, loss, steps and clips per second, time elapsed).
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    from atst_sed.cli.options import add_overrides

    p = subparsers.add_parser(
        "pretrain",
        help="self-supervised ATST-Frame / ATST-Clip pretraining on unlabelled audio",
        description=(
            "Pretrain ATST-Frame or ATST-Clip (BYOL teacher-student). RECIPE_OR_CONFIG is a YAML file, a "
            "recipe folder with pretrain.yaml, or a name from configs/pretrain/ (frame_small, frame_base, "
            "clip_small, clip_base, mini). Overrides: key=value, e.g. data.source=/data/audioset "
            "data.batch_size=144 trainer.devices=8, mixed with the options in any order. The EMA teacher "
            "encoder is written to OUTPUT_DIR/teacher_encoder.ckpt (loadable by `atst-sed train` and "
            "`atst-sed embed`). Many GPUs / nodes: launch the same command with torchrun or srun "
            "(configs/pretrain/README.md)."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("config", metavar="RECIPE_OR_CONFIG", help="YAML config, recipe folder or configs/pretrain name")
    add_overrides(p, _add_options)
    p.set_defaults(func=run)


def _add_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output-dir", metavar="DIR", help="run folder (overrides output_dir)")
    p.add_argument("--init", metavar="CKPT", help="initialise from a checkpoint (overrides init_checkpoint)")
    p.add_argument("--resume", action="store_true", help="continue the run in the run folder from checkpoints/last.ckpt")
    p.add_argument("--print-config", action="store_true", help="print the resolved configuration (YAML) and exit")


def run(args: argparse.Namespace) -> int:
    import sys

    import yaml

    from atst_sed.cli.options import split_overrides
    from atst_sed.config import to_dict
    from atst_sed.fileio import check_output_folder
    from atst_sed.training.pretrain_config import load_pretrain_config
    from atst_sed.training.pretrain_run import run_pretraining

    overrides = list(split_overrides(args))
    if args.output_dir:
        overrides.append(f"output_dir={args.output_dir}")
    if args.init:
        overrides.append(f"init_checkpoint={args.init}")
    config = load_pretrain_config(args.config, overrides)
    if args.print_config:
        sys.stdout.write(yaml.safe_dump(to_dict(config), sort_keys=False))
        return 0
    check_output_folder(config.output_dir, "-o/--output-dir")
    out = run_pretraining(config, resume=args.resume)
    if out.is_file():
        print(f"teacher encoder: {out}")
    return 0

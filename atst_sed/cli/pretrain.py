"""``atst-sed pretrain RECIPE_OR_CONFIG [key=value ...] [--resume]``: self-supervised pretraining."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "pretrain",
        help="self-supervised ATST-Frame / ATST-Clip pretraining on unlabelled audio",
        description=(
            "Pretrain ATST-Frame or ATST-Clip (BYOL teacher-student). RECIPE_OR_CONFIG is a YAML file, a "
            "recipe folder with pretrain.yaml, or a name from configs/pretrain/ (frame_small, frame_base, "
            "clip_small, clip_base, mini). Overrides: key=value, e.g. data.source=/data/audioset "
            "data.batch_size=144 trainer.devices=8. The EMA teacher encoder is written to "
            "OUTPUT_DIR/teacher_encoder.ckpt (loadable by `atst-sed train` and `atst-sed embed`). "
            "Many GPUs / nodes: launch the same command with torchrun or srun (configs/pretrain/README.md)."
        ),
    )
    p.add_argument("config", metavar="RECIPE_OR_CONFIG", help="YAML config, recipe folder or configs/pretrain name")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides (dotted keys)")
    p.add_argument("-o", "--output-dir", help="run folder (overrides output_dir)")
    p.add_argument("--init", metavar="CKPT", help="initialise from a checkpoint (overrides init_checkpoint)")
    p.add_argument("--resume", action="store_true", help="continue the run in the run folder from checkpoints/last.ckpt")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from atst_sed.fileio import check_output_folder
    from atst_sed.training.pretrain_config import load_pretrain_config
    from atst_sed.training.pretrain_run import run_pretraining

    overrides = list(args.overrides)
    if args.output_dir:
        overrides.append(f"output_dir={args.output_dir}")
    if args.init:
        overrides.append(f"init_checkpoint={args.init}")
    config = load_pretrain_config(args.config, overrides)
    check_output_folder(config.output_dir, "-o/--output-dir")
    out = run_pretraining(config, resume=args.resume)
    if out.is_file():
        print(f"teacher encoder: {out}")
    return 0

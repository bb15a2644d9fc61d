"""``atst-sed train RECIPE [--stage NAME] [key=value ...] [--resume] [--root-dir RUNS] [--print-config]``."""

from __future__ import annotations

import argparse

EPILOG = """\
examples:
  atst-sed train recipes/mini data.root=data/synth                  # every stage
  atst-sed train dcase22 --stage distill_c2f [overrides]            # one stage (earlier ones done)
  atst-sed train dcase22 --resume [overrides]                       # continue an interrupted run
  atst-sed train mini optim.lr=1e-3 --print-config                  # the resolved configuration

RECIPE is a recipe folder (recipe.yaml + README.md), a YAML file, or the name of a shipped recipe
(mini, mini_probe, dcase22, atst_sed, atst_sed_mini, custom). A recipe holds only its differences from
the defaults (configs/finetune/default.yaml documents them); a value written ??? must be given on the
command line. Mappings that are one value each (data.batch_sizes, optim.rates, validation.objective)
are replaced whole by a stage's overrides or the command line, never merged key by key.
Overrides use dotted keys, values in YAML syntax (1e-3 is a number), e.g.
  atst-sed train mini trainer.max_epochs=3 data.root=demo/corpus optim.lr=1e-3
  atst-sed train dcase22 models.frame.encoder=ckpts/atstframe_base.ckpt \\
      models.clip.encoder=ckpts/atst_clip_base.ckpt data.root=data/dcase
Precedence: defaults < recipe < a stage's overrides < command line (the log says which stage values a
command-line key replaced); stages.NAME.overrides.KEY=VALUE sets a value for one stage only.
The run folder is ROOT_DIR/<name> (name: the recipe folder's name unless overridden with name=...):
config.yaml, manifest.json, <stage>/{checkpoints/best.ckpt,last.ckpt,lightning/last.ckpt,metrics.json,
tensorboard/,csv/,test/}, test/<student|teacher>/. lightning/last.ckpt is written after every epoch:
--resume continues a run folder from there (finished stages are skipped; an interrupted stage repeats
only the epoch it was in, and gives the same result as an uninterrupted run). An existing run folder
needs --resume or --stage NAME (reruns that stage from scratch; with --resume it continues it); a folder
left by a command that failed before training is reused.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    from atst_sed.cli.options import add_overrides

    p = subparsers.add_parser(
        "train",
        help="fine-tune / distil SED models from a recipe (stages, run folder, resume)",
        description="Fine-tune ATST-Frame / ATST-Clip SED models from a recipe, distil them (C2F / F2C) and test "
                    "them, stage by stage, into one run folder (checkpoints, metrics, DCASE 2022 test outputs).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("recipe", metavar="RECIPE", help="recipe folder, YAML file, or shipped recipe name (mini, dcase22, …)")
    add_overrides(p, _add_options)
    p.set_defaults(func=run)


def _add_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--stage", metavar="NAME", help="run only this stage (earlier stages must be finished)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run in its existing folder")
    p.add_argument("--root-dir", default="runs", metavar="RUNS", help="where run folders go (default: runs)")
    p.add_argument("--run-dir", metavar="DIR", help="exact run folder (overrides --root-dir/<name>)")
    p.add_argument("--print-config", action="store_true", help="print the resolved configuration (YAML) and exit")


def run(args: argparse.Namespace) -> int:
    import sys
    from pathlib import Path

    import yaml
    from rich.console import Console
    from rich.table import Table

    from atst_sed.cli.options import split_overrides
    from atst_sed.config import to_dict
    from atst_sed.fileio import check_output_folder
    from atst_sed.training.run import Run, run_config_for_folder, summary_rows
    from atst_sed.training.run_config import load_recipe
    from atst_sed.training.trainer import is_main_process

    split_overrides(args)
    config = load_recipe(args.recipe, args.overrides)
    run_dir = Path(args.run_dir) if args.run_dir else Path(args.root_dir) / config.name
    check_output_folder(*((args.run_dir, "--run-dir") if args.run_dir else (args.root_dir, "--root-dir")))
    config = run_config_for_folder(config, run_dir, args.overrides, args.resume,
                                   allow_existing=args.stage is not None or args.print_config)
    if args.print_config:
        sys.stdout.write(yaml.safe_dump(to_dict(config), sort_keys=False))
        return 0
    results = Run(config, run_dir).run(only=args.stage, resume=args.resume)

    rows = summary_rows(results)
    if rows and is_main_process():
        table = Table(title=f"PSDS on the test set — {run_dir}")
        for col in ("stage", "model", "PSDS1", "PSDS2", "PSDS1 (sed_scores_eval)", "PSDS2 (sed_scores_eval)"):
            table.add_column(col, justify="left" if col in ("stage", "model") else "right")
        for stage, role, *values in rows:
            table.add_row(stage, role, *("-" if v is None else f"{v:.3f}" for v in values))
        Console().print(table)
    return 0

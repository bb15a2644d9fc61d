"""``atst-sed models``: the named published models, what they are and whether they are cached."""

from __future__ import annotations

import argparse
import sys


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "models",
        help="list the named published models (family, classes, reported PSDS, cached or not)",
        description=(
            "The published models atst-sed can use by name, e.g. `--checkpoint atst-sed:stage2`.\n"
            "A model is downloaded once into the cache ($ATST_SED_CACHE, default the user cache\n"
            "folder); its SHA-256 is recorded then and checked on every later use. Offline, put the\n"
            "file by hand at the path that --paths shows."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--paths", action="store_true", help="also show each model's URL and its path in the cache")
    p.set_defaults(func=run)


def _psds(reported: dict) -> str:
    if "psds1" not in reported:
        return "–"
    return f"{reported['psds1']:.3f} / {reported['psds2']:.3f}"


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from atst_sed.hub import REGISTRY, cache_dir, cached_path, is_cached

    table = Table(title=f"Published models (cache: {cache_dir()})",
                  caption="PSDS1 / PSDS2 as reported by the authors (DESED dev-test); role: the model used by default")
    for header in ("name", "family", "kind", "role", "classes", "PSDS1 / PSDS2", "cached"):
        table.add_column(header, justify="right" if header == "classes" else "left")
    if args.paths:
        table.add_column("URL → cache path")
    for model in REGISTRY.values():
        row = [model.name, model.family, model.kind, model.role or "–",
               str(model.n_classes) if model.n_classes else "–", _psds(model.reported),
               "yes" if is_cached(model.name) else "no"]
        if args.paths:
            row.append(f"{model.checkpoint.url} → {cached_path(model, model.checkpoint)}")
        table.add_row(*row)
    Console(width=None if sys.stdout.isatty() else 200).print(table)
    return 0

"""``atst-sed`` entry point: dispatches to one module per verb (``atst_sed.cli.<verb>``).

Each verb module defines ``register(subparsers)`` (adding its parser, with ``func`` set to a
callable taking the parsed args and returning an exit code).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from atst_sed.version import __version__
from atst_sed.errors import AtstSedError

VERBS = ("prepare", "pretrain", "train", "embed", "detect", "evaluate", "report", "package", "models")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="atst-sed",
        description="Sound event detection with ATST-Frame / ATST-Clip (DCASE 2022 Task 4).",
    )
    parser.add_argument("--version", action="version", version=f"atst-sed {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for verb in VERBS:
        try:
            module = importlib.import_module(f"atst_sed.cli.{verb}")
        except ModuleNotFoundError as err:
            if err.name == f"atst_sed.cli.{verb}":
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 0 if args.command is None else 2
    try:
        return int(args.func(args) or 0)
    except AtstSedError as err:
        print(f"atst-sed {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"atst-sed {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""Options that several verbs share, defined once so that they read the same in every ``--help``:
the same flag, metavar and wording for the same thing (checked by tests/test_cli_consistency.py)."""

from __future__ import annotations

import argparse
from collections.abc import Callable

DEVICES = ("auto", "cpu", "cuda")


def positive_int(text: str) -> int:
    """An argparse type: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def add_checkpoint(parser: argparse.ArgumentParser, what: str) -> None:
    """``-c/--checkpoint CKPT`` (required); ``what``: which checkpoints the verb takes."""
    parser.add_argument("-c", "--checkpoint", required=True, metavar="CKPT", help=what)


def add_device(parser: argparse.ArgumentParser) -> None:
    """``--device auto|cpu|cuda``."""
    parser.add_argument("--device", choices=DEVICES, default="auto",
                        help="where the model runs: auto = cuda when available, else cpu (default auto)")


def add_role(parser: argparse.ArgumentParser) -> None:
    """``--role teacher|student``: which model of a published ATST-SED file."""
    parser.add_argument("--role", choices=("teacher", "student"), default=None,
                        help="which model of a published ATST-SED file (default teacher, as the official "
                             "test and inference use)")


def add_variant(parser: argparse.ArgumentParser) -> None:
    """``--variant frame|clip``: how to read a published checkpoint."""
    parser.add_argument(
        "--variant", choices=("frame", "clip"), default=None,
        help="read a published checkpoint as ATST-Frame or ATST-Clip (default: what the file says, else the "
             "official loaders' rule; the choice is logged; an override that contradicts the file is an error)",
    )


def add_jobs(parser: argparse.ArgumentParser, default: str = "all CPU cores") -> None:
    """``--jobs N``: worker processes."""
    parser.add_argument("--jobs", type=positive_int, default=None, metavar="N",
                        help=f"worker processes (default: {default})")


def add_overrides(parser: argparse.ArgumentParser, add_options: Callable[[argparse.ArgumentParser], None]) -> None:
    """``add_options(parser)``, then ``KEY=VALUE`` config overrides that may be mixed with those options
    in any order after the positional argument (argparse alone stops at the first override):
    :func:`split_overrides` sorts them out after parsing."""
    add_options(parser)
    parser.add_argument("overrides", nargs=argparse.REMAINDER, metavar="KEY=VALUE",
                        help="config overrides (dotted keys, YAML values), e.g. trainer.max_epochs=5")
    parser.set_defaults(_add_options=add_options, _prog=parser.prog)


def split_overrides(args: argparse.Namespace) -> list[str]:
    """The overrides of a parser built with :func:`add_overrides`; options that came after the first
    override are parsed out of them into ``args``. Raises :class:`AtstSedError` for an item that is
    neither an option nor ``KEY=VALUE``."""
    from atst_sed.errors import AtstSedError

    extra = argparse.ArgumentParser(prog=args._prog, add_help=False)
    args._add_options(extra)
    defaults = extra.parse_args([])
    parsed, overrides = extra.parse_known_args(args.overrides)
    for key, value in vars(parsed).items():
        if value != getattr(defaults, key):
            setattr(args, key, value)
    bad = [o for o in overrides if "=" not in o or o.startswith("-")]
    if bad:
        raise AtstSedError(f"override {bad[0]!r} is not KEY=VALUE")
    args.overrides = overrides
    return overrides

"""Every verb's ``--help`` reads as one tool: each command says what it does and shows examples, and the
same thing has the same option everywhere (flag, short flag, metavar, wording)."""

from __future__ import annotations

import argparse
from collections import defaultdict

import pytest

from atst_sed.cli.main import build_parser


def commands() -> dict[str, argparse.ArgumentParser]:
    """``{"atst-sed detect": parser, "atst-sed prepare synth": parser, …}``: every parser that runs something."""
    found: dict[str, argparse.ArgumentParser] = {}

    def walk(parser: argparse.ArgumentParser, name: str) -> None:
        if parser.get_default("func") is not None:
            found[name] = parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub, child in action.choices.items():
                    walk(child, f"{name} {sub}")

    walk(build_parser(), "atst-sed")
    return found


COMMANDS = commands()

#: the same thing, the same option: dest → (flags, metavar)
SHARED = {
    "checkpoint": (("-c", "--checkpoint"), "CKPT"),
    "output": (("-o", "--output"), None),  # the metavar names the kind of file
    "device": (("--device",), None),
    "jobs": (("--jobs",), "N"),
    "variant": (("--variant",), None),
    "batch_size": (("--batch-size",), "N"),
    "root": (("--root",), "DIR"),
}


def test_every_command_is_reached():
    assert set(COMMANDS) == {
        "atst-sed prepare synth", "atst-sed prepare dcase22", "atst-sed prepare custom", "atst-sed pretrain",
        "atst-sed train", "atst-sed embed", "atst-sed detect", "atst-sed evaluate", "atst-sed report",
        "atst-sed package", "atst-sed package validate", "atst-sed models",
    }


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_describes_itself_with_examples(name):
    parser = COMMANDS[name]
    assert parser.description and len(parser.description.split()) >= 12, name
    text = parser.format_help()
    assert "examples:" in text or "example:" in text, name
    # the examples are commands of this very verb
    assert f"  {name} " in text, name


def test_the_same_thing_has_the_same_option_in_every_command():
    by_dest: dict[str, list[tuple[str, argparse.Action]]] = defaultdict(list)
    for name, parser in COMMANDS.items():
        for action in parser._actions:
            if action.option_strings and action.dest != "help":
                by_dest[action.dest].append((name, action))
    for dest, (flags, metavar) in SHARED.items():
        assert by_dest[dest], dest
        for name, action in by_dest[dest]:
            assert tuple(action.option_strings) == flags, (name, dest, action.option_strings)
            if metavar is not None:
                assert action.metavar == metavar, (name, dest, action.metavar)
    for dest in ("device", "variant", "jobs"):  # not only the flag: the same choices and words
        helps = {(tuple(a.choices or ()), a.help.split(" (default")[0]) for _, a in by_dest[dest]}
        assert len(helps) == 1, (dest, helps)
    assert {n for n, _ in by_dest["checkpoint"]} == {"atst-sed embed", "atst-sed detect"}
    assert {n for n, _ in by_dest["device"]} == {"atst-sed embed", "atst-sed detect"}
    # any other option that two commands share is spelled alike too
    for dest, uses in by_dest.items():
        assert len({tuple(a.option_strings) for _, a in uses}) == 1, (dest, [(n, a.option_strings) for n, a in uses])


@pytest.mark.parametrize("verb", ["train", "pretrain"])
def test_config_overrides_and_options_mix_in_any_order(verb, capsys):
    from atst_sed.cli.main import main

    target = "mini"
    assert main([verb, target, "seed=7", "--print-config", "name=x" if verb == "train" else "optim.max_steps=9"]) == 0
    printed = capsys.readouterr().out
    assert "seed: 7" in printed
    assert ("name: x" if verb == "train" else "max_steps: 9") in printed

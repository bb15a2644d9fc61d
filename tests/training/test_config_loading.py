"""Loading a run's configuration: numbers as users write them, errors that name the command line,
values a recipe requires, the precedence of stage overrides, recipes and configs by name."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import yaml

from atst_sed.cli.main import main
from atst_sed.config import read_yaml, to_dict, write_yaml
from atst_sed.errors import AtstSedError
from atst_sed.training.pretrain_config import load_pretrain_config
from atst_sed.training.run_config import load_recipe

REPO = Path(__file__).resolve().parents[2]
MINI = REPO / "recipes" / "mini"


def write_recipe(folder: Path, recipe: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "recipe.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
    return folder


def test_command_line_numbers_are_read_as_written():
    cfg = load_recipe(MINI, ["optim.lr=1e-3", "optim.final_lr=5E-7", "optim.warmup_epochs=.5", "data.epoch_length=7"])
    assert cfg.optim.lr == 0.001 and cfg.optim.final_lr == 5e-7 and cfg.optim.warmup_epochs == 0.5
    assert cfg.data.epoch_length == 7


def test_a_str_field_takes_the_text_as_typed():
    assert load_recipe(MINI, ["name=2024"]).name == "2024"
    assert load_recipe(MINI, ["name=1e3"]).name == "1e3"  # not "1000.0"
    assert load_recipe(MINI, ["trainer.devices=2"]).trainer.devices == 2  # int | str: a number stays a number


def test_yaml_files_read_exponents_as_numbers(tmp_path):
    folder = write_recipe(tmp_path / "r", {})
    (folder / "recipe.yaml").write_text("optim: {lr: 1e-3, final_lr: 2e-6}\n")
    cfg = load_recipe(folder)
    assert cfg.optim.lr == 0.001 and cfg.optim.final_lr == 2e-6


@pytest.mark.parametrize(
    "item, message",
    [
        ("optim.lr=abc", "command line: optim.lr=abc: expected float, got 'abc'"),
        ("data.epoch_length=many", "command line: data.epoch_length=many: expected int or null"),
        ("optim.lrr=1", "command line: optim.lrr=1: unknown key optim.lrr; did you mean optim.lr?"),
        ("optimm.lr=1", "command line: optimm.lr=1: unknown key optimm; did you mean optim?"),
        ("trainer.max_epoch=3", "did you mean trainer.max_epochs?"),
        ("data.weak_val_fraction=2", "command line: data.weak_val_fraction=2: data.weak_val_fraction must be in [0, 1)"),
        ("stages.finetune_clip.overrides.optim.lr=abc", "command line: stages.finetune_clip.overrides.optim.lr=abc: expected float"),
        ("optim.lr=[1,", "command line: optim.lr=[1,: not a YAML value"),
    ],
)
def test_bad_command_line_values_are_one_line_naming_the_item_not_the_recipe(item, message, capsys):
    assert main(["train", str(MINI), item, "--print-config"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("atst-sed train: error: ") and message in err
    assert len(err.splitlines()) == 1 and "recipe.yaml" not in err


def test_bad_recipe_values_name_the_recipe_file_and_key(tmp_path):
    folder = write_recipe(tmp_path / "r", {"optim": {"lr": "fast"}, "trainer": {"max_epoch": 3}})
    with pytest.raises(AtstSedError, match=r"r/recipe.yaml: optim.lr: expected float, got 'fast'"):
        load_recipe(folder)
    folder = write_recipe(tmp_path / "r", {"stages": {"s": {"kind": "finetune", "model": "frame", "overrides": {"optim": {"lr": "x"}}}}})
    with pytest.raises(AtstSedError, match=r"recipe.yaml: stages.s.overrides.optim.lr: expected float"):
        load_recipe(folder)  # at load time, not when the stage starts
    folder = write_recipe(tmp_path / "r", {"trainer": {"max_epoch": 3}})
    with pytest.raises(AtstSedError, match=r"recipe.yaml: trainer.max_epoch: unknown key trainer.max_epoch; did you mean trainer.max_epochs\?"):
        load_recipe(folder)


def test_values_a_recipe_marks_with_question_marks_must_be_given_at_load_time(tmp_path, capsys):
    folder = write_recipe(tmp_path / "needs", {"models": {"frame": {"encoder": "???"}, "clip": {"encoder": "???"}},
                                               "stages": {"finetune_frame": {"kind": "finetune", "model": "frame"}}})
    assert main(["train", str(folder), "--root-dir", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"atst-sed train: error: {folder / 'recipe.yaml'}: models.frame.encoder must be given "
                   "(and models.clip.encoder): add models.frame.encoder=... to the command line")
    assert not (tmp_path / "runs").exists()
    cfg = load_recipe(folder, ["models.frame.encoder=frame_tiny", "models.clip.encoder=clip_tiny"])
    assert cfg.models["frame"].encoder == "frame_tiny"
    # the shipped recipes whose encoders are the user's files say so
    for name, keys in (("dcase22", "models.frame.encoder must be given (and models.clip.encoder)"), ("custom", "models.frame.encoder must be given")):
        with pytest.raises(AtstSedError, match=keys.replace("(", r"\(").replace(")", r"\)")):
            load_recipe(REPO / "recipes" / name)


def test_the_command_line_outranks_a_stage_override_and_says_so(caplog):
    # recipes/mini: finetune_clip overrides data.batch_size=16, data.epoch_length=30, optim.lr=0.005
    base = load_recipe(MINI)
    assert base.stages["finetune_clip"].overrides["data"] == {"batch_size": 16, "epoch_length": 30}
    with caplog.at_level(logging.INFO, logger="atst_sed.training.run_config"):
        cfg = load_recipe(MINI, ["data.epoch_length=2"])
    assert cfg.data.epoch_length == 2
    assert cfg.stages["finetune_clip"].overrides["data"] == {"batch_size": 16}  # the stage's other values stay
    assert "stage finetune_clip: the command line's data.epoch_length=2 replaces the stage's override data.epoch_length=30" in caplog.text
    # addressing the stage sets its value only
    cfg = load_recipe(MINI, ["data.epoch_length=2", "stages.finetune_clip.overrides.data.epoch_length=5"])
    assert cfg.data.epoch_length == 2 and cfg.stages["finetune_clip"].overrides["data"] == {"batch_size": 16, "epoch_length": 5}
    cfg = load_recipe(MINI, ["optim.lr=1e-3"])
    assert cfg.stages["finetune_clip"].overrides == {"data": {"batch_size": 16, "epoch_length": 30}}
    assert cfg.stages["distill_c2f"].overrides == {}


def test_the_stage_config_follows_the_precedence_default_recipe_stage_command_line():
    from atst_sed.training.run_config import stage_config

    cfg = load_recipe(MINI, ["data.epoch_length=2"])
    clip = stage_config(cfg, "finetune_clip")
    assert clip.data.epoch_length == 2  # command line
    assert clip.data.batch_size == 16  # the stage's own override
    assert clip.optim.lr == 0.005 and clip.optim.name == "adamw"  # stage, recipe
    assert clip.optim.momentum == 0.9  # default


def test_recipes_and_pretraining_configs_by_bare_name_or_a_list_of_what_exists(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # outside the repository: the shipped copies are found
    assert load_recipe("mini").name == "mini" and load_recipe("mini") == load_recipe(MINI)
    assert load_pretrain_config("mini").model.encoder == "frame_tiny"
    assert main(["train", "mnii"]) == 2
    err = capsys.readouterr().err
    assert "mnii: no such recipe" in err and "custom, dcase22, mini, mini_probe" in err
    assert main(["pretrain", "frame_bsae"]) == 2
    err = capsys.readouterr().err
    assert "frame_bsae: no such pretraining config" in err and "clip_base, clip_small, frame_base, frame_small, mini" in err


def test_print_config_gives_the_resolved_configuration(capsys):
    assert main(["train", "mini", "optim.lr=1e-3", "--print-config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["optim"]["lr"] == 0.001 and printed["name"] == "mini"
    assert printed == to_dict(load_recipe(MINI, ["optim.lr=1e-3"]))


def test_saved_run_config_reads_back_to_the_same_config(tmp_path):
    from atst_sed.training.run_config import resolve_config

    cfg = load_recipe(MINI, ["name=2024", "optim.lr=1e-3", "data.epoch_length=2"])
    write_yaml(tmp_path / "config.yaml", cfg)
    assert resolve_config(read_yaml(tmp_path / "config.yaml"), [], "config.yaml") == cfg

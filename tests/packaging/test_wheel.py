"""An installed wheel behaves like the clone: it ships the recipes and the pretraining configs (one
copy of each, the repository's top-level folders), and resolves the same configurations from any
working directory. Built offline with the environment's setuptools (``pip install -e '.[dev]'``)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from atst_sed.config import to_dict
from atst_sed.training.pretrain_config import load_pretrain_config
from atst_sed.training.run_config import load_recipe

REPO = Path(__file__).resolve().parents[2]
SOURCES = ["pyproject.toml", "README.md", "atst_sed", "configs", "recipes"]  # what building the wheel reads
PRETRAIN_CONFIGS = ["clip_base", "clip_small", "frame_base", "frame_small", "mini"]
RECIPES = {"mini": [], "mini_probe": ["optim.lr=1e-3"], "dcase22": ["models.frame.encoder=a.ckpt", "models.clip.encoder=b.ckpt"]}
# what the installed package resolves, from wherever it runs: JSON on stdout
DUMP = """
import json, sys
import atst_sed
from atst_sed.config import to_dict
from atst_sed.training.pretrain_config import load_pretrain_config
from atst_sed.training.run_config import load_recipe
recipes, pretrain = json.loads(sys.argv[1]), sys.argv[2:]
print(json.dumps({"module": atst_sed.__file__,
                  "recipes": {name: to_dict(load_recipe(name, over)) for name, over in recipes.items()},
                  "pretrain": {name: to_dict(load_pretrain_config(name)) for name in pretrain}}))
"""


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """``pip wheel`` of a copy of the sources, installed with ``pip install --target`` (no dependencies)."""
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "source"
    source.mkdir()
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(REPO / name, source / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    built = subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(tmp / "dist"), str(source)],
                           capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    (wheel,) = (tmp / "dist").glob("atst_sed-*.whl")
    target = tmp / "site"
    done = subprocess.run([*pip, "install", "--no-deps", "--no-index", "--target", str(target), str(wheel)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return target


def from_wheel(target: Path, args: list[str], cwd: Path) -> str:
    """Run ``args`` with the wheel's atst_sed first on the path (not this checkout), from ``cwd``."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(PYTHONPATH=str(target), PYTHONNOUSERSITE="1", PYTHONWARNINGS="ignore")
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def shipped_files(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() and p.suffix in (".yaml", ".md", ".sh", ".py")}


def test_the_wheel_ships_every_module_recipe_and_config_once(installed):
    package = installed / "atst_sed"
    modules = {p.relative_to(package).as_posix() for p in package.rglob("*.py")}
    assert {m for m in modules if not m.startswith(("recipes/", "configs/"))} == {
        p.relative_to(REPO / "atst_sed").as_posix() for p in (REPO / "atst_sed").rglob("*.py")}
    assert shipped_files(package / "recipes") == shipped_files(REPO / "recipes")
    assert shipped_files(package / "configs") == shipped_files(REPO / "configs")
    for name in shipped_files(REPO / "recipes"):
        assert (package / "recipes" / name).read_bytes() == (REPO / "recipes" / name).read_bytes(), name
    table = "resources/audioset_strong_classes.tsv"  # AudioSet-strong names offline, with their attribution
    assert (package / table).read_bytes() == (REPO / "atst_sed" / table).read_bytes()


def test_the_installed_wheel_resolves_the_same_configs_as_the_clone(installed, tmp_path, monkeypatch):
    elsewhere = tmp_path / "elsewhere"  # no recipes/ or configs/ here: only the installed copies can answer
    elsewhere.mkdir()
    dumped = json.loads(from_wheel(installed, [sys.executable, "-c", DUMP, json.dumps(RECIPES), *PRETRAIN_CONFIGS], elsewhere))
    assert Path(dumped["module"]).is_relative_to(installed), f"atst_sed imported from {dumped['module']}"
    assert dumped["recipes"] == {name: to_dict(load_recipe(REPO / "recipes" / name, over)) for name, over in RECIPES.items()}
    monkeypatch.chdir(elsewhere)
    assert dumped["pretrain"] == {name: to_dict(load_pretrain_config(name)) for name in PRETRAIN_CONFIGS}
    # the console script, by bare recipe name
    printed = from_wheel(installed, [sys.executable, str(installed / "bin" / "atst-sed"), "train", "mini", "--print-config"], elsewhere)
    assert yaml.safe_load(printed) == dumped["recipes"]["mini"]

"""The import graph of atst_sed points down the layers only (README, "Layout").

Every ``import`` of every module is read from its source (``ast``), wherever it stands: at the top,
inside a function (lazy imports), under ``TYPE_CHECKING``, or as a string given to
``importlib.import_module``. An arrow from a module to one of a higher layer fails the test, and so
does a module that belongs to no layer (a new module must be placed).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "atst_sed"

#: Lowest first. A module belongs to the first entry that names it or a package above it.
LAYERS: list[tuple[str, ...]] = [
    ("atst_sed.errors", "atst_sed.fileio", "atst_sed.config", "atst_sed.version"),
    ("atst_sed.audio",),
    ("atst_sed.timegrid",),
    ("atst_sed.frontend",),
    ("atst_sed.labels", "atst_sed.events", "atst_sed.score_files"),
    ("atst_sed.decoding",),
    ("atst_sed.hub",),  # named published models: registry and download cache (files only; models/ loads them)
    ("atst_sed.models",),
    ("atst_sed.data",),
    ("atst_sed.runfolder",),
    ("atst_sed.evaluation",),  # metric wrappers: below training, whose validation and test stage use them
    ("atst_sed.training",),
    ("atst_sed.inference",),
    ("atst_sed.submission",),
    ("atst_sed.cli",),
    ("atst_sed.api", "atst_sed"),  # the public API: the package itself
]


def layer_of(module: str) -> int | None:
    """Index in :data:`LAYERS` of ``module`` (the longest matching name wins)."""
    best: tuple[int, int] | None = None
    for index, names in enumerate(LAYERS):
        for name in names:
            if module == name or module.startswith(name + "."):
                if best is None or len(name) > best[0]:
                    best = (len(name), index)
    return None if best is None else best[1]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_in(source: str, module: str, is_package: bool = False) -> list[tuple[int, str]]:
    """(line, module) of every atst_sed module that the source of ``module`` imports, anywhere in it."""
    tree = ast.parse(source)
    package = module if is_package else module.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolved against this module's package
                parts = package.split(".")
                parent = parts[: len(parts) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            # ``from atst_sed.data import datamodule`` imports a submodule, ``from atst_sed.audio import
            # SAMPLE_RATE`` a name of the module
            for alias in node.names:
                candidate = PACKAGE.parent.joinpath(*f"{base}.{alias.name}".split("."))
                is_module = candidate.with_suffix(".py").is_file() or candidate.is_dir()
                found.append((node.lineno, f"{base}.{alias.name}" if is_module else base))
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module":
            arg = node.args[0] if node.args else None
            if isinstance(arg, ast.JoinedStr) and arg.values and isinstance(arg.values[0], ast.Constant):
                arg = arg.values[0]  # f"atst_sed.cli.{verb}": the constant head names the package
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                found.append((node.lineno, arg.value.rstrip(".")))
    return sorted({(line, name) for line, name in found if name == "atst_sed" or name.startswith("atst_sed.")})


def imported_modules(path: Path) -> list[tuple[int, str]]:
    return imports_in(path.read_text(), module_name(path), path.name == "__init__.py")


MODULES = sorted(PACKAGE.rglob("*.py"))


def test_every_module_has_a_layer():
    unplaced = [module_name(p) for p in MODULES if layer_of(module_name(p)) is None]
    assert not unplaced, f"modules outside every layer (add them to LAYERS and the README): {unplaced}"


@pytest.mark.parametrize("path", MODULES, ids=[module_name(p) for p in MODULES])
def test_imports_point_down_the_layers(path):
    source = module_name(path)
    own = layer_of(source)
    upward = [f"{path.relative_to(PACKAGE.parent)}:{line}: {source} (layer {own}) imports {target} (layer {layer_of(target)})"
              for line, target in imported_modules(path) if (layer_of(target) or 0) > (own or 0)]
    assert not upward, "\n".join(upward)


def test_the_checker_sees_lazy_and_dynamic_imports_and_arrows_up():
    """The rule itself, on source written for the purpose: an import inside a function and a string
    given to importlib are found, and both point up from the data layer."""
    source = (
        "import importlib\n"
        "from atst_sed.audio import SAMPLE_RATE\n"
        "def f():\n"
        "    from atst_sed.training.finetune import SEDTask\n"
        "    return importlib.import_module(f'atst_sed.cli.{SAMPLE_RATE}')\n"
    )
    found = imports_in(source, "atst_sed.data.probe")
    assert found == [(2, "atst_sed.audio"), (4, "atst_sed.training.finetune"), (5, "atst_sed.cli")]
    own = layer_of("atst_sed.data.probe")
    assert [layer_of(name) > own for _, name in found] == [False, True, True]
    assert imports_in("from . import datasets\nfrom ..events import clip_id\n", "atst_sed.data.probe") == [
        (1, "atst_sed.data.datasets"), (2, "atst_sed.events")]

"""The configuration of fine-tuning runs: typed sections, recipes over the defaults, overrides.

A recipe (``recipes/<name>/recipe.yaml``) holds only its differences from the defaults, which are
the dataclasses below (``configs/finetune/default.yaml`` documents them; a test keeps the two
equal). Precedence: defaults < recipe < a stage's ``overrides`` < command line.
"""

from __future__ import annotations

import copy
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from atst_sed.config import (
    ConfigError,
    deep_merge,
    from_dict,
    missing_keys,
    parse_overrides,
    read_yaml,
    resolve_named,
    to_dict,
)
from atst_sed.data import DataConfig
from atst_sed.decoding import DEFAULT_MEDIAN_FILTER, DEFAULT_THRESHOLD
from atst_sed.errors import AtstSedError
from atst_sed.frontend import FrontendConfig
from atst_sed.models.factory import ModelConfig
from atst_sed.training.distill import DistillConfig
from atst_sed.training.finetune import OptimConfig, TaskConfig
from atst_sed.training.validation import ValidationConfig

log = logging.getLogger(__name__)


@dataclass
class TrainerConfig:
    """Lightning Trainer settings. ``precision`` None = ``bf16-mixed`` on GPU, ``32-true`` on CPU."""

    max_epochs: int = 100
    accelerator: str = "auto"
    devices: int | str = "auto"
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str | None = None
    gradient_clip_val: float = 3.0
    accumulate_grad_batches: int = 1
    check_val_every_n_epoch: int = 1
    log_every_n_steps: int = 10
    limit_train_batches: int | float = 1.0
    limit_val_batches: int | float = 1.0
    limit_test_batches: int | float = 1.0
    num_sanity_val_steps: int = 0
    deterministic: bool = False
    enable_progress_bar: bool = True
    use_distributed_sampler: bool = False  # the datamodule's batch sampler shards by rank itself


@dataclass
class DecodingConfig:
    """Post-processing saved in checkpoints and used at test: per-class median filter in the model's
    output frames (40 ms for ATST-Frame / ATST-Clip, 64 ms for ATST-SED; one int or one per class) and decision thresholds (for `detect`);
    ``n_test_thresholds`` operating points for the DCASE 2022 PSDS (50: 0.01, 0.03 … 0.99)."""

    median_filter: int | list[int] = DEFAULT_MEDIAN_FILTER
    thresholds: float | list[float] = DEFAULT_THRESHOLD
    n_test_thresholds: int = 50


@dataclass
class StageConfig:
    """One stage. ``kind``: ``finetune`` | ``distill`` | ``test``.

    ``model``: key of ``models`` to start from (the student for distill). ``init``: start from that
    earlier stage's best SED model instead (for ``test``: the stage whose model is tested; default
    the last training stage before it). ``teacher``: (distill) the frozen teacher — an earlier
    stage (its best model) or a key of ``models`` whose ``encoder`` is a SED checkpoint for the run's
    classes (e.g. a published fine-tuned ATST-Clip, head included). ``test``: (training stages) also write test-set outputs of the best model into
    ``<stage>/test/``. ``overrides``: config sections replaced for this stage only (e.g.
    ``{optim: {lr: 0.05}, trainer: {max_epochs: 50}}``)."""

    kind: Literal["finetune", "distill", "test"] = "finetune"
    model: str = "frame"
    init: str | None = None
    teacher: str | None = None
    test: bool = True
    overrides: dict[str, Any] = field(default_factory=dict)


def _default_models() -> dict[str, ModelConfig]:
    return {"frame": ModelConfig("frame_base"), "clip": ModelConfig("clip_base")}


def _default_stages() -> dict[str, StageConfig]:
    return {"finetune_frame": StageConfig(), "test": StageConfig(kind="test")}


@dataclass
class RunConfig:
    """Everything a run needs; YAML fills it (unknown keys are errors); saved resolved beside results."""

    name: str = "run"
    seed: int = 42
    models: dict[str, ModelConfig] = field(default_factory=_default_models)
    data: DataConfig = field(default_factory=DataConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    decoding: DecodingConfig = field(default_factory=DecodingConfig)
    stages: dict[str, StageConfig] = field(default_factory=_default_stages)


def build_config(data: dict[str, Any], where: str = "config") -> RunConfig:
    """Strict :class:`RunConfig` from a mapping (plain or holding command-line values); a bad key or
    value → one-line :class:`AtstSedError` naming the command line item, or else ``where``."""
    try:
        cfg = from_dict(RunConfig, data)
    except ConfigError as err:
        raise AtstSedError(err.located(where)) from None
    _check(cfg, where)
    return cfg


def _check(cfg: RunConfig, where: str) -> None:
    names = list(cfg.stages)
    for i, (name, st) in enumerate(cfg.stages.items()):
        earlier = names[:i]
        if st.kind != "test" or st.init is None:
            if st.model not in cfg.models and st.init is None:
                raise AtstSedError(f"{where}: stage {name}: model {st.model!r} is not in models ({', '.join(cfg.models)})")
        if st.init is not None and st.init not in earlier:
            raise AtstSedError(f"{where}: stage {name}: init {st.init!r} must name an earlier stage ({', '.join(earlier) or 'none'})")
        if st.teacher is not None and st.teacher not in earlier and st.teacher not in cfg.models:
            raise AtstSedError(f"{where}: stage {name}: teacher {st.teacher!r} must name an earlier stage "
                               f"({', '.join(earlier) or 'none'}) or a model ({', '.join(cfg.models)})")
        if st.kind == "distill" and st.teacher is None:
            raise AtstSedError(f"{where}: stage {name}: a distill stage needs a teacher stage")
        bad = sorted(set(st.overrides) & {"stages", "name", "models"})
        if bad:
            raise AtstSedError(f"{where}: stage {name}: overrides may not change {', '.join(bad)}")
    frontend_config(cfg, where)


def default_config_dict() -> dict[str, Any]:
    """The defaults of every run: the dataclasses above (their one source; ``configs/finetune/
    default.yaml`` documents them and a test keeps it equal)."""
    return to_dict(RunConfig())


#: Mappings that are one value each: a recipe, stage or command line that sets one replaces it whole
#: (a stage's objective must not add its terms to the run's, nor its batch sizes keep another's sets).
WHOLE_VALUES = (("data", "batch_sizes"), ("optim", "rates"), ("validation", "objective"))


def merge_sections(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``override`` over ``base`` key by key (:func:`deep_merge`), :data:`WHOLE_VALUES` replaced whole."""
    merged = deep_merge(base, override)
    for section, key in WHOLE_VALUES:
        value = (override.get(section) or {}).get(key) if isinstance(override.get(section), dict) else None
        if value is not None:
            merged[section] = {**merged[section], key: value}
    return merged


def merge_recipe(base: dict[str, Any], recipe: dict[str, Any]) -> dict[str, Any]:
    """Recipe over defaults: sections merge key by key, but a recipe's ``stages`` replace the default list."""
    merged = merge_sections(base, {k: v for k, v in recipe.items() if k != "stages"})
    if "stages" in recipe:
        merged["stages"] = recipe["stages"]
    return merged


def recipe_path(recipe: str | os.PathLike[str]) -> Path:
    """``recipe.yaml`` of a recipe folder, a YAML file, or a shipped recipe's name (``mini``, ``dcase22``, …)."""
    return resolve_named(recipe, in_folder="recipe.yaml", shipped="recipes", pattern="{name}/recipe.yaml", what="recipe")


def load_recipe(recipe: str | os.PathLike[str], overrides: list[str] | None = None) -> RunConfig:
    """A recipe (:func:`recipe_path`: only its differences from the defaults) + ``key=value``
    overrides → :class:`RunConfig` (see :func:`resolve_config`). ``name`` defaults to the recipe's
    folder name (a YAML file other than ``recipe.yaml``: its stem)."""
    path = recipe_path(recipe)
    recipe_data = read_yaml(path)
    merged = merge_recipe(default_config_dict(), recipe_data)
    if "name" not in recipe_data:
        merged["name"] = path.resolve().parent.name if path.name == "recipe.yaml" else path.stem
    return resolve_config(merged, overrides, str(path))


def resolve_config(data: dict[str, Any], overrides: list[str] | None, where: str) -> RunConfig:
    """Command-line ``key=value`` overrides over ``data`` (defaults + recipe, or a saved run config).

    Precedence: defaults < recipe < a stage's ``overrides`` < command line. A command-line key also
    replaces what a stage's overrides set for it (reported in the log); ``stages.<stage>.overrides.<key>=…``
    sets a value for one stage only. Values marked ``???`` must be given. Every stage's config is
    checked here, so a bad value fails at load time, not when its stage starts."""
    try:
        command_line = parse_overrides(list(overrides or []))
    except ValueError as err:
        raise AtstSedError(str(err)) from None
    merged, replaced = _command_line_over_stages(merge_sections(data, command_line), command_line)
    missing = missing_keys(merged)
    if missing:
        more = f" (and {', '.join(missing[1:])})" if len(missing) > 1 else ""
        raise AtstSedError(f"{where}: {missing[0]} must be given{more}: add {missing[0]}=... to the command line")
    cfg = build_config(merged, where)
    sections = {k: v for k, v in merged.items() if k != "stages"}
    for name, stage in (merged.get("stages") or {}).items():
        over = stage.get("overrides") if isinstance(stage, dict) else None
        if not over:
            continue
        try:
            from_dict(RunConfig, merge_sections(sections, over))
        except ConfigError as err:
            raise AtstSedError(ConfigError(f"stages.{name}.overrides.{err.key}".rstrip("."), err.problem, err.origin).located(where)) from None
    for note in replaced:
        log.info("%s", note)
    return cfg


def _leaf_keys(data: dict[str, Any], prefix: str = "") -> list[str]:
    out = []
    for key, value in data.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        out.extend(_leaf_keys(value, dotted) if isinstance(value, dict) and value else [dotted])
    return out


def _at(data: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        data = data[part]
    return data


def _drop_key(data: dict[str, Any], dotted: str) -> None:
    *parents, last = dotted.split(".")
    chain = [data]
    for part in parents:
        chain.append(chain[-1][part])
    del chain[-1][last]
    for node, part in zip(reversed(chain[:-1]), reversed(parents)):  # drop sections left empty
        if not node[part]:
            del node[part]


def _command_line_over_stages(merged: dict[str, Any], command_line: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Drop from every stage's overrides the keys the command line sets for the whole run (``data.x=…``
    outranks a recipe's ``stages.S.overrides.data.x``), except where it addresses the stage itself.
    Returns the new dict and one line per value replaced."""
    given = _leaf_keys({k: v for k, v in command_line.items() if k != "stages"})
    replaced: list[str] = []
    if not given or not isinstance(merged.get("stages"), dict):
        return merged, replaced
    merged = dict(merged, stages=copy.deepcopy(merged["stages"]))
    for name, stage in merged["stages"].items():
        over = stage.get("overrides") if isinstance(stage, dict) else None
        if not isinstance(over, dict):
            continue
        addressed = set(_leaf_keys(((command_line.get("stages") or {}).get(name) or {}).get("overrides") or {}))
        for key in _leaf_keys(over):
            winner = next((g for g in given if key == g or key.startswith(g + ".")), None)
            if winner is None or key in addressed:
                continue
            replaced.append(f"stage {name}: the command line's {_at(command_line, winner).item} replaces "
                            f"the stage's override {key}={to_dict(_at(over, key))}")
            _drop_key(over, key)
    return merged, replaced


def stage_config(cfg: RunConfig, stage: str) -> RunConfig:
    """The run config with ``stages[stage].overrides`` applied (checked when the config was loaded)."""
    over = cfg.stages[stage].overrides
    if not over:
        return cfg
    return build_config(merge_sections(to_dict(cfg), over), f"stages.{stage}.overrides")


def frontend_config(cfg: RunConfig, where: str = "config") -> FrontendConfig:
    """The frontend of the run's models: the ATST log-mel with ``data.frontend``'s overrides."""
    try:
        return FrontendConfig(**cfg.data.frontend)
    except TypeError as err:
        raise AtstSedError(f"{where}: data.frontend: {err}") from None

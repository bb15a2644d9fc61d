"""Two-process DDP fine-tuning on CPU (gloo), launched like a user would: `atst-sed train` in a subprocess.

What DDP fine-tuning must do (``trainer.devices=2 trainer.strategy=ddp``):

* the command exits 0 after both processes joined one process group;
* every epoch draws new batches, and every rank takes its own share of them
  (``ProportionalBatchSampler`` shards by rank; ``trainer.use_distributed_sampler`` is false), so one epoch is ``epoch_length / 2``
  optimizer steps (rounded up), and every rank takes the *same* number of steps (otherwise DDP
  deadlocks);
* each rank validates its share of the clips, and validation PSDS is computed from the gathered
  scores of *all* validation clips on every rank (``SEDTask.on_validation_epoch_end``), so both
  ranks log the same PSDS, and the exported ``best.ckpt`` reproduces the logged validation metrics
  (loss included) in a 1-process validation;
* the run folder is written by rank 0 alone: checkpoints, ``metrics.json`` and test outputs exist
  once, complete, and are not written a second time by rank 1.

Lightning starts rank 1 by running the same command line again. To see what each rank evaluates
and writes, the command runs through a small launcher (written into ``tmp_path``) that records, per
rank, the clips of every training batch, the clips the validation evaluator scores and every JSON
file the run writes, then calls
``atst_sed.cli.main.main`` (Lightning re-runs that launcher for rank 1, so both ranks are probed).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from atst_sed.config import read_yaml
from atst_sed.data.datasets import ProportionalBatchSampler
from atst_sed.models.checkpoint import load_checkpoint

REPO = Path(__file__).resolve().parents[2]
N_VAL = N_TEST = 12  # clips of synth_val / test in the tiny corpus
TIMEOUT_S = 240  # a healthy run takes ~30 s on 2 busy cores; deadlocked ranks never finish

# recipes/mini (its models, optimiser, evaluator, decoding) made tiny: 4 clips a batch (2 strong +
# 2 weak; the tiny corpus has 24 + 12), validation every epoch, two CPU processes.
TINY = [
    "data.batch_size=4", "data.val_batch_size=4", "data.num_workers=0",
    "trainer.check_val_every_n_epoch=1", "trainer.log_every_n_steps=1",
    "trainer.devices=2", "trainer.strategy=ddp", "trainer.accelerator=cpu",
]
MINI_POOLS, MINI_PER_BATCH = [24, 12], [2, 2]  # strong / weak clips in the corpus, and per batch

LAUNCHER = '''\
"""`atst-sed` with a probe: each rank appends what it trains on, evaluates and writes to $ATST_PROBE_DIR/rank<R>.jsonl."""
import json
import os
import sys
from pathlib import Path

import atst_sed.runfolder as runfolder
import atst_sed.training.run as run
import atst_sed.training.scoring as scoring
import atst_sed.training.validation as validation
from atst_sed.cli.main import main
from atst_sed.training.finetune import SEDTask


def record(**event):
    rank = int(os.environ.get("LOCAL_RANK", "0"))  # Lightning sets it in both ranks once launched
    with open(Path(os.environ["ATST_PROBE_DIR"]) / f"rank{rank}.jsonl", "a") as f:
        f.write(json.dumps({"rank": rank, **event}) + "\\n")


validation_psds, write_json = validation.validation_psds, scoring.write_json


def probed_validation_psds(scores, *args, **kwargs):
    metrics = validation_psds(scores, *args, **kwargs)
    record(event="validate", clips=sorted(scores), metrics={k: float(v) for k, v in metrics.items()})
    return metrics


def probed_write_json(path, data):
    record(event="write", path=str(Path(path).resolve()))
    return write_json(path, data)


validation.validation_psds = probed_validation_psds
run.write_json = scoring.write_json = runfolder.write_json = probed_write_json
train_batch_start = SEDTask.on_train_batch_start


def probed_train_batch_start(self, batch, batch_idx):
    record(event="train", epoch=self.current_epoch, clips=list(batch["filenames"]),
           group=[self.global_rank, self.trainer.world_size])
    return train_batch_start(self, batch, batch_idx)


SEDTask.on_train_batch_start = probed_train_batch_start
sys.exit(main())
'''


def write_recipe(folder: Path, stages: dict) -> Path:
    """recipes/mini's recipe.yaml with its own ``stages`` (a recipe's stages replace the default list)."""
    import yaml

    recipe = read_yaml(REPO / "recipes" / "mini" / "recipe.yaml")
    recipe["stages"] = stages
    folder.mkdir(parents=True)
    (folder / "recipe.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
    return folder


def launch(args: list[str], cwd: Path, probe_dir: Path | None = None) -> str:
    """Run ``args`` (after the interpreter) in its own process group; both ranks are killed on timeout.
    Returns stdout + stderr of both ranks; a non-zero exit fails the test."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    if probe_dir is not None:
        probe_dir.mkdir()
        env["ATST_PROBE_DIR"] = str(probe_dir)
    proc = subprocess.Popen([sys.executable, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env, cwd=cwd, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # rank 1 is in the same process group
        out = proc.communicate()[0] + f"\n[killed after {TIMEOUT_S} s: deadlocked ranks?]"
    # (rank 1 re-runs the command line after rank 0 created the run folder: that is no "existing run")
    assert proc.returncode == 0, out[-4000:]
    return out


def probe_records(probe_dir: Path) -> list[dict]:
    return [json.loads(line) for f in sorted(probe_dir.glob("rank*.jsonl")) for line in f.read_text().splitlines()]


def test_two_process_ddp_finetuning_run(tiny_corpus, tmp_path):
    """2 epochs of 4 batches, validated every epoch; the stage tests its best model, then a test stage."""
    recipe = write_recipe(tmp_path / "ddp", {"finetune": {"kind": "finetune", "model": "frame", "test": True},
                                             "final": {"kind": "test"}})
    (tmp_path / "launch.py").write_text(LAUNCHER)
    probe = tmp_path / "probe"
    # one held-out weak clip (of 12): only rank 0's share of the validation set holds it
    out = launch(["launch.py", "train", str(recipe), f"data.root={tiny_corpus}", *TINY, "data.epoch_length=4",
                  "trainer.max_epochs=2", "data.weak_val_fraction=0.1", "--root-dir", str(tmp_path / "runs")], tmp_path, probe)
    run = tmp_path / "runs" / "ddp"
    records = probe_records(probe)

    # ---- two processes in one process group
    # (Lightning's own "MEMBER: 1/2" banners are kept out of the output: each rank says where it is)
    assert {tuple(r["group"]) for r in records if r["event"] == "train"} == {(0, 2), (1, 2)}, out[-3000:]
    assert {r["rank"] for r in records} == {0, 1}, "the probe saw only one rank"

    # ---- each rank steps through its half of every epoch: 4 batches → 2 steps per rank and epoch
    shares = [len(ProportionalBatchSampler(MINI_POOLS, MINI_PER_BATCH, epoch_length=4, rank=r, world_size=2)) for r in (0, 1)]
    assert shares == [2, 2]
    for f in ("checkpoints/best.ckpt", "checkpoints/last.ckpt", "lightning/last.ckpt", "config.yaml", "csv/metrics.csv"):
        assert (run / "finetune" / f).is_file(), f
    metrics = json.loads((run / "finetune" / "metrics.json").read_text())
    assert metrics["global_step"] == 2 * 2  # 2 epochs × 2 steps (one process would take 2 × 4)
    # ... and every epoch draws new batches, of which each rank takes its own
    trained = {(rank, epoch): [tuple(r["clips"]) for r in records if r["event"] == "train" and r["rank"] == rank and r["epoch"] == epoch]
               for rank in (0, 1) for epoch in (0, 1)}
    assert all(len(batches) == 2 for batches in trained.values())
    for rank in (0, 1):
        assert trained[rank, 0] != trained[rank, 1], f"rank {rank} repeated epoch 0's batches"
    for epoch in (0, 1):
        assert not set(trained[0, epoch]) & set(trained[1, epoch]), "both ranks trained on the same batch"
    last = load_checkpoint(run / "finetune" / "checkpoints" / "last.ckpt")
    best = load_checkpoint(run / "finetune" / "checkpoints" / "best.ckpt")
    assert last.kind == best.kind == "sed" and last.meta["epochs"] == 2 and last.meta["global_step"] == 2 * 2
    assert best.meta["stage"] == "finetune" and best.meta["epochs"] == metrics["best_epoch"] + 1

    # ---- validation: every rank scores all 12 validation clips and gets the same PSDS, every epoch
    val_clips = sorted(Path(p).stem for p in read_val_filenames(tiny_corpus))  # PSDS sees clip ids
    validations = {rank: [r for r in records if r["event"] == "validate" and r["rank"] == rank] for rank in (0, 1)}
    assert len(validations[0]) == len(validations[1]) == 2  # one per epoch
    for a, b in zip(validations[0], validations[1]):
        assert [Path(c).stem for c in a["clips"]] == [Path(c).stem for c in b["clips"]] == val_clips
        assert a["metrics"] == b["metrics"]
    assert "weak_f1" in metrics["val"]
    best_validation = validations[0][metrics["best_epoch"]]["metrics"]
    assert {k: metrics["val"][k] for k in best_validation} == pytest.approx(best_validation)
    # ... and the exported best model, validated by one process, gives the logged metrics
    assert one_process_validation(run, best.model) == pytest.approx(metrics["val"], rel=1e-4, abs=1e-6)

    # ---- outputs of rank 0 alone: the stage's test (best model) and the final test stage, once each
    for name, out_dir in (("test", run / "finetune" / "test" / "student"), ("final", run / "final" / "student")):
        tested = json.loads((out_dir / "metrics.json").read_text())
        assert tested["n_clips"] == N_TEST and 0.0 <= tested["psds1"] <= 1.0
        assert len(list((out_dir / "operating_points").glob("predictions_th_*.tsv"))) == 50
        assert len(list((out_dir / "scores").glob("*.tsv"))) == len(list((out_dir / "scores_raw").glob("*.tsv"))) == N_TEST
        assert out.count(f"{name} student: PSDS1") == 1, f"{name}: tested by more than one rank"
    assert metrics["test"]["student"] == json.loads((run / "finetune" / "test" / "student" / "metrics.json").read_text())
    final = json.loads((run / "final" / "metrics.json").read_text())
    assert final["kind"] == "test" and final["source"] == "finetune" and final["test"]["student"]["n_clips"] == N_TEST
    assert not list(run.rglob(".*.tmp")), "a temporary file was left behind"
    written = {rank: {r["path"] for r in records if r["event"] == "write" and r["rank"] == rank} for rank in (0, 1)}
    assert str((run / "finetune" / "metrics.json").resolve()) in written[0]
    assert written[1] == set(), f"rank 1 wrote {sorted(written[1])}"
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["stages"] == ["finetune", "final"]


def test_an_epoch_that_does_not_split_evenly_still_gives_both_ranks_the_same_number_of_steps(tiny_corpus, tmp_path):
    """DDP ranks must step in lockstep: a rank that runs out of batches first goes on to validation
    and waits there in a collective while the other still waits in its gradient all-reduce (a hang)."""
    shares = [len(ProportionalBatchSampler(MINI_POOLS, MINI_PER_BATCH, epoch_length=5, rank=r, world_size=2)) for r in (0, 1)]
    # 5 batches → 3 per rank (the last one continues the sequence); 3 and 2 would deadlock below
    assert shares[0] == shares[1] >= 1, f"batches per rank {shares}"
    recipe = write_recipe(tmp_path / "odd", {"finetune": {"kind": "finetune", "model": "frame", "test": False}})
    launch(["-m", "atst_sed.cli.main", "train", str(recipe), f"data.root={tiny_corpus}", *TINY, "data.epoch_length=5",
            "trainer.max_epochs=1", "validation.metrics=loss", "--root-dir", str(tmp_path / "runs")], tmp_path)
    metrics = json.loads((tmp_path / "runs" / "odd" / "finetune" / "metrics.json").read_text())
    assert metrics["global_step"] == shares[0]


# ------------------------------------------------------------------------------------------ helpers
def read_val_filenames(corpus: Path) -> list[str]:
    from atst_sed.data.corpus import read_manifest

    names = read_manifest(corpus, "synth_val")["filename"].astype(str).tolist()
    assert len(names) == N_VAL
    return names


def one_process_validation(run_dir: Path, model) -> dict[str, float]:
    """Validation metrics of ``model`` with the run's own config and evaluator, in this process."""
    import pytorch_lightning as pl

    from atst_sed.training.finetune import SEDTask
    from atst_sed.training.run import Run
    from atst_sed.training.run_config import build_config

    cfg = build_config(read_yaml(run_dir / "config.yaml"), "config.yaml")
    runner = Run(cfg, run_dir)
    trainer = pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    task = SEDTask(model, cfg.task, cfg.optim, runner.evaluator(cfg, model.grid))
    (result,) = trainer.validate(task, datamodule=runner.data(cfg, model.grid), verbose=False)
    return {k[len("val/"):]: float(v) for k, v in result.items() if k.startswith("val/")}

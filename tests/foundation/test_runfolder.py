"""One run-folder type: the paths train writes and report, package and pretrain read, the manifest,
stage progress, development metrics and the evaluation-set outputs."""

from __future__ import annotations

import json

import pytest

from atst_sed.errors import InputError
from atst_sed.runfolder import RunFolder


def _write(path, body) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(body if isinstance(body, str) else json.dumps(body))


def test_paths_of_a_training_run_and_of_a_pretraining_run(tmp_path):
    run = RunFolder(tmp_path / "mini")
    stage = run.stage("finetune_frame")
    assert (run.config_path, run.manifest_path) == (tmp_path / "mini/config.yaml", tmp_path / "mini/manifest.json")
    assert stage.checkpoint() == tmp_path / "mini/finetune_frame/checkpoints/best.ckpt"
    assert stage.checkpoint("last_teacher") == tmp_path / "mini/finetune_frame/checkpoints/last_teacher.ckpt"
    assert stage.resume_checkpoint == tmp_path / "mini/finetune_frame/lightning/last.ckpt"
    assert stage.test_dir("teacher", test_stage=False) == tmp_path / "mini/finetune_frame/test/teacher"
    assert run.stage("test").test_dir("student", test_stage=True) == tmp_path / "mini/test/student"
    assert run.pretrain_resume_checkpoint == tmp_path / "mini/checkpoints/last.ckpt"
    assert run.teacher_encoder == tmp_path / "mini/teacher_encoder.ckpt"


def test_progress_manifest_and_tested_stages(tmp_path):
    run = RunFolder(tmp_path / "run")
    _write(run.config_path, "name: run\n")
    assert not run.has_progress() and run.previous_manifest() == {}
    run.write_manifest({"seed": 3, "dataset": {"fingerprint": "sha256:ab"}, "stages": ["a", "b"], "score": float("nan")})
    assert json.loads(run.manifest_path.read_text())["score"] is None  # NaN → null
    _write(run.stage("a").metrics_path, {"test": {"student": {"psds1": 0.5}}})
    _write(run.stage("b").metrics_path, {"val": {"loss": 1.0}})
    reopened = RunFolder.open(run.path)
    assert (reopened.name, reopened.seed, reopened.fingerprint, reopened.stages) == ("run", 3, "sha256:ab", ["a", "b"])
    assert run.has_progress() and run.finished_stages(["a", "b", "c"]) == ["a", "b"]
    assert list(reopened.tested_stages()) == [("a", {"student": {"psds1": 0.5}})]


def test_development_metrics_prefer_the_test_stage_then_the_latest_stage(tmp_path):
    run = RunFolder(tmp_path / "run")
    run.write_manifest({"stages": ["a", "b", "test"]})
    _write(run.stage("a").metrics_path, {"psds1": 0.1, "psds2": 0.2})
    _write(run.stage("b").metrics_path, {"loss": 0.3})  # no PSDS: skipped
    assert run.development_metrics() == ({"psds1": 0.1, "psds2": 0.2}, run.stage("a").metrics_path)
    _write(run.path / "test/student/metrics.json", {"psds1": 0.4, "psds2": 0.5, "model": "x", "flag": True})
    assert run.development_metrics() == ({"psds1": 0.4, "psds2": 0.5}, run.path / "test/student/metrics.json")


def test_evaluation_set_outputs_and_best_checkpoints(tmp_path):
    run = RunFolder(tmp_path / "run")
    run.write_manifest({"stages": ["a", "b"]})
    assert run.events_file() is None and run.scores_dir() is None and run.best_checkpoints() == []
    _write(run.eval_dir / "events.csv", "filename,onset,offset,event_label,score\n")
    _write(run.eval_dir / "scores_unprocessed" / "x.tsv", "onset\toffset\tDog\n")
    _write(run.stage("b").checkpoint(), "not empty")
    _write(run.stage("a").checkpoint(), "")  # an empty file is no checkpoint
    assert run.events_file() == run.eval_dir / "events.csv"
    assert run.scores_dir() is None and run.scores_dir(unprocessed=True) == run.eval_dir / "scores_unprocessed"
    assert run.best_checkpoints() == [run.stage("b").checkpoint()]


@pytest.mark.parametrize("content, problem", [(None, "missing"), ("{", "not valid JSON"), ("[1]", "not a JSON object")])
def test_an_unusable_manifest_is_one_line_naming_it(tmp_path, content, problem):
    (tmp_path / "run").mkdir()
    if content is not None:
        (tmp_path / "run" / "manifest.json").write_text(content)
    with pytest.raises(InputError, match=problem) as err:
        RunFolder.open(tmp_path / "run")
    assert err.value.path == str(tmp_path / "run" / "manifest.json")
    with pytest.raises(InputError, match="run folder not found"):
        RunFolder.open(tmp_path / "nothing")

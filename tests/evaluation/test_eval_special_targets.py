"""``atst-sed evaluate --json`` and ``atst-sed report --csv`` into devices and pipes: the node stays
what it is, a pipe receives the file, ``-`` sends it to stdout with the tables on stderr, and
``--plots`` refuses a device."""

from __future__ import annotations

import io
import json

import pandas as pd
import pytest

from atst_sed.cli.main import main
from atst_sed.events import write_durations_tsv, write_events_tsv

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")


@pytest.fixture()
def evaluate_args(tmp_path, gt, durations) -> list[str]:
    write_events_tsv(tmp_path / "gt.tsv", gt)
    write_durations_tsv(tmp_path / "dur.tsv", durations)
    predictions = gt.copy()
    predictions["onset"] = predictions["onset"] + 0.1
    write_events_tsv(tmp_path / "pred.tsv", predictions)
    return ["evaluate", "--ground-truth", str(tmp_path / "gt.tsv"), "--durations", str(tmp_path / "dur.tsv"),
            "--predictions", str(tmp_path / "pred.tsv"), "--jobs", "1"]


@pytest.fixture()
def run_dir(tmp_path):
    run = tmp_path / "run1"
    (run / "test").mkdir(parents=True)
    metrics = {"psds1": 0.31, "psds2": 0.52, "psds1_sed_scores_eval": 0.32, "psds2_sed_scores_eval": 0.53,
               "event_f1": {"macro": 0.2}, "segment_f1": {"macro": 0.4}, "intersection_f1": {"macro": 0.3}}
    (run / "test" / "metrics.json").write_text(json.dumps({"stage": "test", "test": {"student": metrics}}))
    (run / "manifest.json").write_text(json.dumps({"seed": 1, "stages": ["test"], "dataset": {"fingerprint": "f"}}))
    return run


def test_evaluate_json_into_a_device_or_pipe(device_output, evaluate_args, tmp_path, capsys):
    assert main([*evaluate_args, "--json", str(tmp_path / "m.json")]) == 0
    assert main([*evaluate_args, "--json", str(device_output.path)]) == 0
    received = device_output.finish()
    if device_output.kind == "named pipe":
        assert received == (tmp_path / "m.json").read_bytes()
    capsys.readouterr()


def test_evaluate_json_to_stdout_keeps_the_tables_on_stderr(evaluate_args, capsys):
    assert main([*evaluate_args, "--json", "-"]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)["kind"] == "events"
    assert "class-wise F1" in out.err


def test_evaluate_plots_refuses_a_device_or_pipe(device_output, evaluate_args, capsys):
    assert main([*evaluate_args, "--plots", str(device_output.path)]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"atst-sed evaluate: error: {device_output.path}: --plots needs a folder; this is a {device_output.described}"]
    device_output.finish_refused()


def test_report_csv_into_a_device_or_pipe(device_output, run_dir, tmp_path, capsys):
    assert main(["report", str(run_dir), "--csv", str(tmp_path / "summary.csv")]) == 0
    assert main(["report", str(run_dir), "--csv", str(device_output.path)]) == 0
    received = device_output.finish()
    if device_output.kind == "named pipe":
        assert received == (tmp_path / "summary.csv").read_bytes()
    capsys.readouterr()


def test_report_csv_to_stdout_is_only_the_csv(run_dir, capsys):
    assert main(["report", str(run_dir), "--csv", "-"]) == 0
    out = capsys.readouterr()
    table = pd.read_csv(io.StringIO(out.out))
    assert table["psds1_mean"].tolist() == [0.31]
    assert "Test results of 1 run(s)" in out.err

"""`atst-sed report`: the test results of several runs (seeds) as mean ± sample standard deviation."""

from __future__ import annotations

import json
import re
import statistics

import pandas as pd
import pytest

from atst_sed.cli.main import main
from atst_sed.evaluation.runs import collect_test_results, summarize


def _metrics(psds1: float, psds2: float) -> dict:
    return {"psds1": psds1, "psds2": psds2, "psds1_sed_scores_eval": psds1 + 0.01, "psds2_sed_scores_eval": psds2 + 0.01,
            "event_f1": {"macro": psds1 / 2, "micro": 0.0}, "segment_f1": {"macro": psds2 / 3},
            "intersection_f1": {"macro": psds2 / 2}}


def _run(root, name: str, seed: int, frame: tuple[float, float], student: tuple[float, float],
         teacher: tuple[float, float], fingerprint: str = "sha256:same"):
    """A run folder as `atst-sed train` writes it: finetune_frame tested, then a test stage with a teacher."""
    run = root / name
    for stage, tested in (("finetune_frame", {"student": _metrics(*frame)}),
                          ("distill_c2f", None),
                          ("test", {"student": _metrics(*student), "teacher": _metrics(*teacher)})):
        (run / stage).mkdir(parents=True)
        body = {"stage": stage} if tested is None else {"stage": stage, "test": tested}
        (run / stage / "metrics.json").write_text(json.dumps(body))
    manifest = {"seed": seed, "stages": ["finetune_frame", "distill_c2f", "test", "not_run_yet"],
                "dataset": {"fingerprint": fingerprint}}
    (run / "manifest.json").write_text(json.dumps(manifest))
    return run


@pytest.fixture
def three_seeds(tmp_path):
    return [
        _run(tmp_path, "s1", 1, (0.30, 0.50), (0.34, 0.60), (0.33, 0.58)),
        _run(tmp_path, "s2", 2, (0.32, 0.54), (0.36, 0.62), (0.31, 0.57)),
        _run(tmp_path, "s3", 3, (0.31, 0.55), (0.35, 0.58), (0.32, 0.59)),
    ]


def test_mean_and_sample_std_per_stage_and_model_in_run_order(three_seeds):
    infos, results = collect_test_results(three_seeds)
    assert [(i.name, i.seed) for i in infos] == [("s1", 1), ("s2", 2), ("s3", 3)]
    assert len(results) == 9  # 3 runs × (finetune_frame student, test student, test teacher)
    summary = summarize(results)
    assert list(zip(summary["stage"], summary["model"])) == [("finetune_frame", "student"), ("test", "student"), ("test", "teacher")]
    assert summary["runs"].tolist() == [3, 3, 3]
    student = summary[(summary["stage"] == "test") & (summary["model"] == "student")].iloc[0]
    assert student["psds1_mean"] == pytest.approx(statistics.mean([0.34, 0.36, 0.35]))
    assert student["psds1_std"] == pytest.approx(statistics.stdev([0.34, 0.36, 0.35]))
    assert student["psds2_std"] == pytest.approx(statistics.stdev([0.60, 0.62, 0.58]))
    assert student["psds2_sed_scores_eval_mean"] == pytest.approx(0.61)
    assert student["event_f1_macro_mean"] == pytest.approx(0.175)
    assert student["intersection_f1_macro_mean"] == pytest.approx(0.30)
    assert student["segment_f1_macro_std"] == pytest.approx(statistics.stdev([0.60 / 3, 0.62 / 3, 0.58 / 3]))
    one = summarize(collect_test_results(three_seeds[:1])[1])
    assert one["psds1_mean"].iloc[1] == pytest.approx(0.34) and pd.isna(one["psds1_std"].iloc[1])  # one run: no spread


def test_cli_prints_and_writes_the_summary(three_seeds, tmp_path, capsys):
    out_csv, out_json = tmp_path / "summary.csv", tmp_path / "summary.json"
    assert main(["report", *map(str, three_seeds), "--csv", str(out_csv), "--json", str(out_json)]) == 0
    printed = capsys.readouterr().out
    assert "seeds 1, 2, 3" in printed and f"{statistics.mean([0.34, 0.36, 0.35]):.3f}±{statistics.stdev([0.34, 0.36, 0.35]):.3f}" in printed
    table = pd.read_csv(out_csv)
    assert table.shape[0] == 3 and table.loc[1, "psds1_mean"] == pytest.approx(0.35, abs=1e-6)
    body = json.loads(out_json.read_text())
    assert [r["seed"] for r in body["runs"]] == [1, 2, 3] and len(body["per_run"]) == 9


def test_bad_run_folders_get_one_line_naming_the_file(tmp_path, three_seeds, capsys, caplog):
    assert main(["report", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "nothing/manifest.json" in err and "run folder" in err
    broken = three_seeds[0] / "test" / "metrics.json"
    broken.write_text("{not json")
    assert main(["report", str(three_seeds[0])]) == 2
    assert str(broken) in capsys.readouterr().err
    untested = tmp_path / "untested"
    untested.mkdir()
    (untested / "manifest.json").write_text(json.dumps({"seed": 0, "stages": ["finetune_frame"]}))
    assert main(["report", str(untested)]) == 2
    assert "no stage of this run has test results" in capsys.readouterr().err
    other = _run(tmp_path, "other", 4, (0.1, 0.1), (0.1, 0.1), (0.1, 0.1), fingerprint="sha256:other")
    assert main(["report", str(three_seeds[1]), str(other)]) == 0
    assert "different corpora" in caplog.text


def test_a_run_given_twice_is_refused_so_header_and_rows_count_the_same_runs(three_seeds, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first, second = (str(p.relative_to(tmp_path)) for p in three_seeds[:2])
    for again in (first, f"./{first}", str(tmp_path / first)):  # the same folder by any path
        assert main(["report", first, second, again, "--csv", "summary.csv"]) == 2
        err = capsys.readouterr().err.strip()
        assert err == (f"atst-sed report: error: {first}: run folder given 2 times ({first}, {again}); "
                       "each run counts once in the mean ± std"), err
        assert not (tmp_path / "summary.csv").exists()
    # distinct runs: the header's count is the rows' count
    assert main(["report", first, second]) == 0
    printed = capsys.readouterr().out
    assert "Test results of 2 run(s)" in printed
    rows = [line for line in printed.splitlines() if "student" in line or "teacher" in line]
    assert rows and all(re.search(r"│\s+2\s+│", line) for line in rows), printed

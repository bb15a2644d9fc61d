"""The whole user journey on the tiny corpus: train recipes/mini (the session's run, tests/conftest.py)
→ evaluate its test outputs → detect on an "evaluation set" → package a DCASE submission from the run →
validate it."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml

from atst_sed.cli.main import main

REPO = Path(__file__).resolve().parents[2]
META = {
    "submission": {
        "name": "ATST-C2F mini",
        "abbreviation": "ATSTmini",
        "authors": [
            {"lastname": "Doe", "firstname": "Jane", "email": "jane@uni.org", "corresponding": True,
             "affiliation": {"abbreviation": "UNI", "institute": "University", "location": "City"}},
        ],
    },
    "system": {"description": {"machine_learning_method": "transformer"}, "source_code": "https://example.org/atst-sed"},
}


def test_evaluate_reproduces_the_psds_the_test_stage_recorded(tiny_corpus, mini_run, tmp_path):
    corpus, run = tiny_corpus, mini_run
    out = tmp_path / "metrics.json"
    code = main([
        "evaluate",
        "--ground-truth", str(corpus / "metadata/validation/validation.tsv"),
        "--durations", str(corpus / "metadata/validation/validation_durations.tsv"),
        "--predictions", str(run / "test/student/operating_points"),
        "--json", str(out),
    ])
    assert code == 0
    recorded = json.loads((run / "test/student/metrics.json").read_text())
    evaluated = json.loads(out.read_text())
    assert evaluated["n_clips_evaluated"] == 12
    for key in ("psds1", "psds2", "f1_threshold"):
        assert evaluated[key] == pytest.approx(recorded[key], abs=1e-9), key
    for key in ("event_f1", "segment_f1", "intersection_f1"):
        assert evaluated[key]["macro"] == pytest.approx(recorded[key]["macro"], abs=1e-9), key
    assert evaluated["segment_f1"]["macro"] > 0  # a barely trained model still gets some segments right


@pytest.mark.parametrize("fmt, n_runs", [("dcase2022", 1), ("dcase2023", 3)])
def test_a_package_built_from_a_mini_run_validates(tiny_corpus, mini_run, tmp_path, report_pdf, fmt, n_runs):
    corpus, run = tiny_corpus, mini_run
    eval_audio = corpus / "audio/validation/validation_16k"  # stands in for the challenge's evaluation set
    runs = []
    for k in range(n_runs):
        copy = tmp_path / f"run{k + 1}"
        shutil.copytree(run, copy)
        code = main([
            "detect", str(eval_audio), "--checkpoint", str(copy / "distill_c2f/checkpoints/best.ckpt"),
            "-o", str(copy / "eval/events.csv"), "--scores-dir", str(copy / "eval/scores"),
        ])
        assert code == 0
        runs.append(str(copy))
    meta = tmp_path / "META.yaml"
    meta.write_text(yaml.safe_dump(META))
    out = tmp_path / "Doe_UNI_task4.zip"
    code = main([
        "package", "--format", fmt, "--system", "Doe_UNI_task4_1", "--runs", *runs,
        "--report", str(report_pdf), "--meta", str(meta), "-o", str(out),
    ])
    assert code == 0 and out.is_file()
    assert main(["package", "validate", str(out), "--format", fmt]) == 0
    with zipfile.ZipFile(out) as z:
        names = z.namelist()
        meta_yaml = yaml.safe_load(z.read("task4/Doe_UNI_task4_1/Doe_UNI_task4_1.meta.yaml"))
    manifest = json.loads((run / "manifest.json").read_text())
    params = json.dumps(meta_yaml)
    assert str(manifest["model"]["n_parameters"]) in params  # the parameter count comes from the run
    if fmt == "dcase2022":
        assert "task4/Doe_UNI_task4_1/Doe_UNI_task4_1.output.tsv" in names
    else:
        for k in (1, 2, 3):
            scores = [n for n in names if n.startswith(f"task4/Doe_UNI_task4_1/Doe_UNI_task4_1_run{k}.output/")]
            assert len(scores) == 12  # one score file per evaluation clip


def test_the_demo_names_the_tested_models_and_runs_its_detect_and_table_steps(tiny_corpus, mini_run):
    """What `make demo` shows after training, run by its own script on this run: the clip's labels
    beside the detections, and the test table with ATST-C2F and ATST-Clip named as such."""
    import os
    import subprocess
    import sys

    corpus, run = tiny_corpus, mini_run
    tested = json.loads((run / "test" / "metrics.json").read_text())["test"]
    assert {role: m["model"] for role, m in tested.items()} == {
        "student": "ATST-C2F (student)", "teacher": "ATST-Clip (fine-tuned teacher)"}
    untrained = json.loads((run / "untrained" / "metrics.json").read_text())["test"]
    assert untrained["student"]["model"] == "ATST-Frame (untrained)"

    env = {**os.environ, "DEMO_DIR": str(corpus.parent),  # the layout demo.sh uses: corpus/, runs/mini/
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    done = subprocess.run(["bash", str(REPO / "recipes/mini/demo.sh"), "detect", "table"],
                          capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "ground truth (s)" in done.stdout and "detected (s, mean score)" in done.stdout
    table = [line for line in done.stdout.splitlines() if line.startswith("| ")]
    student = tested["student"]
    assert table[0].startswith("| model (test split) | PSDS1 | PSDS2 |")
    assert table[1:] == [
        f"| ATST-Frame (untrained), stage `untrained` | {untrained['student']['psds1']:.3f} | "
        f"{untrained['student']['psds2']:.3f} | {untrained['student']['psds1_sed_scores_eval']:.3f} | "
        f"{untrained['student']['psds2_sed_scores_eval']:.3f} |",
        f"| ATST-C2F (student), stage `test` | {student['psds1']:.3f} | {student['psds2']:.3f} | "
        f"{student['psds1_sed_scores_eval']:.3f} | {student['psds2_sed_scores_eval']:.3f} |",
        f"| ATST-Clip (fine-tuned teacher), stage `test` | {tested['teacher']['psds1']:.3f} | "
        f"{tested['teacher']['psds2']:.3f} | {tested['teacher']['psds1_sed_scores_eval']:.3f} | "
        f"{tested['teacher']['psds2_sed_scores_eval']:.3f} |",
    ]


def test_the_readme_packaging_recipe_submits_the_scores_evaluate_scored(tiny_corpus, mini_run, tmp_path, report_pdf,
                                                                        monkeypatch):
    """README "Submission packaging", run as written (three copies of the run as seed1-3, the
    validation audio as EVAL_AUDIO): detect's --scores-dir holds the post-processed scores the test
    stage scored (test/student/scores, PSDS alike), --raw-scores-dir the unprocessed ones, and the
    DCASE 2023 package carries exactly those, with the runs' training data in its meta."""
    from readme import code_blocks, commands
    from sed_scores_eval.base_modules.io import read_sed_scores

    corpus, run = tiny_corpus, mini_run
    detect, *rest = commands("Submission packaging")
    assert detect[0] == "detect" and [c[0] for c in rest] == ["package", "package", "package"]
    monkeypatch.chdir(tmp_path)
    for k in (1, 2, 3):
        shutil.copytree(run, f"runs/seed{k}")
    eval_audio = str(corpus / "audio/validation/validation_16k")
    (example,) = code_blocks("Submission packaging", "yaml")
    Path("META.yaml").write_text(example)
    assert report_pdf == tmp_path / "report.pdf"  # the report the commands name
    for k in (1, 2, 3):  # "the same for seed2, seed3"
        args = [a.replace("EVAL_AUDIO", eval_audio).replace("seed1", f"seed{k}") for a in detect]
        assert main(args) == 0, args
    for args in rest:
        assert main(args) == 0, args

    tested = run / "test" / "student"
    for mine, theirs in (("scores", "scores"), ("scores_raw", "scores_raw")):
        got, want = read_sed_scores(f"runs/seed1/eval/{mine}"), read_sed_scores(str(tested / theirs))
        assert sorted(got) == sorted(want) and len(got) == 12
        for clip in want:
            np.testing.assert_allclose(got[clip].to_numpy(), want[clip].to_numpy(), atol=2e-5)
    # evaluate on detect's scores gives the PSDS the test stage recorded for its post-processed scores
    recorded = json.loads((tested / "metrics.json").read_text())
    out = tmp_path / "metrics.json"
    assert main(["evaluate", "--ground-truth", str(corpus / "metadata/validation/validation.tsv"),
                 "--durations", str(corpus / "metadata/validation/validation_durations.tsv"),
                 "--predictions", "runs/seed1/eval/scores", "--json", str(out)]) == 0
    evaluated = json.loads(out.read_text())
    for scenario in ("psds1", "psds2"):
        assert evaluated[f"{scenario}_threshold_free"] == pytest.approx(recorded[f"{scenario}_sed_scores_eval"], abs=1e-4)

    with zipfile.ZipFile("Doe_UNI_task4.zip") as z:
        for k in (1, 2, 3):
            for folder, source in ((f"Doe_UNI_task4_1_run{k}.output", "scores"),
                                   (f"Doe_UNI_task4_1_run{k}_unprocessed.output", "scores_raw")):
                for path in sorted(Path(f"runs/seed{k}/eval/{source}").glob("*.tsv")):
                    assert z.read(f"task4/Doe_UNI_task4_1/{folder}/{path.name}") == path.read_bytes()
        meta = yaml.safe_load(z.read("task4/Doe_UNI_task4_1/Doe_UNI_task4_1.meta.yaml"))
    manifest = json.loads((run / "manifest.json").read_text())
    assert meta["system"]["description"]["training_data"] == manifest["training_data"]
    assert [line.split(":")[0] for line in manifest["training_data"]] == ["synth_train", "weak"]  # the mini recipe's pools
    assert meta["submission"]["name"] == yaml.safe_load(example)["submission"]["name"]

"""Writing and validating DCASE Task 4 submission packages (dcase2022 and dcase2023)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from submission_helpers import CLIPS, META, make_run

from atst_sed.cli import package as cli_package
from atst_sed.cli.main import main
from atst_sed.events import read_strong_tsv
from atst_sed.labels import DESED_CLASSES
from atst_sed.submission import (
    SubmissionError,
    SystemSpec,
    build_package,
    read_run,
    read_systems_file,
    validate_package,
)
from atst_sed.submission.layout import FORMATS, LABEL_PATTERN

LABEL = "Doe_UNI_task4_1"


def _unzip(zip_path: Path, target: Path) -> Path:
    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(target)
    return target


def _meta(folder: Path, label: str = LABEL) -> dict:
    return yaml.safe_load((folder / "task4" / label / f"{label}.meta.yaml").read_text())


def _set_meta(folder: Path, edit, label: str = LABEL) -> None:
    path = folder / "task4" / label / f"{label}.meta.yaml"
    meta = yaml.safe_load(path.read_text())
    edit(meta)
    path.write_text(yaml.safe_dump(meta, sort_keys=False))


def _only(problems: list[str], needle: str) -> str:
    hits = [p for p in problems if needle in p]
    assert len(hits) == 1, (needle, problems)
    return hits[0]


# ------------------------------------------------------------------------------------ round trips
def test_dcase2022_package_is_valid_and_carries_the_run(tmp_path, runs, report_pdf, meta_yaml):
    out = tmp_path / "out" / "sub.zip"
    report = build_package([SystemSpec(LABEL, runs[:1])], report_pdf, meta_yaml, out)
    assert report.ok and report.systems == [LABEL]
    with zipfile.ZipFile(out) as archive:
        assert sorted(archive.namelist()) == [
            f"task4/{LABEL}/{LABEL}.meta.yaml",
            f"task4/{LABEL}/{LABEL}.output.tsv",
            "task4/Doe_UNI_task4_technical_report.pdf",
        ]
        assert archive.read("task4/Doe_UNI_task4_technical_report.pdf") == report_pdf.read_bytes()
    folder = _unzip(out, tmp_path / "x")
    meta = _meta(folder)
    manifest = json.loads((runs[0] / "manifest.json").read_text())
    assert meta["submission"]["label"] == LABEL
    assert meta["submission"]["authors"] == META["submission"]["authors"]
    assert meta["system"]["description"]["input_sampling_rate"] == manifest["frontend"]["sample_rate"]
    assert meta["system"]["description"]["acoustic_features"] == "log-mel energies"
    assert meta["system"]["description"]["training_data"] == manifest["training_data"]
    assert meta["system"]["description"]["machine_learning_method"] == "transformer"  # from META.yaml
    assert meta["system"]["complexity"]["total_parameters"] == manifest["model"]["n_parameters"]
    assert meta["system"]["software"]["torch"] == "2.11.0"
    assert meta["results"]["development_dataset"]["overall"] == {"PSDS1": 0.41, "PSDS2": 0.61}
    # The event table round-trips: same events as the run's eval/events.tsv.
    got = read_strong_tsv(folder / "task4" / LABEL / f"{LABEL}.output.tsv", classes=DESED_CLASSES)
    want = read_strong_tsv(runs[0] / "eval" / "events.tsv", classes=DESED_CLASSES)
    key = ["filename", "onset", "event_label"]
    pd.testing.assert_frame_equal(got.sort_values(key).reset_index(drop=True),
                                  want.sort_values(key).reset_index(drop=True))
    assert list(out.parent.iterdir()) == [out]  # no temporary leftovers


def test_dcase2023_package_has_three_runs_of_scores(tmp_path, runs, report_pdf, meta_yaml):
    from sed_scores_eval.base_modules.io import read_sed_scores

    out = tmp_path / "sub.zip"
    assert build_package([SystemSpec(LABEL, runs)], report_pdf, meta_yaml, out, fmt="dcase2023",
                         expected_clips=len(CLIPS)).ok
    folder = _unzip(out, tmp_path / "x")
    system = folder / "task4" / LABEL
    for k, run in enumerate(runs, 1):
        scores = read_sed_scores(system / f"{LABEL}_run{k}.output")  # the reference reader
        assert sorted(scores) == sorted(CLIPS)
        source = read_sed_scores(run / "eval" / "scores")
        for clip in CLIPS:
            pd.testing.assert_frame_equal(scores[clip], source[clip])
            assert list(scores[clip].columns[2:]) == list(DESED_CLASSES)
    assert (system / f"{LABEL}_run1_unprocessed.output").is_dir()  # only run 1 has raw scores
    assert not (system / f"{LABEL}_run2_unprocessed.output").exists()
    meta = _meta(folder)
    psds = meta["results"]["devtest"]["desed"]  # dcase2023: sed_scores_eval PSDS, mean of the runs
    assert psds["PSDS1"] == pytest.approx(np.mean([0.42, 0.43, 0.44]))
    assert psds["PSDS2"] == pytest.approx(np.mean([0.62, 0.63, 0.64]))


def test_dcase2023_package_takes_atst_sed_runs_with_64_ms_score_files(tmp_path, report_pdf, meta_yaml):
    """recipes/atst_sed: stages stage1 / stage2 / test, score files of 156 frames of 64 ms, kept as they are."""
    from sed_scores_eval.base_modules.io import read_sed_scores

    runs = [make_run(tmp_path / "runs", f"atst_sed_s{i}", seed=i, psds=(0.55 + 0.01 * i, 0.80), stages=("stage1", "stage2", "test"),
                     frames_per_clip=156, frame_seconds=0.064) for i in (1, 2, 3)]
    out = tmp_path / "sub.zip"
    assert build_package([SystemSpec(LABEL, runs)], report_pdf, meta_yaml, out, fmt="dcase2023", expected_clips=len(CLIPS)).ok
    system = _unzip(out, tmp_path / "x") / "task4" / LABEL
    for k, run in enumerate(runs, 1):
        scores = read_sed_scores(system / f"{LABEL}_run{k}.output")
        for clip in CLIPS:
            assert len(scores[clip]) == 156 and scores[clip]["offset"].iloc[-1] == pytest.approx(9.984)
            pd.testing.assert_frame_equal(scores[clip], read_sed_scores(run / "eval" / "scores")[clip])


def test_package_is_deterministic(tmp_path, runs, report_pdf, meta_yaml):
    a, b = tmp_path / "a.zip", tmp_path / "b.zip"
    build_package([SystemSpec(LABEL, runs)], report_pdf, meta_yaml, a, fmt="dcase2023")
    build_package([SystemSpec(LABEL, runs)], report_pdf, meta_yaml, b, fmt="dcase2023")
    assert a.read_bytes() == b.read_bytes()


def test_detect_csv_is_converted(tmp_path, report_pdf, meta_yaml):
    run = make_run(tmp_path, "run", events=False)
    (run / "eval" / "events.csv").write_text(
        "filename,onset,offset,event_label,score\n"
        f"/audio/eval/{CLIPS[0]}.wav,0.200,1.000,Cat,0.81\n"
        f"/audio/eval/{CLIPS[1]}.wav,2.000,4.040,Blender,0.66\n"
    )
    out = tmp_path / "sub.zip"
    build_package([SystemSpec(LABEL, [run])], report_pdf, meta_yaml, out)
    with zipfile.ZipFile(out) as archive:
        text = archive.read(f"task4/{LABEL}/{LABEL}.output.tsv").decode()
    assert text.splitlines() == [
        "filename\tonset\toffset\tevent_label",
        f"{CLIPS[0]}.wav\t0.200\t1.000\tCat",
        f"{CLIPS[1]}.wav\t2.000\t4.040\tBlender",
    ]


def test_metrics_fall_back_to_the_latest_stage(tmp_path):
    run = make_run(tmp_path, "run")
    (run / "test" / "student" / "metrics.json").unlink()
    (run / "finetune_frame" / "metrics.json").write_text(json.dumps({"psds1": 0.25, "psds2": 0.5}))
    assert read_run(run).development_metrics() == ({"psds1": 0.25, "psds2": 0.5}, run / "finetune_frame" / "metrics.json")
    (run / "finetune_frame" / "metrics.json").write_text(json.dumps({"loss": 0.1}))  # no PSDS: not used
    assert read_run(run).development_metrics() == ({}, None)


def test_up_to_four_systems_from_a_systems_file(tmp_path, report_pdf, meta_yaml):
    for i in range(1, 6):
        make_run(tmp_path / "runs", f"sys{i}", seed=i, scores=False)
    systems = tmp_path / "systems.yaml"

    def write(n: int) -> None:
        systems.write_text(yaml.safe_dump({
            "format": "dcase2022", "report": str(report_pdf), "meta": "META.yaml",
            "systems": [{"label": f"Doe_UNI_task4_{i}", "runs": [f"runs/sys{i}"]} for i in range(1, n + 1)],
        }))

    write(4)
    out = tmp_path / "four.zip"
    assert main(["package", "--systems", str(systems), "-o", str(out)]) == 0
    assert validate_package(out).systems == [f"Doe_UNI_task4_{i}" for i in range(1, 5)]
    write(5)  # a fifth system: label index 5 is invalid and 5 > 4 systems
    spec = read_systems_file(systems)
    with pytest.raises(SubmissionError) as err:
        build_package(spec["systems"], spec["report"], spec["meta"], tmp_path / "five.zip", fmt=spec["format"])
    _only(err.value.problems, "5 systems given; at most 4")
    assert not (tmp_path / "five.zip").exists()


# ----------------------------------------------------------------------------- refusals (writer)
def test_missing_eval_outputs_name_the_detect_command(tmp_path, report_pdf, meta_yaml):
    run = make_run(tmp_path, "run", events=False, scores=False)
    out = tmp_path / "sub.zip"
    with pytest.raises(SubmissionError) as err:
        build_package([SystemSpec(LABEL, [run])], report_pdf, meta_yaml, out)
    line = _only(err.value.problems, "no evaluation-set detections")
    assert f"atst-sed detect EVAL_AUDIO --checkpoint {run}/finetune_frame/checkpoints/best.ckpt" in line
    assert f"--scores-dir {run}/eval/scores --raw-scores-dir {run}/eval/scores_raw" in line
    assert len(err.value.problems) == 1  # the validator's "missing output" is not repeated
    assert not out.exists() and list(tmp_path.glob(".sub.zip*")) == []


def test_missing_meta_fields_are_all_listed(tmp_path, report_pdf):
    run = make_run(tmp_path, "run", psds=(None, None))
    manifest = json.loads((run / "manifest.json").read_text())
    del manifest["frontend"], manifest["model"]
    (run / "manifest.json").write_text(json.dumps(manifest))
    (run / "test" / "student" / "metrics.json").write_text("{}")
    empty = tmp_path / "META.yaml"
    empty.write_text("submission: {}\n")
    with pytest.raises(SubmissionError) as err:
        build_package([SystemSpec(LABEL, [run])], report_pdf, empty, tmp_path / "sub.zip")
    for field in ("submission.name", "submission.abbreviation", "submission.authors",
                  "system.description.input_sampling_rate", "system.complexity.total_parameters",
                  "results.development_dataset.overall.PSDS1", "results.development_dataset.overall.PSDS2"):
        _only(err.value.problems, f"missing required field {field} ")
    assert len(err.value.problems) == 7


def test_a_meta_yaml_without_the_human_fields_is_refused_with_each_one_listed(tmp_path, runs, report_pdf, capsys):
    """A first try with an empty META.yaml: one refusal naming every field the user must give, and
    where (the runs fill the rest)."""
    meta = tmp_path / "META.yaml"
    meta.write_text("{}\n")
    out = tmp_path / "sub.zip"
    code = main(["package", "--system", LABEL, "--runs", str(runs[0]), "--report", str(report_pdf),
                 "--meta", str(meta), "-o", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and not out.exists()
    staged = f"task4/{LABEL}/{LABEL}.meta.yaml"
    assert err == [
        f"error: {staged}: missing required field submission.name (a non-empty string): give it in {meta}",
        f"error: {staged}: missing required field submission.abbreviation (a non-empty string (at most 10 "
        f"characters)): give it in {meta}",
        f"error: {staged}: missing required field submission.authors (a list with one corresponding author): "
        f"give it in {meta}",
        f"{out}: not written (3 problem(s))",
    ]


def test_the_readme_meta_yaml_gives_every_required_field(tmp_path, runs, report_pdf):
    from readme import code_blocks

    (example,) = code_blocks("Submission packaging", "yaml")
    meta = tmp_path / "META.yaml"
    meta.write_text(example)
    for fmt, given in (("dcase2022", runs[:1]), ("dcase2023", runs)):
        report = build_package([SystemSpec(LABEL, given)], report_pdf, meta, tmp_path / f"{fmt}.zip", fmt=fmt)
        assert report.ok and not report.warnings, report.warnings
    required = {"submission.name", "submission.abbreviation", "submission.authors"}
    assert all(f"{field.split('.')[1]}:" in example for field in required)
    assert {line.split(":")[0].strip() for line in example.splitlines() if "# required" in line} == \
        {field.split(".")[1] for field in required}


@pytest.mark.parametrize("again", ["same path", "another path"])
def test_one_run_folder_given_twice_is_refused(again, tmp_path, runs, report_pdf, meta_yaml, capsys, monkeypatch):
    """DCASE 2023 asks for three independent trainings; the same folder twice would fake one."""
    monkeypatch.chdir(tmp_path)
    first = str(runs[0].relative_to(tmp_path))
    repeat = first if again == "same path" else str(runs[0])  # relative and absolute
    out = tmp_path / "sub.zip"
    code = main(["package", "--format", "dcase2023", "--system", LABEL, "--runs", first, str(runs[1]), repeat,
                 "--report", str(report_pdf), "--meta", str(meta_yaml), "-o", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and not out.exists()
    assert err == [f"error: {LABEL}: one run folder is given 2 times ({first}, {repeat}); "
                   "a system's runs must be independent trainings", f"{out}: not written (1 problem(s))"]


def test_unsafe_or_repeated_labels_are_refused(tmp_path, runs, report_pdf, meta_yaml):
    with pytest.raises(SubmissionError) as err:
        build_package([SystemSpec("../Doe_UNI_task4_1", runs[:1]), SystemSpec(LABEL, runs[1:2]),
                       SystemSpec(LABEL, runs[2:3])], report_pdf, meta_yaml, tmp_path / "out" / "s.zip")
    _only(err.value.problems, "system label '../Doe_UNI_task4_1' is not a folder name")
    _only(err.value.problems, f"system label '{LABEL}' given more than once")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["META.yaml", "report.pdf", "runs"]  # not even out/


def test_dcase2023_needs_three_runs(tmp_path, runs, report_pdf, meta_yaml):
    with pytest.raises(SubmissionError) as err:
        build_package([SystemSpec(LABEL, runs[:2])], report_pdf, meta_yaml, tmp_path / "s.zip", fmt="dcase2023")
    assert err.value.problems == [f"{LABEL}: 2 run folder(s) given; dcase2023 takes 3 run folders per "
                                  "system (independent training runs)"]


def test_invalid_package_is_refused_and_nothing_written(tmp_path, runs, report_pdf):
    meta = yaml.safe_load(yaml.safe_dump(META))
    meta["submission"]["name"] = "Our baseline"
    meta["submission"]["authors"][1]["corresponding"] = True
    path = tmp_path / "META.yaml"
    path.write_text(yaml.safe_dump(meta))
    out = tmp_path / "sub.zip"
    out.write_text("previous package")  # nothing already written is lost
    with pytest.raises(SubmissionError) as err:
        build_package([SystemSpec("Doe_task4_1", runs[:1])], report_pdf, path, out)
    problems = err.value.problems
    _only(problems, "folder name 'Doe_task4_1' is not a system label")
    _only(problems, "submission.name 'Our baseline' contains 'baseline'")
    _only(problems, "2 corresponding authors (Doe, Roe); exactly one is required")
    assert out.read_text() == "previous package"


# -------------------------------------------------------------------------- planted defects
@pytest.fixture
def valid_dir(tmp_path, runs, report_pdf, meta_yaml) -> Path:
    out = tmp_path / "sub.zip"
    build_package([SystemSpec(LABEL, runs)], report_pdf, meta_yaml, out, fmt="dcase2023")
    folder = _unzip(out, tmp_path / "pkg")
    assert validate_package(folder).ok
    return folder


def test_wrong_label_format(valid_dir):
    _set_meta(valid_dir, lambda m: m["submission"].update(label="DoeUNI_task4_1"))
    problems = validate_package(valid_dir).problems
    _only(problems, "submission.label 'DoeUNI_task4_1' is not of the form Lastname_INST_task4_N")
    _only(problems, "differs from its folder name")


def test_label_differs_from_folder(valid_dir):
    _set_meta(valid_dir, lambda m: m["submission"].update(label="Doe_UNI_task4_2"))
    assert validate_package(valid_dir).problems == [
        f"task4/{LABEL}/{LABEL}.meta.yaml: submission.label 'Doe_UNI_task4_2' differs from its folder name '{LABEL}'"]


def test_missing_run(valid_dir):
    import shutil

    shutil.rmtree(valid_dir / "task4" / LABEL / f"{LABEL}_run3.output")
    assert validate_package(valid_dir).problems == [
        f"task4/{LABEL}: missing run 3: {LABEL}_run3.output/ (dcase2023 needs 3 independent runs)"]


def test_missing_class_column(valid_dir):
    path = valid_dir / "task4" / LABEL / f"{LABEL}_run2.output" / f"{CLIPS[1]}.tsv"
    pd.read_csv(path, sep="\t").drop(columns="Dog").to_csv(path, sep="\t", index=False)
    assert validate_package(valid_dir).problems == [
        f"task4/{LABEL}/{LABEL}_run2.output: class column 'Dog' missing in 1 of 3 score file(s) "
        f"(first: {CLIPS[1]}.tsv)"]


def test_missing_pdf(valid_dir):
    (valid_dir / "task4" / "Doe_UNI_task4_technical_report.pdf").unlink()
    assert validate_package(valid_dir).problems == ["task4: no technical report: put the PDF in this folder"]


def test_fake_pdf(valid_dir):
    (valid_dir / "task4" / "Doe_UNI_task4_technical_report.pdf").write_text("not really")
    _only(validate_package(valid_dir).problems, "not a PDF file")


def test_bad_yaml(valid_dir):
    path = valid_dir / "task4" / LABEL / f"{LABEL}.meta.yaml"
    path.write_text("submission:\n  label: [unclosed\n  name: x\n")
    problems = validate_package(valid_dir).problems
    assert len(problems) == 1 and problems[0].startswith(f"task4/{LABEL}/{LABEL}.meta.yaml: line ")
    assert "invalid YAML" in problems[0]


def test_baseline_in_a_name(valid_dir):
    _set_meta(valid_dir, lambda m: m["submission"].update(abbreviation="Baseline2"))
    assert validate_package(valid_dir).problems == [
        f"task4/{LABEL}/{LABEL}.meta.yaml: submission.abbreviation 'Baseline2' contains 'baseline' "
        "(not allowed in label, name or abbreviation)"]


def test_non_numeric_parameter_count_and_sampling_rate(valid_dir):
    def edit(m):
        m["system"]["complexity"]["total_parameters"] = "1.2M"
        m["system"]["description"]["input_sampling_rate"] = "16kHz"

    _set_meta(valid_dir, edit)
    problems = validate_package(valid_dir).problems
    _only(problems, "system.complexity.total_parameters must be a positive integer (got '1.2M')")
    _only(problems, "system.description.input_sampling_rate must be a number (Hz) (got '16kHz')")


def test_two_corresponding_authors(valid_dir):
    _set_meta(valid_dir, lambda m: m["submission"]["authors"][1].update(corresponding=True))
    _only(validate_package(valid_dir).problems, "2 corresponding authors (Doe, Roe)")


def test_no_corresponding_author(valid_dir):
    _set_meta(valid_dir, lambda m: m["submission"]["authors"][0].pop("corresponding"))
    _only(validate_package(valid_dir).problems, "no corresponding author")


def test_non_numeric_result(valid_dir):
    _set_meta(valid_dir, lambda m: m["results"]["devtest"]["desed"].update(PSDS1="0.41 (student)"))
    _only(validate_package(valid_dir).problems, "results.devtest.desed.PSDS1 must be a number")


def test_run_clip_counts_must_agree_and_match(valid_dir):
    (valid_dir / "task4" / LABEL / f"{LABEL}_run1.output" / f"{CLIPS[0]}.tsv").unlink()
    problems = validate_package(valid_dir, expected_clips=3).problems
    _only(problems, "run1 holds 2 score files, expected 3")
    _only(problems, "the runs score different sets of clips (run1: 2, run2: 3, run3: 3 files)")


def test_path_traversal_and_absolute_names_in_zip(tmp_path, valid_dir):
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as archive:
        for path in sorted(p for p in valid_dir.rglob("*") if p.is_file()):
            archive.write(path, path.relative_to(valid_dir).as_posix())
        archive.writestr("task4/../../evil.sh", "rm -rf ~")
        archive.writestr("/etc/passwd", "x")
        archive.writestr("task4/Doe UNI$.txt", "x")
    problems = validate_package(bad).problems
    assert problems == [
        "task4/../../evil.sh: path traversal ('..') in a member name",
        "/etc/passwd: absolute path in the package (names must be relative)",
        "task4/Doe UNI$.txt: unsafe name component 'Doe UNI$.txt' (allowed: letters, digits, '.', '_', '-')",
    ]
    assert not (tmp_path / "evil.sh").exists()  # nothing was extracted


def test_many_problems_reported_together(tmp_path, valid_dir):
    import shutil

    shutil.rmtree(valid_dir / "task4" / LABEL / f"{LABEL}_run2.output")
    (valid_dir / "task4" / "Doe_UNI_task4_technical_report.pdf").unlink()

    def edit(m):
        m["submission"]["name"] = "baseline copy"
        m["submission"]["authors"][1]["corresponding"] = True
        m["system"]["complexity"]["total_parameters"] = 1.5

    _set_meta(valid_dir, edit)
    problems = validate_package(valid_dir).problems
    for needle in ("no technical report", "missing run 2", "contains 'baseline'",
                   "2 corresponding authors", "total_parameters must be a positive integer"):
        _only(problems, needle)
    assert len(problems) == 5


def test_dcase2022_event_table_defects(tmp_path, runs, report_pdf, meta_yaml):
    out = tmp_path / "sub.zip"
    build_package([SystemSpec(LABEL, runs[:1])], report_pdf, meta_yaml, out)
    folder = _unzip(out, tmp_path / "pkg")
    table = folder / "task4" / LABEL / f"{LABEL}.output.tsv"
    table.write_text("filename\tonset\toffset\tevent_label\n"
                     "a.wav\t1.0\t0.5\tDog\n"
                     "\n"
                     "b.wav\tx\t2.0\tCat\n"
                     "c.wav\t1.0\t2.0\tGiraffe\n"
                     "d.wav\t2.0\t1.0\tDog\n")
    problems = validate_package(folder, expected_clips=3).problems
    assert problems == [
        f"task4/{LABEL}/{LABEL}.output.tsv: line 4: onset/offset is not a finite number",
        f"task4/{LABEL}/{LABEL}.output.tsv: line 2: onset is not before offset (and 1 more rows)",
        f"task4/{LABEL}/{LABEL}.output.tsv: line 5: unknown event_label 'Giraffe'",
        f"task4/{LABEL}/{LABEL}.output.tsv: lists 4 clips, more than the 3 evaluation clips",
    ]
    assert validate_package(folder).problems == problems[:3]  # clips without events may be absent


def test_wrapped_zip_and_task_folder_are_accepted(tmp_path, valid_dir):
    wrapped = tmp_path / "wrapped.zip"
    with zipfile.ZipFile(wrapped, "w") as archive:
        for path in sorted(p for p in valid_dir.rglob("*") if p.is_file()):
            archive.write(path, "my_submission/" + path.relative_to(valid_dir).as_posix())
    assert validate_package(wrapped).ok
    assert validate_package(valid_dir / "task4").ok


def test_template_label_is_rejected(valid_dir):
    _set_meta(valid_dir, lambda m: m["submission"].update(label="Lastname_INST_task4_1"))
    _only(validate_package(valid_dir).problems, "is the template's example")


def test_label_pattern():
    assert LABEL_PATTERN.match("Doe_UNI_task4_1") and LABEL_PATTERN.match("Van-Dam_TU8_task4_4")
    bad_labels = ("Doe_UNI_task4_5", "Doe_UNI_task4_0", "Doe_task4_1", "Doe_UNI_task3_1", "Doe_UNI_task4_1_x",
                  "Doe_UN I_task4_1")
    for bad in bad_labels:
        assert not LABEL_PATTERN.match(bad), bad


# ------------------------------------------------------------------------------------------- CLI
def test_cli_build_and_validate(tmp_path, runs, report_pdf, meta_yaml, capsys):
    out = tmp_path / "sub.zip"
    args = ["package", "--system", LABEL, "--runs", *map(str, runs), "--report", str(report_pdf),
            "--meta", str(meta_yaml), "-o", str(out), "--format", "dcase2023", "--expected-clips", "3"]
    assert main(args) == 0
    assert main(["package", "validate", str(out)]) == 0
    assert "valid (1 system(s): Doe_UNI_task4_1)" in capsys.readouterr().out
    assert main(["package", "validate", str(out), "--expected-clips", "4"]) == 1
    err = capsys.readouterr().err
    assert err.count("error: ") == 3 and "not a valid submission" in err


def test_cli_refuses_invalid_and_reports_every_problem(tmp_path, runs, report_pdf, capsys):
    meta = tmp_path / "META.yaml"
    meta.write_text(yaml.safe_dump({"submission": {"name": "x", "abbreviation": "x"}}))
    out = tmp_path / "sub.zip"
    code = main(["package", "--system", LABEL, "--runs", str(runs[0]), "--report", str(report_pdf),
                 "--meta", str(meta), "-o", str(out)])
    assert code == 1 and not out.exists()
    err = capsys.readouterr().err
    assert "missing required field submission.authors" in err and "not written (1 problem(s))" in err


def test_cli_argument_errors(tmp_path, runs, capsys):
    assert main(["package", "--system", LABEL, "--system", "Doe_UNI_task4_2", "--runs", str(runs[0]),
                 "--report", "r.pdf", "--meta", "m.yaml", "-o", str(tmp_path / "s.zip")]) == 2
    assert "2 --system but 1 --runs" in capsys.readouterr().err
    assert main(["package", "--system", LABEL, "--runs", str(runs[0])]) == 2
    assert "missing --report, --meta, -o" in capsys.readouterr().err
    assert main(["package", "validate", str(tmp_path / "nothing.zip")]) == 1
    assert "no such file or folder" in capsys.readouterr().err


def test_cli_help_documents_both_forms(capsys):
    with pytest.raises(SystemExit):
        main(["package", "--help"])
    text = capsys.readouterr().out
    assert "atst-sed package validate SUBMISSION.zip|DIR" in text and "--system LABEL" in text
    with pytest.raises(SystemExit):
        main(["package", "validate", "--help"])
    assert "--expected-clips" in capsys.readouterr().out
    assert cli_package.FORMATS == FORMATS


def test_eval_audio_runs_detection_into_the_run(tmp_path, report_pdf, meta_yaml):
    import soundfile as sf
    import torch

    from atst_sed.models.checkpoint import save_checkpoint
    from atst_sed.models.encoder import EncoderConfig
    from atst_sed.models.sed import SEDModel

    run = make_run(tmp_path, "run", events=False, scores=False)
    model = SEDModel(EncoderConfig.named("frame_tiny"), DESED_CLASSES).eval()
    with torch.no_grad():
        model.head.linear.bias[DESED_CLASSES.index("Speech")] = 8.0  # always detects Speech
    save_checkpoint(run / "finetune_frame" / "checkpoints" / "best.ckpt", model, classes=list(DESED_CLASSES))
    audio = tmp_path / "eval_audio"
    audio.mkdir()
    rng = np.random.default_rng(0)
    for clip in CLIPS[:2]:
        sf.write(audio / f"{clip}.wav", (0.1 * rng.standard_normal(16000 * 2)).astype(np.float32), 16000)
    out = tmp_path / "sub.zip"
    assert build_package([SystemSpec(LABEL, [run])], report_pdf, meta_yaml, out, eval_audio=audio,
                         expected_clips=2).ok
    assert sorted(p.stem for p in (run / "eval" / "scores").glob("*.tsv")) == sorted(CLIPS[:2])
    with zipfile.ZipFile(out) as archive:
        rows = archive.read(f"task4/{LABEL}/{LABEL}.output.tsv").decode().splitlines()[1:]
    assert sorted({r.split("\t")[0] for r in rows}) == sorted(f"{c}.wav" for c in CLIPS[:2])
    speech = {r.split("\t")[0] for r in rows if r.split("\t")[3] == "Speech"}
    assert speech == {f"{c}.wav" for c in CLIPS[:2]}

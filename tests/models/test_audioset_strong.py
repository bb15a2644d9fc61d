"""The published AudioSet-strong ATST-Frame (407 classes) as a sound detector a person can read:
classes carried as MIDs in the published output order, display names from the AudioSet ontology in
the CSV and the pictures, MIDs in score files; ``--labels``, ``--classes`` and ``--top-k``; its
encoder in ``embed``; the Python API. The model is the golden file made with the official code
(tests/golden/audiossl_as_strong_frame: seeded random weights, 407 outputs)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from models_helpers import GOLDEN, golden_arrays, golden_checkpoint, max_abs

from atst_sed import load_model
from atst_sed.class_names import AUDIOSET_STRONG_TABLE, audioset_strong_table
from atst_sed.cli.main import main
from atst_sed.score_files import read_score_files

CHECKPOINT = golden_checkpoint("audiossl_as_strong_frame")
AUDIO = GOLDEN / "inputs" / "synth_10s.flac"
MIDS, NAMES = audioset_strong_table()


def _detect(tmp_path: Path, *options: str, audio: Path = AUDIO) -> tuple[int, pd.DataFrame, dict[str, pd.DataFrame]]:
    """(exit code, events CSV, raw score tables) of one fp32 ``atst-sed detect`` run on the golden file."""
    run = len(list(tmp_path.glob("run*")))
    folder = tmp_path / f"run{run}"
    folder.mkdir()
    rc = main(["detect", str(audio), "--checkpoint", str(CHECKPOINT), "--device", "cpu", "--precision", "fp32",
               "-o", str(folder / "events.csv"), "--raw-scores-dir", str(folder / "scores"), *options])
    if rc != 0:
        return rc, pd.DataFrame(), {}
    events = pd.read_csv(folder / "events.csv", keep_default_na=False)
    return rc, events, read_score_files(folder / "scores")[0]


# ------------------------------------------------------------------------------ the shipped table
def test_the_shipped_table_lists_the_407_mids_in_the_published_order_with_ontology_names():
    assert len(MIDS) == len(set(MIDS)) == 407 and len(set(NAMES.values())) == 407  # names identify classes too
    assert list(MIDS) != sorted(MIDS)  # the checkpoint's order is the label file's, not the sorted list
    assert MIDS[:3] == ("/m/032s66", "/m/01h3n", "/m/02g901")  # audiossl PR #13 (e584998) common_labels.txt
    assert (NAMES["/m/09x0r"], NAMES["/m/0bt9lr"], NAMES["/m/032s66"]) == ("Speech", "Dog", "Gunshot, gunfire")
    assert NAMES["/t/dd00141"] == "Pant (dog)"  # one of the 17 strong-release classes the ontology lacks
    header = AUDIOSET_STRONG_TABLE.read_text(encoding="utf-8").split("\nmid\t")[0]
    assert "CC BY-SA 4.0" in header and "github.com/audioset/ontology" in header  # the licence's attribution


def test_a_file_of_the_audioset_strong_layout_names_its_outputs_by_the_published_mids():
    model = load_model(CHECKPOINT, device="cpu")
    assert tuple(model.classes) == MIDS and model.display_names["/m/09x0r"] == "Speech"
    assert model.spec.meta["dataset"] == "as_strong" and len(model.classes) == 407


# ------------------------------------------------------------------------------------ detect CSV
def test_the_csv_names_events_by_display_name_and_score_files_keep_the_mids(tmp_path):
    rc, by_name, scores = _detect(tmp_path, "--thresholds", "0.7")
    rc_mid, by_mid, scores_mid = _detect(tmp_path, "--thresholds", "0.7", "--label-format", "mid")
    assert rc == rc_mid == 0 and len(by_name) > 5
    assert set(by_name["event_label"]) <= set(NAMES.values()) and set(by_mid["event_label"]) <= set(MIDS)
    # the same events, only their labels read differently
    named = by_mid.assign(event_label=by_mid["event_label"].map(NAMES))
    key = ["onset", "offset", "event_label"]
    pd.testing.assert_frame_equal(by_name.sort_values(key).reset_index(drop=True), named.sort_values(key).reset_index(drop=True))
    for tables in (scores, scores_mid):
        assert list(tables["synth_10s"].columns[2:]) == list(MIDS)  # evaluation reads ids


def test_detect_reproduces_the_official_probabilities_and_its_events_follow_them(tmp_path):
    rc, events, scores = _detect(tmp_path, "--label-format", "mid")
    probs = scores["synth_10s"][list(MIDS)].to_numpy()  # (250, 407)
    golden = golden_arrays("audiossl_as_strong_frame", "synth_10s")
    assert rc == 0 and max_abs(probs.T[golden["class_rows"]], golden["frame_probs"]) <= 1e-4
    # official decoding: 0.5, median filter of 7 frames on the decisions, 40 ms frames
    from scipy.ndimage import median_filter

    active = median_filter(probs > 0.5, size=(7, 1), mode="reflect")
    for _, row in events.iterrows():
        c, start, stop = MIDS.index(row["event_label"]), round(row["onset"] / 0.04), round(row["offset"] / 0.04)
        assert active[start:stop, c].all()
        assert (start == 0 or not active[start - 1, c]) and (stop == 250 or not active[stop, c])
    assert len(events) == int(np.sum(np.diff(np.vstack([np.zeros((1, 407)), active, np.zeros((1, 407))]), axis=0) == 1))


def test_classes_keep_only_the_chosen_ones_by_name_or_mid_in_every_output(tmp_path):
    _, full_events, full_scores = _detect(tmp_path, "--label-format", "mid")
    rc, events, scores = _detect(tmp_path, "--classes", "speech,Gunshot, gunfire", "--classes", "/m/0bt9lr",
                                 "--label-format", "mid")
    chosen = ["/m/032s66", "/m/0bt9lr", "/m/09x0r"]  # model order
    assert rc == 0 and list(scores["synth_10s"].columns[2:]) == chosen
    pd.testing.assert_frame_equal(scores["synth_10s"], full_scores["synth_10s"][["onset", "offset", *chosen]])
    expected = full_events[full_events["event_label"].isin(chosen)].reset_index(drop=True)
    pd.testing.assert_frame_equal(events, expected)


def test_an_unknown_class_is_one_line_with_close_matches_and_exit_2(tmp_path, capsys):
    rc, _, _ = _detect(tmp_path, "--classes", "Dgo")
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and err.startswith("atst-sed detect: ")
    assert "--classes: unknown class 'Dgo'" in err and "did you mean 'Dog'" in err


def test_top_k_per_frame_lets_at_most_k_classes_be_active_in_any_frame(tmp_path):
    _, all_events, scores = _detect(tmp_path, "--label-format", "mid", "--median-filter", "1")
    rc, events, _ = _detect(tmp_path, "--label-format", "mid", "--median-filter", "1", "--top-k", "2")
    probs = scores["synth_10s"][list(MIDS)].to_numpy()
    top2 = np.argsort(-probs, axis=1, kind="stable")[:, :2]
    expected = np.zeros_like(probs, dtype=bool)
    np.put_along_axis(expected, top2, True, axis=1)
    expected &= probs > 0.5
    active = np.zeros_like(expected)
    for _, row in events.iterrows():
        active[round(row["onset"] / 0.04): round(row["offset"] / 0.04), MIDS.index(row["event_label"])] = True
    assert rc == 0 and active.sum(axis=1).max() <= 2 and len(events) < len(all_events)
    np.testing.assert_array_equal(active, expected)


def test_top_k_per_event_keeps_the_k_highest_scoring_events(tmp_path):
    _, all_events, _ = _detect(tmp_path)
    rc, events, scores = _detect(tmp_path, "--top-k", "3", "--top-k-per", "event")
    best = all_events.sort_values("score", ascending=False, kind="stable").head(3)
    assert rc == 0 and len(events) == 3
    assert sorted(events["score"]) == sorted(best["score"]) and set(events["event_label"]) == set(best["event_label"])
    assert list(scores["synth_10s"].columns[2:]) == list(MIDS)  # score files are never cut


def test_a_label_file_gives_the_class_order_and_names_and_a_wrong_one_is_refused(tmp_path, capsys):
    labels = tmp_path / "labels.tsv"
    labels.write_text("mid\tdisplay_name\n" + "".join(f"{m}\tsound {i}\n" for i, m in enumerate(MIDS)))
    rc, events, _ = _detect(tmp_path, "--labels", str(labels), "--thresholds", "0.7")
    assert rc == 0 and len(events) and all(label.startswith("sound ") for label in events["event_label"])
    ontology = tmp_path / "ontology.json"
    ontology.write_text(json.dumps([{"id": "/m/09x0r", "name": "Talking"}]))
    rc, events, _ = _detect(tmp_path, "--labels", str(ontology), "--classes", "talking")
    assert rc == 0 and set(events["event_label"]) <= {"Talking"}
    short = tmp_path / "short.txt"
    short.write_text("\n".join(MIDS[:10]) + "\n")
    rc, _, _ = _detect(tmp_path, "--labels", str(short))
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert rc == 2 and str(short) in err and "the label file has 10 classes, the model 407" in err


# ------------------------------------------------------------------------------- embed and the API
def test_embed_gives_the_tokens_the_head_reads(tmp_path):
    out = tmp_path / "emb.npz"
    assert main(["embed", str(AUDIO), "--checkpoint", str(CHECKPOINT), "-o", str(out), "--device", "cpu"]) == 0
    with np.load(out) as npz:
        tokens = torch.from_numpy(npz["embeddings"])  # (250, 64) last block + final norm
    head = load_model(CHECKPOINT, device="cpu").detector.model.head
    with torch.no_grad():
        probs = torch.sigmoid(head.linear(tokens)).numpy().T  # the official head: sigmoid(linear(h))
    golden = golden_arrays("audiossl_as_strong_frame", "synth_10s")
    assert max_abs(probs[golden["class_rows"]], golden["frame_probs"]) <= 1e-4


def test_the_api_gives_names_mids_classes_and_top_k_as_the_command_line(tmp_path):
    _, csv_events, _ = _detect(tmp_path, "--classes", "Speech,Dog", "--thresholds", "0.3")
    model = load_model(CHECKPOINT, device="cpu", classes=["Speech", "Dog"], thresholds=0.3, precision="fp32")
    named = model.detect(AUDIO)
    assert model.classes == ["/m/0bt9lr", "/m/09x0r"]
    pd.testing.assert_frame_equal(named[["onset", "offset", "event_label"]].round(3),
                                  csv_events[["onset", "offset", "event_label"]], check_dtype=False)
    assert set(model.detect(AUDIO, label_format="mid")["event_label"]) <= {"/m/0bt9lr", "/m/09x0r"}
    scores = model.scores(AUDIO)
    assert list(scores.columns) == ["onset", "offset", "/m/0bt9lr", "/m/09x0r"]
    one = load_model(CHECKPOINT, device="cpu", top_k=1, top_k_per="event").detect(AUDIO)
    assert len(one) == 1


def test_per_class_thresholds_take_display_names_or_mids(tmp_path):
    _, by_name, _ = _detect(tmp_path, "--thresholds", "Speech=0.99,dog=0.99", "--label-format", "mid")
    _, by_mid, _ = _detect(tmp_path, "--thresholds", "/m/09x0r=0.99,/m/0bt9lr=0.99", "--label-format", "mid")
    _, default, _ = _detect(tmp_path, "--label-format", "mid")
    pd.testing.assert_frame_equal(by_name, by_mid)
    assert len(by_name) < len(default)  # the two classes are held to 0.99

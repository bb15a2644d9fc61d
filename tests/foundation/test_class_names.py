"""Class ids and display names: label lists (ids in output order, optional TAB name), AudioSet
ontology files (names only), choosing classes by id or name, and top-k decoding."""

from __future__ import annotations

import json

import numpy as np
import pytest

from atst_sed.class_names import name_map, read_label_file, class_indices, split_selection
from atst_sed.decoding import decode_events
from atst_sed.errors import AtstSedError, InputError
from atst_sed.timegrid import ATST_GRID

CLASSES = ["/m/09x0r", "/m/0bt9lr", "/m/032s66"]
NAMES = {"/m/09x0r": "Speech", "/m/0bt9lr": "Dog", "/m/032s66": "Gunshot, gunfire"}


def test_a_label_list_keeps_the_file_order_and_optional_names(tmp_path):
    ids_only = tmp_path / "common_labels.txt"
    ids_only.write_text("/m/0bt9lr\n\n/m/09x0r\n")
    assert read_label_file(ids_only) == (["/m/0bt9lr", "/m/09x0r"], {})
    table = tmp_path / "classes.tsv"
    table.write_text("# a comment\nmid\tdisplay_name\n/m/0bt9lr\tDog\n/m/09x0r\n")
    assert read_label_file(table, n_classes=2) == (["/m/0bt9lr", "/m/09x0r"], {"/m/0bt9lr": "Dog"})


def test_an_ontology_gives_names_only(tmp_path):
    path = tmp_path / "ontology.json"
    path.write_text(json.dumps([{"id": "/m/09x0r", "name": "Speech", "child_ids": []}]))
    assert read_label_file(path) == ([], {"/m/09x0r": "Speech"})


@pytest.mark.parametrize("text,problem", [
    ("/m/1\n/m/1\n", "class id '/m/1' appears twice"),
    ("\n# only a comment\n", "no class id"),
    ("/m/1\n/m/2\n", "the label file has 2 classes, the model 3"),
])
def test_bad_label_files_are_one_line_naming_the_file(tmp_path, text, problem):
    path = tmp_path / "labels.txt"
    path.write_text(text)
    with pytest.raises(InputError) as err:
        read_label_file(path, n_classes=3)
    assert str(path) in str(err.value) and problem in str(err.value) and "\n" not in str(err.value)
    bad_json = tmp_path / "ontology.json"
    bad_json.write_text('{"id": 1}')
    with pytest.raises(InputError, match="not an AudioSet ontology"):
        read_label_file(bad_json)


def test_names_fall_back_to_the_next_table_then_to_the_id():
    assert name_map(CLASSES, {"/m/09x0r": "Talk"}, NAMES, {}) == {
        "/m/09x0r": "Talk", "/m/0bt9lr": "Dog", "/m/032s66": "Gunshot, gunfire"}
    assert name_map(["x"], NAMES) == {"x": "x"}


def test_classes_are_chosen_by_id_or_name_in_model_order_even_with_commas_in_names():
    entries = split_selection(["dog,Gunshot, gunfire", "/m/09x0r"], CLASSES, NAMES)
    assert entries == ["dog", "Gunshot, gunfire", "/m/09x0r"]
    assert class_indices(entries, CLASSES, NAMES) == [0, 1, 2]
    with pytest.raises(AtstSedError, match="unknown class 'Gunshot' .* did you mean 'Gunshot, gunfire'"):
        class_indices(["Gunshot"], CLASSES, NAMES)


def test_top_k_per_frame_keeps_the_k_highest_filtered_scores_above_threshold():
    rng = np.random.default_rng(0)
    probs = rng.uniform(0, 1, (200, 6)).astype(np.float32)
    classes = [f"c{i}" for i in range(6)]
    for k in (1, 2, 6):
        events = decode_events(probs, classes, 0.4, 1, top_k=k, grid=ATST_GRID)
        active = np.zeros_like(probs, dtype=bool)
        for on, off, label in zip(events["onset"], events["offset"], events["event_label"]):
            active[round(on / 0.04): round(off / 0.04), classes.index(label)] = True
        expected = np.zeros_like(active)
        for t in range(len(probs)):  # by hand, frame by frame
            best = sorted(range(6), key=lambda c: (-probs[t, c], c))[:k]
            expected[t, best] = probs[t, best] > 0.4
        np.testing.assert_array_equal(active, expected)

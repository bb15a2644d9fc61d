"""benchmarks/detect_speed.py: whole `atst-sed detect` processes, interleaved, one row per contender,
and its event comparison counting a one-frame edge move on the model's own grid."""

from __future__ import annotations

from benchmark_scripts import load_benchmark


def _load_script():
    return load_benchmark("detect_speed")


def test_events_that_only_moved_an_edge_by_one_frame_of_the_models_grid_are_told_apart():
    compare = _load_script().compare_events
    reference = [("a.wav", "1.024", "2.048", "Dog", "0.9"), ("a.wav", "5.000", "6.000", "Cat", "0.8")]
    assert compare(list(reference), reference, 0.064) == "identical (2 events; scores within 0.000)"
    one_frame = [("a.wav", "1.088", "2.048", "Dog", "0.9"), reference[1]]  # onset 64 ms later
    two_frames = [("a.wav", "1.152", "2.048", "Dog", "0.9"), reference[1]]
    assert compare(one_frame, reference, 0.064) == (
        "1 of 2 identical; 1 new, 1 missing (1 of the new ones = a missing one with its edges moved by ≤ 64 ms)")
    assert compare(two_frames, reference, 0.064).endswith("(0 of the new ones = a missing one with its edges moved by ≤ 64 ms)")
    assert compare(one_frame, reference, 0.04).startswith("1 of 2 identical; 1 new, 1 missing (0 of")  # 64 ms > one 40 ms frame


def test_the_benchmark_times_every_contender_in_every_round_and_compares_their_events(loud_ckpt, capsys):
    script = _load_script()
    script.main(["--seconds", "20", "--rounds", "2", "--checkpoint", str(loud_ckpt), "--markdown",
                 "--contender", "reference=--precision fp32", "--contender", "hop 10=--precision fp32 --hop 10"])

    out = capsys.readouterr().out
    assert "2 rounds of 2 contenders interleaved" in out
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in out.splitlines()
            if line.startswith("| ") and not line.startswith("| contender")]
    assert [r[0] for r in rows] == ["reference", "hop 10"]
    assert rows[0][1] == "`--precision fp32`" and rows[0][-1] == "reference" and rows[0][6] == "1"
    assert rows[1][-1].startswith(("identical", "0 of", "1 of", "2 of", "3 of"))  # compared, event by event
    for row in rows:
        median, spread = row[2].split(" ", 1)  # "wall s, median (min–max)"
        low, high = map(float, spread.strip("()").split("–"))
        assert 0 < low <= float(median) <= high

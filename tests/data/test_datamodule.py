"""SEDDataModule on the tiny corpus: batch contract, proportions, determinism, crops, input checks,
and a real 3-step Lightning training loop on CPU."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
import pytorch_lightning as pl
import torch

from atst_sed.data import DataConfig, SEDDataModule
from atst_sed.data.corpus import SETS, read_manifest
from atst_sed.data.datasets import ClipDataset, ProportionalBatchSampler, RankShard, split_batch
from atst_sed.data.splits import holdout_split
from atst_sed.errors import InputError
from atst_sed.events import read_strong_tsv
from atst_sed.frontend import LogMelFrontend
from atst_sed.labels import DESED_CLASSES, ClassMap, events_to_frames
from atst_sed.timegrid import ATST_GRID


def _dm(root, **kw):
    kw.setdefault("num_workers", 0)
    dm = SEDDataModule(DataConfig(root=str(root), **kw), ATST_GRID)
    dm.setup("fit")
    return dm


def test_batch_contract_and_proportions(tiny_corpus):
    dm = _dm(tiny_corpus, batch_size=8)
    batches = list(dm.train_dataloader())
    # 8 × (0.25, 0.25, 0.5) = 2 / 2 / 4 per batch; the smallest pool (12 weak clips) gives 6 batches
    assert len(batches) == dm.steps_per_epoch() == 6
    seen_weak = set()
    for b in batches:
        assert b["waveforms"].shape == (8, 160000) and b["waveforms"].dtype == torch.float32
        assert b["lengths"].dtype == torch.long and (b["lengths"] == 160000).all()
        assert b["strong"].shape == (8, 250, 10) and b["weak"].shape == (8, 10)
        assert b["has_strong"].tolist() == [True] * 2 + [False] * 6
        assert b["has_weak"].tolist() == [True] * 4 + [False] * 4
        assert [f.split("_0")[0] for f in b["filenames"]] == ["synth_train"] * 2 + ["weak"] * 2 + ["unlabeled"] * 4
        torch.testing.assert_close(b["weak"][:2], b["strong"][:2].amax(dim=1))  # weak = any over frames
        assert b["strong"][2:].sum() == 0 and b["weak"][4:].sum() == 0
        assert (b["weak"][2:4].sum(1) >= 1).all()
        assert torch.isfinite(b["waveforms"]).all() and b["waveforms"].abs().max() <= 1
        seen_weak.update(b["filenames"][2:4])
    assert len(seen_weak) == 12  # one epoch = every clip of the smallest pool once
    assert split_batch(24, {"strong": 0.25, "weak": 0.25, "unlabeled": 0.5}) == {"strong": 6, "weak": 6, "unlabeled": 12}
    assert split_batch(10, {"strong": 1, "weak": 1, "unlabeled": 1}) == {"strong": 4, "weak": 3, "unlabeled": 3}


def test_same_seed_same_batches_across_workers(tiny_corpus):
    first = next(iter(_dm(tiny_corpus, batch_size=4, seed=5).train_dataloader()))
    second = next(iter(_dm(tiny_corpus, batch_size=4, seed=5, num_workers=2).train_dataloader()))
    assert first["filenames"] == second["filenames"]
    torch.testing.assert_close(first["waveforms"], second["waveforms"])
    other = next(iter(_dm(tiny_corpus, batch_size=4, seed=6).train_dataloader()))
    assert other["filenames"] != first["filenames"]
    sampler = ProportionalBatchSampler([10, 20], [2, 2], seed=1)
    sampler.set_epoch(0)
    epoch0 = list(sampler)
    sampler.set_epoch(1)
    assert list(sampler) != epoch0
    sampler.set_epoch(0)
    assert list(sampler) == epoch0
    ranks = [list(ProportionalBatchSampler([10, 20], [2, 2], seed=1, rank=r, world_size=2)) for r in (0, 1)]
    # DDP ranks step in lockstep: 5 batches → 3 per rank, interleaved; the 6th continues the sequence
    assert [len(r) for r in ranks] == [3, 3] and [b for pair in zip(*ranks) for b in pair][:5] == epoch0
    shards = [list(RankShard(7, r, 2)) for r in (0, 1)]  # evaluation: every item once over the ranks
    assert shards == [[0, 2, 4, 6], [1, 3, 5]]


def test_eval_sets_in_order_with_valid_lengths(tiny_corpus):
    dm = _dm(tiny_corpus, batch_size=6)
    dm.setup("test")
    names = [f for b in dm.test_dataloader() for f in b["filenames"]]
    assert names == sorted(names) and len(names) == 12
    durations = dm.durations("test")
    gt = dm.ground_truth("test")
    assert set(gt["filename"]) == set(durations) and gt["event_label"].isna().any()
    for b in dm.test_dataloader():
        for i, name in enumerate(b["filenames"]):
            n = round(durations[name] * 16000)
            assert int(b["lengths"][i]) == n
            tokens = (n // 160 + 1) // 4
            assert b["strong"][i, tokens:].sum() == 0
            want = events_to_frames(gt[gt["filename"] == name], ClassMap(DESED_CLASSES), 250, grid=ATST_GRID)
            np.testing.assert_array_equal(b["strong"][i].numpy(), want)
    assert dm.fingerprint.startswith("sha256:") and dm.missing_files == 0


def test_random_crops_shift_and_clip_labels(tiny_corpus):
    cmap = ClassMap(DESED_CLASSES)
    ds = ClipDataset(tiny_corpus, "synth_train", cmap, clip_seconds=4.0, grid=ATST_GRID)
    events = read_strong_tsv(tiny_corpus / SETS["synth_train"].labels, DESED_CLASSES)
    starts = set()
    for index in range(8):
        for seed in (3 * index, 3 * index + 1):
            item = ds[(index, seed)]
            start = ds.crop_start(index, seed)
            starts.add(start)
            assert start % 640 == 0 and item["waveform"].shape == (64000,) and item["length"] == 64000
            full = events_to_frames(events[events["filename"] == ds.filenames[index]], cmap, 250, grid=ATST_GRID)
            np.testing.assert_array_equal(item["strong"].numpy(), full[start // 640 : start // 640 + 100])
    assert len(starts) > 5


def test_training_loop_on_cpu(tiny_corpus):
    class Tiny(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(64, 10)
            self.frontend = LogMelFrontend()

        def training_step(self, batch, _):
            features = self.frontend(batch["waveforms"], batch["lengths"])  # the model's own features
            x = features[:, :, :1000].reshape(len(features), 64, 250, 4).mean(-1)
            probs = torch.sigmoid(self.linear(x.transpose(1, 2)))  # (B, 250, C)
            strong = torch.nn.functional.binary_cross_entropy(probs[batch["has_strong"]], batch["strong"][batch["has_strong"]])
            weak = torch.nn.functional.binary_cross_entropy(probs.amax(1)[batch["has_weak"]], batch["weak"][batch["has_weak"]])
            return strong + weak

        def validation_step(self, batch, _):
            self.log("val_seen", float(len(batch["filenames"])))

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    dm = SEDDataModule(DataConfig(root=str(tiny_corpus), batch_size=8, num_workers=1, epoch_length=3), ATST_GRID)
    model = Tiny()
    before = model.linear.weight.detach().clone()
    trainer = pl.Trainer(
        max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        limit_val_batches=1, num_sanity_val_steps=0, enable_model_summary=False,
    )
    trainer.fit(model, datamodule=dm)
    assert trainer.global_step == 3
    assert not torch.equal(before, model.linear.weight)


def _copy_corpus(src, dst):
    """Metadata and manifests copied, audio folders linked (cheap)."""
    for part in ("metadata", "manifests"):
        shutil.copytree(src / part, dst / part)
    shutil.copy(src / "fingerprint.json", dst / "fingerprint.json")
    for folder in dict.fromkeys(spec.audio for spec in SETS.values()):  # parts of a set share its folder
        if (src / folder).is_dir():
            (dst / folder).parent.mkdir(parents=True, exist_ok=True)
            (dst / folder).symlink_to(src / folder)
    return dst


def _edit_line(path, line, text):
    lines = path.read_text().splitlines(keepends=True)
    lines[line - 1] = text
    path.write_text("".join(lines))


@pytest.mark.parametrize(
    "set_name, line_text, message",
    [
        ("synth_val", "synth_val_00000.wav\t1.000\t2.000\tBird\n", "unknown class 'Bird'"),
        ("synth_val", "synth_val_00000.wav\t3.000\t2.000\tDog\n", "not before offset"),
        ("synth_val", "synth_val_00000.wav\t3.000\t12.000\tDog\n", "beyond the clip"),
        ("synth_val", "synth_val_00000.wav\tthree\t4.000\tDog\n", "is not a number"),
        ("synth_train", "synth_train_00000.wav\t1.000\t12.000\tDog\n", "beyond the clip"),
    ],
)
def test_bad_labels_name_file_and_line(tiny_corpus, tmp_path, set_name, line_text, message):
    root = _copy_corpus(tiny_corpus, tmp_path / "c")
    labels = root / SETS[set_name].labels
    _edit_line(labels, 3, line_text)
    dm = SEDDataModule(DataConfig(root=str(root), num_workers=0), ATST_GRID)
    with pytest.raises(InputError, match=message) as info:
        dm.setup("fit")
    assert info.value.path == str(labels) and info.value.line == 3


def test_missing_audio_and_malformed_tsv(tiny_corpus, tmp_path):
    root = _copy_corpus(tiny_corpus, tmp_path / "c")
    manifest = root / "manifests" / "weak.tsv"
    _edit_line(manifest, 4, "weak_00002.wav\taudio/train/weak_16k/nope.wav\t10.0\t160000\n")
    with pytest.raises(InputError, match="nope.wav is missing") as info:
        SEDDataModule(DataConfig(root=str(root), num_workers=0), ATST_GRID).setup("fit")
    assert info.value.path == str(manifest) and info.value.line == 4
    shutil.copy(tiny_corpus / "manifests" / "weak.tsv", manifest)
    weak = root / SETS["weak"].labels
    weak.write_text("filename\tlabels\nweak_00000.wav\tDog\n")
    with pytest.raises(InputError, match="missing column") as info:
        SEDDataModule(DataConfig(root=str(root), num_workers=0), ATST_GRID).setup("fit")
    assert info.value.path == str(weak) and info.value.line == 1
    with pytest.raises(ValueError, match="unknown pool"):
        DataConfig(proportions={"strong": 1.0, "noisy": 1.0})
    with pytest.raises(InputError, match="prepare"):
        SEDDataModule(DataConfig(root=str(tmp_path / "nothing")), ATST_GRID).setup("fit")


def test_data_config_from_yaml_dict():
    from atst_sed.config import from_dict, to_dict

    cfg = from_dict(DataConfig, {"root": "x", "batch_size": 12, "proportions": {"strong": 0.5, "weak": 0.5, "unlabeled": 0}})
    assert cfg.batch_size == 12 and cfg.proportions["unlabeled"] == 0.0
    assert from_dict(DataConfig, to_dict(cfg)) == cfg
    with pytest.raises(ValueError):
        from_dict(DataConfig, {"batchsize": 3})


def test_a_strong_set_can_serve_as_weak_or_unlabeled(tiny_corpus):
    cmap = ClassMap(DESED_CLASSES)
    strong = ClipDataset(tiny_corpus, "synth_val", cmap, grid=ATST_GRID)
    as_weak = ClipDataset(tiny_corpus, "synth_val", cmap, labels_kind="weak", grid=ATST_GRID)
    as_unlabeled = ClipDataset(tiny_corpus, "synth_val", cmap, labels_kind="unlabeled", grid=ATST_GRID)
    for i in (0, 5):
        s, w, u = strong[i], as_weak[i], as_unlabeled[i]
        assert s["filename"] == w["filename"] == u["filename"]
        torch.testing.assert_close(w["weak"], s["strong"].amax(0))
        assert w["has_weak"] and not w["has_strong"] and w["strong"].sum() == 0
        assert not u["has_weak"] and not u["has_strong"] and u["weak"].sum() == 0


def test_weak_hold_out_leaves_training_and_joins_validation(tiny_corpus):
    weak_tsv = pd.read_csv(tiny_corpus / SETS["weak"].labels, sep="\t")
    drawn = set(weak_tsv.sample(frac=0.75, random_state=42)["filename"])  # the DCASE baseline's draw
    dm = _dm(tiny_corpus, batch_size=8, weak_val_fraction=0.25, seed=42)
    train_part, held_part = dm.weak_split("weak")
    assert set(train_part.filenames) == drawn and len(held_part) == 3
    assert set(held_part.filenames) == set(weak_tsv["filename"]) - drawn
    # 9 training weak clips at 2 per batch: 4 batches, none of them a held-out clip
    trained = {f for b in dm.train_dataloader() for f, w, s in zip(b["filenames"], b["has_weak"], b["has_strong"]) if w and not s}
    assert len(list(dm.train_dataloader())) == dm.steps_per_epoch() == 4
    assert trained <= drawn
    # validation: the synthetic validation clips, then the held-out weak clips with their clip labels
    val = [(f, bool(s), bool(w), y) for b in dm.val_dataloader() for f, s, w, y in zip(b["filenames"], b["has_strong"], b["has_weak"], b["weak"])]
    synth_val = ClipDataset(tiny_corpus, "synth_val", ClassMap(DESED_CLASSES), grid=ATST_GRID).filenames
    assert [v[0] for v in val] == synth_val + held_part.filenames
    assert all(s for _, s, _, _ in val[:12]) and not any(s for _, s, _, _ in val[12:])
    labels = dict(zip(weak_tsv["filename"], weak_tsv["event_labels"]))
    for name, _, has_weak, target in val[12:]:
        assert has_weak and {DESED_CLASSES[i] for i in np.flatnonzero(target.numpy())} == set(labels[name].split(","))
    assert set(dm.ground_truth("val")["filename"]) == set(synth_val)  # strong ground truth only
    assert set(_dm(tiny_corpus, weak_val_fraction=0.25, seed=7).weak_split("weak")[1].filenames) != set(held_part.filenames)
    assert len(_dm(tiny_corpus).validation_dataset()) == 12  # default: no hold-out
    with pytest.raises(ValueError, match="weak_val_fraction"):
        DataConfig(weak_val_fraction=1.0)


def test_hold_out_draw_equals_the_dcase_baseline_on_desed_sizes():
    names = [f"Y{i:05d}_0.000_10.000.wav" for i in range(1578)]
    train, held = holdout_split(names, 0.1, seed=42)
    assert (len(train), len(held)) == (1420, 158)
    baseline = pd.DataFrame({"filename": names}).sample(frac=0.9, random_state=42)
    assert set(train) == set(baseline["filename"]) and train == sorted(train)


def test_evaluation_ground_truth_is_the_labels_as_written_training_targets_clip_them(tiny_corpus, tmp_path, caplog):
    """The test stage and validation score the labels exactly as `atst-sed evaluate` reads them (events
    past a clip's end and repeated rows kept, reported); training targets clip them to the clip."""
    from atst_sed.evaluation.inputs import load_event_table
    from atst_sed.events import read_durations_tsv

    root = _copy_corpus(tiny_corpus, tmp_path / "c")
    labels, durations_tsv = root / SETS["test"].labels, root / SETS["test"].durations
    durations = read_durations_tsv(durations_tsv)
    table = pd.read_csv(labels, sep="\t")
    first = table["onset"].first_valid_index()
    name = table.at[first, "filename"]
    table.at[first, "onset"], table.at[first, "offset"] = durations[name] - 0.5, durations[name] + 0.3
    table = pd.concat([table, table.loc[[first]]], ignore_index=True)  # and the same event twice
    table.to_csv(labels, sep="\t", index=False, float_format="%.3f")
    dm = SEDDataModule(DataConfig(root=str(root), num_workers=0), ATST_GRID)
    dm.setup("test")
    with caplog.at_level("WARNING"):
        got = dm.ground_truth("test")
    want = load_event_table(labels, DESED_CLASSES, durations, "ground truth")  # what evaluate scores
    pd.testing.assert_frame_equal(got, want)
    assert (got["offset"] > got["filename"].map(durations)).sum() == 2
    assert "run past their clip's end" in caplog.text and "repeat an earlier row" in caplog.text
    training = dm.dataset(dm.config.test_set).events
    clipped = training[(training["filename"] == name) & (training["onset"] == durations[name] - 0.5)]
    assert clipped["offset"].tolist() == [durations[name]]  # clipped, and the repeat merged away
    # what psds_eval refuses, the test stage refuses too: overlapping events of one class
    table.at[len(table) - 1, "onset"] = durations[name] - 0.7
    table.to_csv(labels, sep="\t", index=False, float_format="%.3f")
    with pytest.raises(InputError, match="overlap"):
        SEDDataModule(DataConfig(root=str(root), num_workers=0), ATST_GRID).ground_truth("test")


def test_training_data_names_each_set_of_a_pool_in_the_batches():
    from atst_sed.data.datamodule import training_data

    fingerprint = {"corpus": "synthetic", "sets": {"synth_train": 24, "weak": 1200, "unlabeled": 24, "test": 12}}
    config = DataConfig(proportions={"strong": 0.5, "weak": 0.5, "unlabeled": 0.0}, weak_val_fraction=0.25,
                        strong_sets=["synth_train", "strong_real"])
    assert training_data(config, fingerprint) == [
        "synth_train: audio/train/synthetic21_train/soundscapes_16k (synthetic corpus, strong labels, 24 clips)",
        "weak: audio/train/weak_16k (synthetic corpus, weak labels, 1,200 clips, 25% held out for validation)",
    ]  # no strong_real clips in this corpus; unlabeled clips have no share in the batches
    everything = DataConfig()
    assert [line.split(":")[0] for line in training_data(everything, {})] == ["synth_train", "weak", "unlabeled"]
    assert training_data(everything, {})[2] == "unlabeled: audio/train/unlabel_in_domain_16k (no labels)"


def test_four_sources_with_their_own_batch_sizes(tiny_corpus):
    """ATST-SED's batches: synthetic strong / real strong / weak / unlabeled, one count per set."""
    sizes = {"synth_train": 3, "strong_real_train": 2, "weak": 2, "unlabeled": 4}
    dm = _dm(tiny_corpus, batch_sizes=sizes, val_set=["synth_val", "strong_real_val"], weak_val_fraction=0.25)
    assert dm.config.clips_per_batch == 11
    batches = list(dm.train_dataloader())
    # the smallest source decides the epoch: 9 of 12 weak clips train (3 held out) → 9 // 2 = 4 batches
    assert len(batches) == dm.steps_per_epoch() == 4
    real_train = set(read_manifest(tiny_corpus, "strong_real_train")["filename"])
    for b in batches:
        kinds = ["synth" if f.startswith("synth_train") else "real" if f in real_train else f.split("_0")[0] for f in b["filenames"]]
        assert kinds == ["synth"] * 3 + ["real"] * 2 + ["weak"] * 2 + ["unlabeled"] * 4
        assert b["has_strong"].tolist() == [True] * 5 + [False] * 6
        assert b["has_weak"].tolist() == [True] * 7 + [False] * 4
        torch.testing.assert_close(b["weak"][:5], b["strong"][:5].amax(dim=1))
    # validation: both strong sets in order, then the held-out weak clips; each set's ground truth alone too
    dm.setup("validate")
    val_names = [f for b in dm.val_dataloader() for f in b["filenames"]]
    synth_val, real_val = dm.clips("synth_val"), dm.clips("strong_real_val")
    assert val_names[: len(synth_val) + len(real_val)] == synth_val + real_val and len(val_names) == 12 + 2 + 3
    assert set(dm.ground_truth("val")["filename"]) == set(synth_val) | set(real_val)
    assert set(dm.ground_truth("strong_real_val")["filename"]) == set(real_val)
    assert dm.durations("val").keys() == set(synth_val) | set(real_val)
    with pytest.raises(ValueError, match="unknown set"):
        DataConfig(batch_sizes={"synth": 3})
    with pytest.raises(ValueError, match="positive sum"):
        DataConfig(batch_sizes={"weak": 0})


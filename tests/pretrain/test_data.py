"""Pretraining data: sources, views, crops, unreadable files."""

from __future__ import annotations

import logging

import pytest
import torch

from atst_sed.data.pretrain import (
    PretrainDataConfig,
    PretrainDataModule,
    PretrainDataset,
    clip_crop_starts,
    list_audio_files,
)
from atst_sed.errors import InputError
from atst_sed.frontend import LogMelFrontend


def test_folder_is_searched_recursively(wav_dir):
    files = list_audio_files(wav_dir)
    assert len(files) == 8 and any(f.parent.name == "sub" for f in files)
    assert files == sorted(files)


def test_text_manifest_and_tsv_with_root(wav_dir, tmp_path):
    files = list_audio_files(wav_dir)
    rel = [str(f.relative_to(wav_dir)) for f in files]
    manifest = tmp_path / "list.txt"
    manifest.write_text("# unlabelled clips\n" + "\n".join(rel[:3]) + "\n\n")
    assert list_audio_files(manifest, root=wav_dir) == files[:3]
    tsv = tmp_path / "train.tsv"
    tsv.write_text("filename\tonset\toffset\tevent_label\n" + "".join(f"{r}\t0\t1\tDog\n{r}\t2\t3\tCat\n" for r in rel[:4]))
    assert list_audio_files(tsv, root=wav_dir) == files[:4]  # one entry per clip
    with pytest.raises(InputError, match="no such folder or manifest"):
        list_audio_files(tmp_path / "missing.tsv")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="no audio files"):
        list_audio_files(empty)


def test_frame_items_are_whole_10s_views_with_zero_padding(wav_dir):
    files = list_audio_files(wav_dir)
    cfg = PretrainDataConfig(source=str(wav_dir))
    ds = PretrainDataset(files, "frame", cfg)
    short = files.index(wav_dir / "clip00.wav")  # 3 s file → zero-padded to 10 s, reported full length
    item = ds[short]
    assert item["view1"].shape == item["view2"].shape == (64, 1001)
    assert item["skipped"].item() == 0
    # view 1 is the clean log-mel of the padded waveform
    from atst_sed.audio import load_audio

    wav = load_audio(files[short])
    padded = torch.nn.functional.pad(wav, (0, 160000 - wav.shape[0]))
    torch.testing.assert_close(item["view1"], LogMelFrontend()(padded[None])[0])
    # the first item ever seen by this worker's bank is unmixed; later ones differ from view 1
    ds2 = PretrainDataset(files, "frame", cfg)
    torch.manual_seed(0)
    first = ds2[1]
    assert len(ds2.mixup.bank) == 1 and torch.equal(ds2.mixup.bank[0], first["view1"])


def test_clip_items_are_two_6s_crops(wav_dir):
    files = list_audio_files(wav_dir)
    ds = PretrainDataset(files, "clip", PretrainDataConfig(source=str(wav_dir)))
    item = ds[2]
    assert item["view1"].shape == item["view2"].shape == (64, 601)
    assert not torch.equal(item["view1"], item["view2"])


def test_clip_crop_starts_overlap_and_match_independent_crops_for_10s():
    g = torch.Generator().manual_seed(0)
    crop, overlap = 96000, 16000
    # 30 s recording: every pair overlaps by ≥ 1 s
    for _ in range(500):
        s1, s2 = clip_crop_starts(480000, crop, overlap, g)
        assert 0 <= s1 <= 384000 and 0 <= s2 <= 384000
        assert crop - abs(s1 - s2) >= overlap
    # 10 s clip: the constraint never binds — both starts cover the whole range [0, 4 s]
    pairs = [clip_crop_starts(160000, crop, overlap, g) for _ in range(2000)]
    s2 = torch.tensor([p[1] for p in pairs], dtype=torch.float)
    assert s2.min() < 8000 and s2.max() > 56000
    assert abs(s2.mean().item() - 32000) < 2500
    assert clip_crop_starts(50000, crop, overlap, g) == (0, 0)  # shorter than a crop


def test_unreadable_files_are_skipped_counted_or_validated(wav_dir_with_bad, caplog):
    files = list_audio_files(wav_dir_with_bad)
    bad = files.index(wav_dir_with_bad / "broken.wav")
    ds = PretrainDataset(files, "frame", PretrainDataConfig(source=str(wav_dir_with_bad)))
    with caplog.at_level(logging.WARNING, logger="atst_sed.data.pretrain"):
        item = ds[bad]
    assert item["skipped"].item() == 1 and item["view1"].shape == (64, 1001)
    assert "broken.wav" in caplog.text
    assert ds[bad]["skipped"].item() == 1  # remembered: not re-read
    dm = PretrainDataModule(PretrainDataConfig(source=str(wav_dir_with_bad), validate=True, batch_size=2, num_workers=0), "frame")
    dm.setup("fit")
    assert dm.missing_files == 1 and len(dm.files) == 4 and len(dm.fingerprint) == 16
    batch = next(iter(dm.train_dataloader()))
    assert batch["view1"].shape == (2, 64, 1001) and batch["skipped"].shape == (2,)

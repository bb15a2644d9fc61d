"""Helpers of the training tests: tiny in-memory contract batches of waveforms (no files)."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Dataset

from atst_sed.timegrid import ATST_GRID, FrameGrid

N_CLASSES = 3
CLASSES = [f"class_{c}" for c in range(N_CLASSES)]
SAMPLES = 160000  # 10 s at 16 kHz: 1001 mel frames, 250 frames of 40 ms
TONES = (300.0, 900.0, 2400.0)  # Hz, one per class


class TinySED(Dataset):
    """Deterministic contract batches of waveforms: clip i is strong if i % 3 == 0, weak if
    i % 3 == 1, else unlabeled; every fourth clip holds 6 s of audio (zero-padded to 10 s). Class c is
    active from 2c to 2c + 2.4 s of a clip (40 ms frames [50c, 50c + 60) on ``grid``, the default
    ATST grid), where a tone of ``TONES[c]`` sounds over quiet noise, so the task is learnable."""

    def __init__(self, n: int = 12, seed: int = 0, grid: FrameGrid = ATST_GRID):
        g = torch.Generator().manual_seed(seed)
        t = torch.arange(SAMPLES) / 16000.0
        n_frames = int(grid.n_frames(SAMPLES))
        self.items = []
        for i in range(n):
            active = torch.rand(N_CLASSES, generator=g) > 0.5
            strong = torch.zeros(n_frames, N_CLASSES)
            wave = 0.01 * torch.randn(SAMPLES, generator=g)
            for c in range(N_CLASSES):
                if active[c]:
                    strong[round(2 * c / grid.frame_seconds) : round((2 * c + 2.4) / grid.frame_seconds), c] = 1.0
                    a, b = 32000 * c, 32000 * c + 38400
                    wave[a:b] += 0.3 * torch.sin(2 * torch.pi * TONES[c] * t[a:b])
            length = SAMPLES if i % 4 else 96000  # 96 000 samples: 601 mel frames, 150 frames of 40 ms
            wave[length:] = 0.0
            kind = i % 3
            self.items.append(
                {
                    "waveforms": wave,
                    "lengths": torch.tensor(length),
                    "strong": strong if kind == 0 else torch.zeros(n_frames, N_CLASSES),
                    "weak": active.float() if kind < 2 else torch.zeros(N_CLASSES),
                    "has_strong": torch.tensor(kind == 0),
                    "has_weak": torch.tensor(kind < 2),
                    "filenames": f"clip{i:02d}.wav",
                }
            )

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return self.items[i]


def collate(items: list[dict]) -> dict:
    out = {k: torch.stack([it[k] for it in items]) for k in items[0] if k != "filenames"}
    out["filenames"] = [it["filenames"] for it in items]
    return out


class EpochShuffle(torch.utils.data.Sampler):
    """Shuffles by (seed, epoch) like DistributedSampler; Lightning calls ``set_epoch`` each epoch."""

    def __init__(self, n: int, seed: int):
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 1000 + self.epoch)
        return iter(torch.randperm(self.n, generator=g).tolist())

    def __len__(self) -> int:
        return self.n


def tiny_loader(n: int = 12, batch_size: int = 6, shuffle: bool = False, seed: int = 0, grid: FrameGrid = ATST_GRID) -> DataLoader:
    sampler = EpochShuffle(n, seed) if shuffle else None
    return DataLoader(TinySED(n, seed, grid), batch_size=batch_size, sampler=sampler, collate_fn=collate)

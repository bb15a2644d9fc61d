"""View augmentations for ATST pretraining (BYOL-A style), on normalised log-mel (64, T).

Both follow the released audiossl code, which the published checkpoints come from:

- :class:`MixupBank` — log-mixup-exp with a FIFO memory bank of *unmixed* past inputs. The
  exp/log act on the min-max *normalised* values (not on dB or power), as upstream does.
- :class:`RandomResizeCrop` — crop a random region of a (possibly larger, zero-filled) virtual
  canvas and resize it back with bicubic interpolation (``align_corners=True``). ATST-Frame uses it
  as a pure frequency warp (:meth:`RandomResizeCrop.frequency_warp`), ATST-Clip with a 1.5× time
  canvas (:meth:`RandomResizeCrop.clip`).

Randomness comes from ``torch``'s generator (optionally a private ``torch.Generator``), which the
DataLoader seeds differently in each worker.
"""

from __future__ import annotations

from collections import deque

import torch
import torch.nn.functional as F
from torch import Tensor

_EPS = torch.finfo(torch.float32).eps


def _uniform(low: float, high: float, generator: torch.Generator | None) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator))


def _randint(low: int, high: int, generator: torch.Generator | None) -> int:
    """Uniform integer in [low, high] (both inclusive, like ``random.randint``)."""
    return int(torch.randint(low, high + 1, (), generator=generator))


class MixupBank:
    """Mix each input with a random earlier input: ``log((1 − a)·exp(x) + a·exp(z) + eps)``.

    ``a = ratio · U(0, 1)``; ``z`` is drawn from a FIFO bank of the last ``n_memory`` *unmixed*
    inputs; the current input is appended after mixing, so the first input ever seen is returned
    unchanged. One bank per instance, i.e. per DataLoader worker. Inputs of a shape different from
    the drawn bank item are returned unmixed (still stored).
    """

    def __init__(self, ratio: float = 0.4, n_memory: int = 2000, log_mixup_exp: bool = True,
                 generator: torch.Generator | None = None):
        if not 0.0 <= ratio <= 1.0:
            raise ValueError("mixup ratio must be in [0, 1]")
        self.ratio = ratio
        self.log_mixup_exp = log_mixup_exp
        self.generator = generator
        self.bank: deque[Tensor] = deque(maxlen=n_memory)

    def __call__(self, x: Tensor) -> Tensor:
        """``x`` (…, 64, T) normalised log-mel → mixed tensor of the same shape."""
        mixed = x
        if self.bank:
            a = self.ratio * float(torch.rand((), generator=self.generator))
            z = self.bank[int(torch.randint(len(self.bank), (), generator=self.generator))]
            if z.shape == x.shape:
                if self.log_mixup_exp:
                    mixed = torch.log((1.0 - a) * x.exp() + a * z.exp() + _EPS)
                else:
                    mixed = (1.0 - a) * x + a * z
        self.bank.append(x.detach().clone())
        return mixed


class RandomResizeCrop:
    """BYOL-A random resized crop on (…, F, T): paste the input at the centre of a zero canvas of
    ``virtual_crop_scale`` × its size, crop ``h = clip(int(U(freq_scale)·F), 1, canvas_F)`` bins by
    ``w = clip(int(U(time_scale)·T), 1, canvas_T)`` frames at a random position, resize to (F, T).
    """

    def __init__(
        self,
        virtual_crop_scale: tuple[float, float] = (1.0, 1.5),
        freq_scale: tuple[float, float] = (0.6, 1.5),
        time_scale: tuple[float, float] = (0.6, 1.5),
        generator: torch.Generator | None = None,
    ):
        self.virtual_crop_scale = tuple(virtual_crop_scale)
        self.freq_scale = tuple(freq_scale)
        self.time_scale = tuple(time_scale)
        self.generator = generator

    @classmethod
    def frequency_warp(cls, freq_scale: tuple[float, float] = (0.6, 1.5),
                       generator: torch.Generator | None = None) -> "RandomResizeCrop":
        """ATST-Frame's warp: no canvas, time unchanged; ≈ 55.6 % of draws keep all 64 bins (identity),
        otherwise a band of 38…63 bins is stretched to 64."""
        return cls((1.0, 1.0), freq_scale, (1.0, 1.0), generator)

    @classmethod
    def clip(cls, generator: torch.Generator | None = None) -> "RandomResizeCrop":
        """ATST-Clip's crop: 1.5× virtual canvas in time, scales (0.6, 1.5) in frequency and time."""
        return cls((1.0, 1.5), (0.6, 1.5), (0.6, 1.5), generator)

    def params(self, canvas: tuple[int, int], size: tuple[int, int]) -> tuple[int, int, int, int]:
        """Crop (top i, left j, height h, width w) on a canvas of ``canvas`` for an input of ``size``."""
        g = self.generator
        h = min(max(int(_uniform(*self.freq_scale, g) * size[0]), 1), canvas[0])
        w = min(max(int(_uniform(*self.time_scale, g) * size[1]), 1), canvas[1])
        i = _randint(0, canvas[0] - h, g) if canvas[0] > h else 0
        j = _randint(0, canvas[1] - w, g) if canvas[1] > w else 0
        return i, j, h, w

    def __call__(self, x: Tensor) -> Tensor:
        """``x`` (…, F, T) → warped tensor of the same shape (float)."""
        f, t = x.shape[-2:]
        ch, cw = int(f * self.virtual_crop_scale[0]), int(t * self.virtual_crop_scale[1])
        lead = x.shape[:-2]
        x3 = x.reshape(-1, f, t)
        if (ch, cw) != (f, t):
            canvas = x3.new_zeros(x3.shape[0], ch, cw)
            top, left = (ch - f) // 2, (cw - t) // 2
            canvas[:, top : top + f, left : left + t] = x3
        else:
            canvas = x3
        i, j, h, w = self.params((ch, cw), (f, t))
        crop = canvas[:, i : i + h, j : j + w]
        if (h, w) == (f, t):
            out = crop.clone()  # bicubic resize to the same size with align_corners=True is the identity
        else:
            out = F.interpolate(crop[:, None], size=(f, t), mode="bicubic", align_corners=True)[:, 0]
        return out.reshape(*lead, f, t)

"""Train / validation splits of labelled clips: the seeded hold-out draw and the split of DESED's
real strong-labelled AudioSet clips (``strong_real``) into ``strong_real_train`` / ``strong_real_val``.

ATST-SED (github.com/Audio-WestlakeU/ATST-SED, ``train/val_utils/``) does not draw its split of the
AudioSet strong set: it ships two fixed lists, ``audioset_strong_train.tsv`` (3,000 clips) and
``audioset_strong_val.tsv`` (373 clips; both sorted by file name, the 3,373 clips its authors had
downloaded of the 3,470 listed), and no rule, seed or fraction that would regenerate them. So the
split is either those lists (give the files: :func:`split_strong_real`'s ``val_list``/``train_list``;
they are recognised by the SHA-256 of their sorted file names) or, without them, a seeded draw of
the same share (:data:`STRONG_VAL_FRACTION` of the listed clips, seed 42) over every clip of the
labels file, downloaded or not, so that it does not depend on which downloads succeeded.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from os import PathLike
from pathlib import Path

import pandas as pd

from atst_sed.errors import InputError

log = logging.getLogger(__name__)

#: ATST-SED's share of validation clips: 373 of the 3,373 AudioSet strong clips it split.
STRONG_VAL_FRACTION = 373 / 3373
#: Seed of the drawn split (the DCASE 2022 baseline's and ATST-SED's training seed).
STRONG_SPLIT_SEED = 42
#: SHA-256 of ATST-SED's lists (unique file names, sorted, one per line with "\n"): recognises them.
ATST_SED_LISTS_SHA256 = {
    "val": "75b8604cf766e1b663e4fb4310346c5a29543d17e25f56e83211bdb4e64f5833",  # 373 clips
    "train": "a4a501209b1421fe5e329603136a3906440a4a2d91214fabf2b6cb0ce35719ac",  # 3,000 clips
}


def holdout_split(names: Sequence[str], fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Split ``names`` into (training, held out): ``round((1 − fraction)·n)`` names drawn for training
    with ``pandas.Series.sample(random_state=seed)``, as the DCASE 2022 baseline draws its weak
    training part (``weak_df.sample(frac=0.9, random_state=42)``: 1,420 / 158 of DESED's 1,578);
    both parts keep the order of ``names``."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"hold-out fraction must be in [0, 1), got {fraction}")
    series = pd.Series(list(names), dtype=object)
    train = set(series.sample(frac=1.0 - fraction, random_state=seed)) if len(series) else set()
    return [n for n in names if n in train], [n for n in names if n not in train]


def names_digest(names: Sequence[str]) -> str:
    """SHA-256 (hex) of the unique ``names``, sorted, one per line."""
    return hashlib.sha256("".join(f"{n}\n" for n in sorted(set(names))).encode()).hexdigest()


def read_name_list(path: str | PathLike[str]) -> list[str]:
    """File names of a list TSV: its ``filename`` column (a DESED/ATST-SED label or durations file,
    or a one-column list with that header), unique, in file order."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no such file list")
    try:
        df = pd.read_csv(path, sep="\t", dtype=str)
    except Exception as err:  # pandas' message names the line
        raise InputError(path, f"not a readable TSV ({err})") from None
    if "filename" not in df.columns:
        raise InputError(path, "missing column filename", line=1)
    return list(dict.fromkeys(df["filename"].dropna().astype(str)))


def split_strong_real(
    names: Sequence[str],
    val_list: Sequence[str] | None = None,
    train_list: Sequence[str] | None = None,
    fraction: float = STRONG_VAL_FRACTION,
    seed: int = STRONG_SPLIT_SEED,
) -> tuple[list[str], list[str], dict]:
    """(training names, validation names, description) of the strong-labelled clips ``names``.

    With ``val_list``: those clips validate and the rest of ``names`` train, or only ``train_list``'s
    when it is given too (ATST-SED trains on its 3,000 listed clips, not on the 97 it lacked). Names
    of the lists that ``names`` does not hold are ignored (counted in the description). Without
    lists: :func:`holdout_split` of ``names`` with ``fraction`` and ``seed``. Both parts keep the
    order of ``names``. The description says which rule made the split and whether the lists are
    ATST-SED's (``atst_sed_lists``)."""
    if val_list is None:
        if train_list is not None:
            raise ValueError("a training list needs a validation list too")
        train, val = holdout_split(names, fraction, seed)
        return train, val, {"rule": "drawn", "fraction": fraction, "seed": seed, "train": len(train), "val": len(val)}
    wanted_val = set(val_list)
    wanted_train = None if train_list is None else set(train_list)
    if wanted_train is not None and wanted_val & wanted_train:
        raise ValueError(f"{len(wanted_val & wanted_train)} clip(s) are in both the training and the validation list")
    val = [n for n in names if n in wanted_val]
    train = [n for n in names if n not in wanted_val and (wanted_train is None or n in wanted_train)]
    official = names_digest(val_list) == ATST_SED_LISTS_SHA256["val"] and (
        train_list is None or names_digest(train_list) == ATST_SED_LISTS_SHA256["train"])
    listed = set(names)
    body = {
        "rule": "lists",
        "atst_sed_lists": official,
        "train": len(train),
        "val": len(val),
        "val_list_unknown": len(wanted_val - listed),
        "left_out": len(names) - len(train) - len(val),
    }
    if wanted_train is not None:
        body["train_list_unknown"] = len(wanted_train - listed)
    return train, val, body


def write_strong_real_split(
    root: str | PathLike[str],
    val_list: str | PathLike[str] | None = None,
    train_list: str | PathLike[str] | None = None,
) -> dict | None:
    """Write the labels of ``strong_real_train`` / ``strong_real_val`` under corpus ``root``: the rows
    of ``strong_real``'s labels file (as written) of each part, split by :func:`split_strong_real`.

    Without lists, a split written before is kept (a rerun never redraws it); with lists it is
    rewritten (and the validation durations, derived from the audio, are dropped to be written
    again). The description goes to ``ROOT/manifests/strong_real_split.json`` and is returned;
    None when the corpus has no ``strong_real`` labels."""
    from atst_sed.data.corpus import SETS
    from atst_sed.fileio import atomic_write_text, write_json

    root = Path(root)
    labels = root / SETS["strong_real"].labels
    record = root / "manifests" / "strong_real_split.json"
    parts = {"train": root / SETS["strong_real_train"].labels, "val": root / SETS["strong_real_val"].labels}
    if not labels.is_file():
        if val_list is not None or train_list is not None:
            raise InputError(labels, "no AudioSet strong labels to split (download them: prepare dcase22 --download --strong-real)")
        return None
    if val_list is None and train_list is None and record.is_file() and all(p.is_file() for p in parts.values()):
        import json

        return json.loads(record.read_text())
    try:
        rows = pd.read_csv(labels, sep="\t", dtype=str, keep_default_na=False)
    except Exception as err:
        raise InputError(labels, f"not a readable TSV ({err})") from None
    if "filename" not in rows.columns:
        raise InputError(labels, "missing column filename", line=1)
    names = list(dict.fromkeys(rows["filename"]))
    try:
        train, val, body = split_strong_real(
            names,
            None if val_list is None else read_name_list(val_list),
            None if train_list is None else read_name_list(train_list),
        )
    except ValueError as err:
        raise InputError(Path(val_list or train_list or labels), str(err)) from None
    for given, key in ((val_list, "val_list"), (train_list, "train_list")):
        if given is not None:
            body[key] = str(Path(given).resolve())
    for part, chosen in (("train", train), ("val", val)):
        keep = set(chosen)
        atomic_write_text(parts[part], rows[rows["filename"].isin(keep)].to_csv(sep="\t", index=False))
    stale = root / SETS["strong_real_val"].durations
    if stale.is_file():
        stale.unlink()
    write_json(record, body)
    log.info("strong_real split (%s): %d train, %d validation clips", body["rule"], len(train), len(val))
    return body

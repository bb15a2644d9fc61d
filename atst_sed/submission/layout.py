"""The DCASE Task 4 submission package layout: names, formats and the meta-YAML schema.

One zip holds a ``task4/`` folder with the technical report and one folder per system::

    task4/
      <Lastname>_<INST>_task4_technical_report.pdf
      <Lastname>_<INST>_task4_<N>/                 (N = 1..4; the folder name is the system label)
        <label>.meta.yaml                           system meta information
        <label>.output.tsv                          dcase2022: events on the evaluation set
        <label>_run1.output/<clip>.tsv …            dcase2023: sed_scores_eval score files, runs 1–3
        <label>_run1_unprocessed.output/<clip>.tsv  dcase2023, optional: scores before post-processing

Facts (``shared/reference/dcase22.md`` §4 and the organisers' validators): the label is
``[last name of the corresponding author]_[institute abbreviation]_task4_[1-4]``, the meta file
carries ``submission`` / ``system`` / ``results`` sections, ``baseline`` must not appear in the
label, name or abbreviation, and the 2023+ edition asks for timestamped scores of three
independent training runs.
"""

from __future__ import annotations

import re
from typing import Literal

from atst_sed.labels import DESED_CLASSES

__all__ = [
    "DESED_CLASSES",
    "FORMATS",
    "MAX_SYSTEMS",
    "N_RUNS",
    "TASK_DIR",
    "LABEL_PATTERN",
    "SAFE_NAME",
    "Format",
    "RESULT_KEYS",
    "meta_name",
    "output_tsv_name",
    "report_name",
    "run_dir_name",
]

Format = Literal["dcase2022", "dcase2023"]
FORMATS: tuple[str, ...] = ("dcase2022", "dcase2023")

TASK_DIR = "task4"
MAX_SYSTEMS = 4
#: Independent training runs per system in the dcase2023 format.
N_RUNS = 3
#: ``Lastname_INST_task4_N``: ASCII letters (and ``-``) for the name, letters/digits for the
#: institute, system index 1–4.
LABEL_PATTERN = re.compile(r"^[A-Za-z][A-Za-z-]*_[A-Za-z0-9]+_task4_[1-4]$")
#: Characters allowed in every path component of the package.
SAFE_NAME = re.compile(r"^[A-Za-z0-9._-]+$")

#: Where the development-set PSDS goes in the meta YAML, per format: dotted path → the run's
#: metrics.json keys, in order of preference. dcase2023 follows the organisers' validator
#: (``results.devtest.desed.PSDS1``) and is scored with sed_scores_eval (threshold-free PSDS);
#: dcase2022 follows the 2020/2021 layout (``results.development_dataset.overall``) and the
#: 50-operating-point psds_eval PSDS of that year.
RESULT_KEYS: dict[str, dict[str, tuple[str, ...]]] = {
    "dcase2022": {
        "results.development_dataset.overall.PSDS1": ("psds1",),
        "results.development_dataset.overall.PSDS2": ("psds2",),
    },
    "dcase2023": {
        "results.devtest.desed.PSDS1": ("psds1_sed_scores_eval", "psds1"),
        "results.devtest.desed.PSDS2": ("psds2_sed_scores_eval", "psds2"),
    },
}


def meta_name(label: str) -> str:
    return f"{label}.meta.yaml"


def output_tsv_name(label: str) -> str:
    return f"{label}.output.tsv"


def run_dir_name(label: str, run: int, unprocessed: bool = False) -> str:
    return f"{label}_run{run}{'_unprocessed' if unprocessed else ''}.output"


def report_name(label: str) -> str:
    """``Lastname_INST_task4_technical_report.pdf`` for a system label ``Lastname_INST_task4_N``."""
    lastname, inst = label.split("_")[:2]
    return f"{lastname}_{inst}_task4_technical_report.pdf"

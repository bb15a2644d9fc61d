"""DCASE Task 4 submission packages: write (:func:`build_package`) and check (:func:`validate_package`).

See :mod:`atst_sed.submission.layout` for the package structure and
:mod:`atst_sed.submission.meta` for where each meta field comes from.
"""

from atst_sed.submission.layout import FORMATS, LABEL_PATTERN, MAX_SYSTEMS, N_RUNS, TASK_DIR
from atst_sed.submission.meta import read_run, system_meta
from atst_sed.submission.validate import ValidationReport, validate_meta, validate_package
from atst_sed.submission.writer import SubmissionError, SystemSpec, build_package, read_systems_file

__all__ = [
    "FORMATS",
    "LABEL_PATTERN",
    "MAX_SYSTEMS",
    "N_RUNS",
    "TASK_DIR",
    "SubmissionError",
    "SystemSpec",
    "ValidationReport",
    "build_package",
    "read_run",
    "read_systems_file",
    "system_meta",
    "validate_meta",
    "validate_package",
]

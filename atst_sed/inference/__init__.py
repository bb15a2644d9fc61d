"""Inference on recordings of any length: sliding windows, overlap-add, post-processing, detection.

Submodules: :mod:`~atst_sed.inference.postprocess` (median filter, thresholds, events),
:mod:`~atst_sed.inference.windows` (window grid, streamed audio, overlap-add) and
:mod:`~atst_sed.inference.detector` (:class:`Detector`).
"""

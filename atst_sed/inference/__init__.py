"""Inference on recordings of any length: sliding windows, overlap-add, post-processing, detection.

Submodules: :mod:`~atst_sed.inference.postprocess` (median filter, thresholds, events),
:mod:`~atst_sed.inference.windows` (window grid, streamed audio, overlap-add),
:mod:`~atst_sed.inference.detector` (:class:`Detector`) and :mod:`~atst_sed.inference.embeddings`
(chunked frame embeddings for ``atst-sed embed``).
"""

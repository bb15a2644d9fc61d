"""Inference on recordings of any length, with a model's own contract (grid, window, decoding).

Submodules: :mod:`~atst_sed.inference.windows` (window plan on the model's grid, overlap-add),
:mod:`~atst_sed.inference.detector` (:class:`Detector`: scores and events per recording),
:mod:`~atst_sed.inference.batch` (:func:`detect_inputs`: files, folders and globs → events CSV,
score files, pictures, with a report of the inputs that could not be used),
:mod:`~atst_sed.inference.plot` (detection pictures) and :mod:`~atst_sed.inference.embeddings`
(chunked frame embeddings for ``atst-sed embed``). Decoding itself is :mod:`atst_sed.decoding`.
"""

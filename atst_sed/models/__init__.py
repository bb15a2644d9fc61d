"""Models (no training code here): the ATST encoder, frame heads, the two SED model families with
their frontends and contract (:class:`ModelSpec`) — :class:`SEDModel` (ATST-Frame / ATST-Clip
tokens, 40 ms) and :class:`ATSTSEDModel` (ATST-SED: CNN + ATST-Frame + BiGRU, 64 ms) —, checkpoint
I/O for our files, the published layouts and named models (:func:`load_checkpoint`), and the model
factory (:func:`build_model`)."""

from atst_sed.models.crnn import ATSTSEDModel, CRNNConfig, CRNNInput
from atst_sed.models.encoder import ATSTEncoder, EncoderConfig, EncoderOutput
from atst_sed.models.factory import ModelConfig, build_model
from atst_sed.models.head import AttentionPoolingHead, MaxPoolingHead, SEDOutput
from atst_sed.models.sed import ModelInput, SEDModel
from atst_sed.models.spec import ModelSpec

__all__ = [
    "ATSTEncoder",
    "ATSTSEDModel",
    "AttentionPoolingHead",
    "CRNNConfig",
    "CRNNInput",
    "EncoderConfig",
    "EncoderOutput",
    "MaxPoolingHead",
    "ModelConfig",
    "ModelInput",
    "ModelSpec",
    "SEDModel",
    "SEDOutput",
    "build_model",
]

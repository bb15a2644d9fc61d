"""Models: the ATST encoder, SED heads, the ATST-SED family and checkpoint I/O (no training code here)."""

from atst_sed.models.crnn import ATSTSEDModel, CRNNConfig, CRNNFeatures
from atst_sed.models.encoder import ATSTEncoder, EncoderConfig, EncoderOutput
from atst_sed.models.head import AttentionPoolingHead, MaxPoolingHead, SEDOutput
from atst_sed.models.sed import SEDModel
from atst_sed.models.spec import ATST_GRID, CRNN_GRID, FrameGrid, ModelSpec
from atst_sed.models.token_sed import TokenFeatures, TokenSEDModel

__all__ = [
    "ATST_GRID",
    "ATSTEncoder",
    "ATSTSEDModel",
    "AttentionPoolingHead",
    "CRNNConfig",
    "CRNNFeatures",
    "CRNN_GRID",
    "EncoderConfig",
    "EncoderOutput",
    "FrameGrid",
    "MaxPoolingHead",
    "ModelSpec",
    "SEDModel",
    "SEDOutput",
    "TokenFeatures",
    "TokenSEDModel",
]

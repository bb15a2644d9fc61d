"""Models: the ATST encoder, the SED head and checkpoint I/O (no training code here)."""

from atst_sed.models.encoder import ATSTEncoder, EncoderConfig, EncoderOutput
from atst_sed.models.head import AttentionPoolingHead, SEDOutput
from atst_sed.models.sed import SEDModel

__all__ = [
    "ATSTEncoder",
    "AttentionPoolingHead",
    "EncoderConfig",
    "EncoderOutput",
    "SEDModel",
    "SEDOutput",
]

"""Models (no training code here): the ATST encoder, the SED head, the SED model with its frontend
and contract (:class:`ModelSpec`), checkpoint I/O and the model factory (:func:`build_model`)."""

from atst_sed.models.encoder import ATSTEncoder, EncoderConfig, EncoderOutput
from atst_sed.models.factory import ModelConfig, build_model
from atst_sed.models.head import AttentionPoolingHead, SEDOutput
from atst_sed.models.sed import ModelInput, SEDModel
from atst_sed.models.spec import ModelSpec

__all__ = [
    "ATSTEncoder",
    "AttentionPoolingHead",
    "EncoderConfig",
    "EncoderOutput",
    "ModelConfig",
    "ModelInput",
    "ModelSpec",
    "SEDModel",
    "SEDOutput",
    "build_model",
]

"""One file per method: its `Method`, composed from `nn/`, `losses/` and `core/`.

`METHODS` maps `config.method` to the method's class (`Method(config)`); add one line for a new
method.
"""

from mlsup_jax.registry import Registry

METHODS = Registry(
  "method",
  {
    "segmentation": "mlsup_jax.methods.segmentation:SegmentationMethod",
    "scunet": "mlsup_jax.methods.scunet:ScuNetMethod",
    "maxquery": "mlsup_jax.methods.maxquery:MaxQueryMethod",
    "tend": "mlsup_jax.methods.tend:TendMethod",
    "cvad": "mlsup_jax.methods.cvad:CvadMethod",
    "reconstruction_detector": "mlsup_jax.methods.reconstruction_detector:ReconstructionDetector",
    "mcpm": "mlsup_jax.methods.mcpm:McpmMethod",
    "pint": "mlsup_jax.methods.pint:PintMethod",
    "semi_supervised": "mlsup_jax.methods.semi_supervised:SemiSupervisedMethod",
    "morse": "mlsup_jax.methods.morse:MorseMethod",
    "ltuda": "mlsup_jax.methods.ltuda:LtudaMethod",
    "image_classifier": "mlsup_jax.methods.image_classifier:ImageClassifierMethod",
    "pms": "mlsup_jax.methods.pms:PmsMethod",
    "embedding_retrieval": "mlsup_jax.methods.embedding_retrieval:EmbeddingRetrievalMethod",
    "mask_rcnn": "mlsup_jax.methods.mask_rcnn:MaskRcnnMethod",
  },
)

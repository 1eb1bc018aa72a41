"""Cutouts in, TFRecord data sets out and back: readers of survey files, the data set folder and
its manifest, the Lupton stretch and the ``tf.data`` pipeline (TensorFlow is imported only when a
name that needs it is used)."""

from tfanomaly._lazy import lazy_exports

_HOMES = {
    "open_source": "tfanomaly.data.readers",
    "CutoutSource": "tfanomaly.data.sources",
    "CutoutBatch": "tfanomaly.data.sources",
    "DatasetInfo": "tfanomaly.data.manifest",
    "read_manifest": "tfanomaly.data.manifest",
    "verify": "tfanomaly.data.manifest",
    "load_dataset": "tfanomaly.data.dataset",
    "image_dataset": "tfanomaly.data.dataset",
    "LuptonStretch": "tfanomaly.data.stretch",
    "lupton_stretch": "tfanomaly.data.stretch",
    "HSC_MASK_BITS": "tfanomaly.data.planes",
    "DEFAULT_MASK_BITS": "tfanomaly.data.planes",
}
__all__ = list(_HOMES)
__getattr__, __dir__ = lazy_exports(__name__, _HOMES)
del lazy_exports

"""Data: phantoms, real-data sources, grain transforms and the input pipeline.

Every source is random-access (`__len__`, `__getitem__`) and yields examples as dicts of numpy
arrays, channel-last: `image: [H, W, C]` (or `[H, W, D, C]`) float32, and where present
`label: [H, W]` (or `[H, W, D]`) int32 class indices. Other keys are method-specific.
"""

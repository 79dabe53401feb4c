"""Deterministic synthetic phantoms that stand in for real medical images.

Every phantom is a random-access `PhantomSource` (see `framework`): example `i` of a split is
generated from its own generator seeded by `(seed, split, i)`, so any example can be read in any
order, on any process, and is always the same. `framework` holds the shared building blocks
(fractal textures, smooth random curves, curve rasterisation, blurring, caching); each modality
lives in its own module (`bac`: breast arterial calcification in mammograms).
"""

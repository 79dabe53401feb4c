"""Deterministic synthetic phantoms that stand in for real medical images.

Every phantom is a random-access `PhantomSource` (see `framework`): example `i` of a split is
generated from its own generator seeded by `(seed, split, i)`, so any example can be read in any
order, on any process, and is always the same. `framework` holds the shared building blocks
(fractal textures, smooth random curves, curve rasterisation, blurring, caching) and `shapes`
the solid-geometry helpers; each modality lives in its own module (`bac`: breast arterial
calcification in mammograms; `abdomen` with `abdomen_anatomy` and `abdomen_tumours`: abdominal
CT slices with tumour subtypes).
"""

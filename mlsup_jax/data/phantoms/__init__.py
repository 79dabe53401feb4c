"""Deterministic synthetic phantoms that stand in for real medical images.

Every phantom is a random-access `PhantomSource` (`source_base`): example `i` of a split is
generated from its own generator seeded by `(seed, split, i)`, so any example can be read in any
order, on any process, and is always the same. The shared building blocks live in three files:
`source_base` (seeding, the cached random-access base classes), `textures` (fractal and smooth
random fields, blur) and `curves` (random curves and their rasterisation); `shapes` holds the
solid-geometry helpers. Each modality lives in its own module (`bac`: breast arterial
calcification in mammograms; `abdomen` with `abdomen_anatomy` and `abdomen_tumours`: abdominal
CT slices with tumour subtypes; `radiograph`, `ivc_filter`, `modalities`, `shifted_external`).
"""

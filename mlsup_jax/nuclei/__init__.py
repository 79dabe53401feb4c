"""Clumped-nuclei splitting without training (thesis §3.1) and its watershed baseline.

`foreground.py` (the nuclear channel of any image, the global threshold, the nucleus size),
`watershed.py` (marker-controlled watershed, the baseline). Host-side numpy / scipy /
scikit-image.
"""

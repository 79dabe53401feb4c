"""Robustness to spurious features on a frozen encoder: ERM, DFR and CFR (seed 003 §5a).

`frozen_encoder.py` (weights from a checkpoint, cached embeddings), `projection_head.py` (the
trained projection + classifier: ERM and CFR), `calibration_set.py` (CFR's calibration set),
`dfr.py` (group-balanced last-layer retraining). The study: `pipelines/spurious_study.py`.
"""

"""Benchmarks of the methods' train steps (DESIGN §3): jit+sharding, a pmap leg, a PyTorch leg.

`python -m benchmarks.run --config=configs/scunet.py:smoke --out=benchmarks/results`
"""

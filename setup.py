"""Packaging for mlsup_jax.

`install_requires` states the compatible ranges, so the library installs next to other research
packages; `constraints.txt` pins the exact tested set (CI and README's commands install with
`pip install -c constraints.txt ...`). GPU/TPU users add an extra: `pip install -e .[cuda12]`
or `pip install -e .[tpu]`.

Only the `mlsup_jax` package is installed; `configs/`, `launch/` and `benchmarks/` run from a
clone (`python -m launch.train --config=configs/...`), and the console scripts `mlsup-train` and
`mlsup-evaluate` run any config file from anywhere.
"""

from setuptools import find_packages, setup

INSTALL_REQUIRES = [
  "jax>=0.10.2,<0.12",
  "jaxlib>=0.10.2,<0.12",
  "flax>=0.12.8,<0.13",
  "optax>=0.2.8,<0.3",
  "orbax-checkpoint>=0.12.8,<0.13",
  "chex>=0.1.90",
  "grain>=0.2.18,<0.3",
  "einops>=0.8",
  "numpy>=2.0,<3",
  "scipy>=1.13,<2",
  "scikit-learn>=1.5,<2",
  "scikit-image>=0.24,<1",  # classical nuclei splitting and its watershed baseline (nuclei/)
  "threadpoolctl>=3.5",  # one BLAS thread for small eigh calls (ot/label_costs.py)
  "ott-jax>=0.6,<0.7",
  "tensorflow-datasets>=4.9.8,<5",
  "ml-collections>=1.0,<2",
  "absl-py>=2.1",
  "tensorboardX>=2.6",
  "nibabel>=5.2,<6",
  "pydicom>=3.0,<4",
  "pillow>=10.4",
  "tifffile>=2024.8.10",
  "matplotlib>=3.9,<4",
]

EXTRAS_REQUIRE = {
  # The accelerator builds of the same JAX versions (constraints.txt pins jax itself).
  "cuda12": ["jax[cuda12]>=0.10.2,<0.12"],
  "tpu": ["jax[tpu]>=0.10.2,<0.12"],
  "test": ["pytest>=9", "pytest-timeout>=2.3", "pytest-xdist>=3.6", "ruff==0.17.6"],
  # Only for the side-by-side timing leg in benchmarks/; never imported by the library.
  "bench": ["torch"],
}

setup(
  name="mlsup_jax",
  version="0.1.0",
  description="JAX/Flax methods for medical image analysis under limited supervision.",
  python_requires=">=3.11",
  packages=find_packages(include=["mlsup_jax", "mlsup_jax.*"]),
  # The label-set statistics table of data/phantoms/finding_statistics.py.
  package_data={"mlsup_jax.data.phantoms": ["*.csv"]},
  install_requires=INSTALL_REQUIRES,
  extras_require=EXTRAS_REQUIRE,
  entry_points={
    "console_scripts": [
      "mlsup-train=mlsup_jax.cli:train",
      "mlsup-evaluate=mlsup_jax.cli:evaluate",
    ]
  },
)

"""Textures and filters of the phantoms.

`fractal_noise` (power spectrum ∝ 1/f^beta, the classic model of anatomical background such as
breast parenchyma) and `smooth_random_field` (Gaussian-correlated noise), both synthesised by FFT
in any number of dimensions; `gaussian_blur` and `smoothstep`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage


def _frequency_radius(
  shape: tuple[int, ...], stretch: tuple[float, ...] | None = None
) -> np.ndarray:
  """|f| in cycles/pixel on the `rfftn` grid of `shape`: `[*shape[:-1], shape[-1] // 2 + 1]`.

  With `stretch`, axis k's frequencies are multiplied by `stretch[k]` (an anisotropic metric).
  """
  axes = [np.fft.fftfreq(n) for n in shape[:-1]] + [np.fft.rfftfreq(shape[-1])]
  if stretch is not None:
    axes = [a * float(k) for a, k in zip(axes, stretch, strict=True)]
  grids = np.meshgrid(*axes, indexing="ij", sparse=True)
  return np.sqrt(sum(g * g for g in grids))


@functools.lru_cache(maxsize=64)
def _fractal_amplitude(shape, beta, max_wavelength, min_wavelength, stretch) -> np.ndarray:
  f = _frequency_radius(shape, stretch)
  with np.errstate(divide="ignore"):
    amplitude = np.where(f > 0, f ** (-beta / 2.0), 0.0)
  if max_wavelength is not None:
    amplitude *= 1.0 - np.exp(-((f * max_wavelength) ** 2))
  amplitude *= np.exp(-((f * min_wavelength / 2.0) ** 4))
  return _frozen(amplitude)


@functools.lru_cache(maxsize=256)
def _gaussian_amplitude(shape, correlation_length) -> np.ndarray:
  amplitude = np.exp(-2.0 * (math.pi * _frequency_radius(shape) * correlation_length) ** 2)
  amplitude.flat[0] = 0.0
  return _frozen(amplitude)


def _frozen(amplitude: np.ndarray) -> np.ndarray:
  out = amplitude.astype(np.float32)
  out.flags.writeable = False  # Shared by every caller through the cache.
  return out


def _field_from_amplitude(rng: np.random.Generator, shape, amplitude: np.ndarray) -> np.ndarray:
  spectrum = np.empty(amplitude.shape, np.complex64)
  spectrum.real = rng.standard_normal(amplitude.shape, dtype=np.float32) * amplitude
  spectrum.imag = rng.standard_normal(amplitude.shape, dtype=np.float32) * amplitude
  field = np.fft.irfftn(spectrum, s=shape, axes=tuple(range(len(shape))))
  field -= field.mean()
  std = field.std()
  return (field / std if std > 0 else field).astype(np.float32, copy=False)


def fractal_noise(
  rng: np.random.Generator,
  shape: Sequence[int],
  beta: float = 3.0,
  max_wavelength: float | None = None,
  min_wavelength: float = 2.0,
  stretch: Sequence[float] | None = None,
) -> np.ndarray:
  """Gaussian noise with power spectrum ∝ 1/|f|^beta, normalised to zero mean and unit std.

  beta ≈ 3 reproduces the power law measured on mammographic parenchyma; smaller beta is rougher.
  The amplitude spectrum is cached per parameter set, so repeated calls only cost the random
  draws and one inverse FFT.

  Args:
    rng: the case generator.
    shape: output shape (any number of dimensions; the last one is the rfft axis).
    beta: spectral exponent.
    max_wavelength: if given, wavelengths longer than this (in pixels) are smoothly suppressed,
      which removes the image-wide gradients that dominate a 1/f^beta field.
    min_wavelength: wavelengths shorter than this are smoothly suppressed.
    stretch: optional per-axis elongation factors: structures come out `stretch[k]` times longer
      along axis k (e.g. `(1, 3)` for a texture streaked along the columns).

  Returns:
    `[*shape]` float32, mean 0, std 1 (periodic at the borders).
  """
  shape = tuple(int(n) for n in shape)
  amplitude = _fractal_amplitude(
    shape,
    float(beta),
    None if max_wavelength is None else float(max_wavelength),
    float(min_wavelength),
    None if stretch is None else tuple(float(k) for k in stretch),
  )
  return _field_from_amplitude(rng, shape, amplitude)


def smooth_random_field(
  rng: np.random.Generator, shape: Sequence[int], correlation_length: float
) -> np.ndarray:
  """White noise low-passed by a Gaussian of std `correlation_length` pixels (via FFT).

  Args:
    rng: the case generator.
    shape: output shape (any number of dimensions, e.g. `(n,)` for a signal along a curve).
    correlation_length: std of the Gaussian smoothing kernel, in pixels.

  Returns:
    `[*shape]` float32, mean 0, std 1 (periodic at the borders).
  """
  shape = tuple(int(n) for n in shape)
  amplitude = _gaussian_amplitude(shape, float(correlation_length))
  return _field_from_amplitude(rng, shape, amplitude)


def gaussian_blur(image: np.ndarray, sigma: float | Sequence[float]) -> np.ndarray:
  """Gaussian blur with edge replication (float32, kernel truncated at 3 sigma)."""
  return ndimage.gaussian_filter(np.asarray(image, np.float32), sigma, mode="nearest", truncate=3.0)


def smoothstep(x: np.ndarray, low: float, high: float) -> np.ndarray:
  """The cubic Hermite step: 0 below `low`, 1 above `high`, smooth in between."""
  t = np.clip((np.asarray(x, np.float32) - low) / (high - low), 0.0, 1.0)
  return t * t * (3.0 - 2.0 * t)

"""Breast-arterial-calcification (BAC) burden metrics of one whole image (SCU-Net thesis).

For one image with per-pixel calcification probabilities `p` and 8-bit intensities `I`:

- `PM = sum(p)`: probability mass, no threshold.
- `AM = sum(1[p > t])`: calcified area in pixels.
- `SIM = sum_{p > t} I`: summed intensity over the calcified area.
- `TAM{X} = sum_{p > t} 1[I > X]`: calcified area brighter than `X`.
- `TSIM{X} = sum_{p > t, I > X} I`: summed intensity over that bright calcified area.

`t = prob_threshold` (0.5) is strict (`p > t`). The intensity cut is `I > X` as written in the
thesis by default; the authors' code uses `I >= X`, selected with `inclusive_intensity=True`.
For ground truth, pass the binary mask as `prob` (1.0 > 0.5, 0.0 is not).

Agreement between predicted and true metrics over a set of images is reported as the thesis's
"R2-correlation": the squared Pearson correlation `corr(pred, true)**2` (`r_squared`). This is
not sklearn's `r2_score` (coefficient of determination `1 - SS_res / SS_tot` of `pred` used
directly as the estimate of `true`), which penalises bias and scale errors and can be negative;
the squared correlation is invariant to any affine rescaling of the predictions.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _x_name(x: float) -> str:
  """`100` for 100 or 100.0, `99.5` for 99.5: the suffix of the `TAM`/`TSIM` keys."""
  return str(int(x)) if float(x).is_integer() else str(x)


def metric_names(x: float = 100) -> tuple[str, ...]:
  """Keys of `bac_metrics` for intensity cut `x`: `(PM, AM, SIM, TAM{x}, TSIM{x})`."""
  return ("PM", "AM", "SIM", f"TAM{_x_name(x)}", f"TSIM{_x_name(x)}")


def bac_metrics(
  prob: np.ndarray,
  intensity: np.ndarray,
  prob_threshold: float = 0.5,
  x: float = 100,
  inclusive_intensity: bool = False,
) -> dict[str, float]:
  """The five BAC burden metrics of one image.

  Args:
    prob: `[H, W]` calcification probabilities in [0, 1] (or a binary ground-truth mask).
    intensity: `[H, W]` image intensities on the 8-bit 0-255 scale (not normalised to [0, 1]).
    prob_threshold: pixels with `prob > prob_threshold` (strict) count as calcified; in [0, 1).
    x: intensity cut `X` of `TAM{X}` and `TSIM{X}`.
    inclusive_intensity: False uses `I > X` (thesis); True uses `I >= X` (authors' code).

  Returns:
    `{PM, AM, SIM, TAM{x}, TSIM{x}}` as Python floats (keys from `metric_names(x)`).
  """
  p = np.asarray(prob, dtype=np.float64)
  img = np.asarray(intensity, dtype=np.float64)
  if p.shape != img.shape:
    raise ValueError(f"prob shape {p.shape} does not match intensity shape {img.shape}.")
  if not np.all(np.isfinite(p)) or (p.size and (p.min() < 0 or p.max() > 1)):
    raise ValueError("prob must be finite and lie in [0, 1].")
  if not np.all(np.isfinite(img)) or (img.size and (img.min() < 0 or img.max() > 255)):
    raise ValueError("intensity must be finite and lie in [0, 255] (8-bit scale).")
  if not 0.0 <= prob_threshold < 1.0:
    raise ValueError(f"prob_threshold must lie in [0, 1), got {prob_threshold}.")
  calcified = p > prob_threshold
  bright = calcified & ((img >= x) if inclusive_intensity else (img > x))
  values = (
    p.sum(),
    np.count_nonzero(calcified),
    img[calcified].sum(),
    np.count_nonzero(bright),
    img[bright].sum(),
  )
  return {k: float(v) for k, v in zip(metric_names(x), values, strict=True)}


def r_squared(pred_values: Sequence[float], true_values: Sequence[float]) -> float:
  """Squared Pearson correlation ("R2-correlation") of predicted vs true metric values.

  Differs from `sklearn.metrics.r2_score` (see module docstring). Guarded: returns 0.0 when
  either side is constant (zero variance, including fewer than two values), never NaN.

  Args:
    pred_values: `[N]` predicted metric, one value per image.
    true_values: `[N]` true metric, one value per image.

  Returns:
    `corr(pred_values, true_values) ** 2` in [0, 1].
  """
  a = np.asarray(pred_values, dtype=np.float64).reshape(-1)
  b = np.asarray(true_values, dtype=np.float64).reshape(-1)
  if a.shape != b.shape:
    raise ValueError(f"pred_values has {a.size} values but true_values has {b.size}.")
  if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
    raise ValueError("r_squared needs finite values.")
  if a.size < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
    return 0.0
  a, b = a - a.mean(), b - b.mean()
  denom = np.sqrt(np.sum(a * a) * np.sum(b * b))
  if denom == 0:
    return 0.0
  return float(np.clip((np.sum(a * b) / denom) ** 2, 0.0, 1.0))


def bac_agreement(
  pred_probs: Sequence[np.ndarray],
  true_masks: Sequence[np.ndarray],
  intensities: Sequence[np.ndarray],
  **kw,
) -> dict[str, float]:
  """R2-correlation of each BAC metric between predictions and ground truth over images.

  Args:
    pred_probs: N arrays `[H_i, W_i]` of predicted probabilities.
    true_masks: N arrays `[H_i, W_i]` of binary ground-truth masks (used as `prob`).
    intensities: N arrays `[H_i, W_i]` of 8-bit intensities.
    **kw: passed to `bac_metrics` (`prob_threshold`, `x`, `inclusive_intensity`).

  Returns:
    `{r2_PM, r2_AM, r2_SIM, r2_TAM{x}, r2_TSIM{x}}` from `r_squared` over the N images.
  """
  n = len(pred_probs)
  if n == 0 or len(true_masks) != n or len(intensities) != n:
    raise ValueError(
      f"need equally many (>= 1) predictions, masks and intensities; got {n}, "
      f"{len(true_masks)}, {len(intensities)}."
    )
  pred = [bac_metrics(p, img, **kw) for p, img in zip(pred_probs, intensities, strict=True)]
  true = [
    bac_metrics(np.asarray(m, dtype=np.float64), img, **kw)
    for m, img in zip(true_masks, intensities, strict=True)
  ]
  return {
    f"r2_{k}": r_squared([d[k] for d in pred], [d[k] for d in true])
    for k in metric_names(kw.get("x", 100))
  }

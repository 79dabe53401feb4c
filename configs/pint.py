r"""PINT, PNT, INT and plain training under synthetic label noise on the abdominal CT phantom.

Train and evaluate:
  python -m launch.train --config=configs/pint.py --workdir=runs/pint
  python -m launch.train --config=configs/pint.py:variant=pnt --workdir=runs/pnt
  python -m launch.train --config=configs/pint.py:variant=int --workdir=runs/int
  python -m launch.train --config=configs/pint.py:variant=none --workdir=runs/pint_baseline
Smoke run (seconds on a CPU):
  python -m launch.train --config=configs/pint.py:smoke --workdir=runs/pint_smoke
Other noise, e.g. 75% elastic deformations, or a clean upper bound:
  ... --config=configs/pint.py:noise=elastic,ratio=0.75
  ... --config=configs/pint.py:variant=none,ratio=0
The spec's formulas with no pseudo-label ramp-up, soft pixel weights, the teacher evaluated:
  ... --config.pint.pseudo_label_rampup_steps=0 --config.pint.pixel_weighting=soft \
      --config.eval.use_teacher=True
UA-MT's pixel threshold ramp 0.75·ln K → ln K instead of the constant τ = 0.75·ln K:
  ... --config.pint.threshold_end=1.0
The README's learns setting (r = 0.4, long enough for plain training to memorise the noise):
  ... --config=configs/pint.py:small,ratio=0.4,steps=3000

Options after the colon (comma-separated):
  variant=pint|pnt|int|none  pixel + image level (default) | pixel level only | image level only |
                             neither: cross-entropy on the noisy labels (the baseline, same data,
                             optimizer and evaluation; the EMA teacher is kept but not used);
  noise=dilation|erosion|elastic  the label corruption (elastic = warp + rotation + translation
                             followed by a dilation);
  ratio=R                    fraction r of corrupted training images (default 0.5, the paper's
                             headline LA setting);
  target=liver|lesion|all    the segmentation target: the liver with its tumours as one binary
                             foreground (default; the papers segment one structure, e.g. the
                             left atrium), the lesions as one class, or all 5 phantom classes;
  eval=test|val              evaluate on the test slices (default) or on disjoint validation
                             slices (for choosing hyper-parameters);
  small                      32² images, 600 steps: a CPU-sized run (learns tests, README table);
  full                       the papers' scale, for accelerators: 2206 slices at 128², a 5-level
                             U-Net (32 … 320), batch 16, UA-MT's 6000 steps; PINT's 3-D V-Net on
                             112×112×80 LA patches is a 2-D U-Net here, like every size
                             (`configs/sections/noisy_label_data.py` says which numbers are ours);
  steps=N                    train N steps instead of the size's default (the cosine decay and
                             the τ / pseudo-label ramp-ups follow);
  smoke                      a tiny run for tests.
The training images are the `train` role of the same noisy pool as configs/mcpm.py (its clean meta
role is left unused), so PINT and MCPM / MW-Net train on the same images with the same noise.
"""

import math

import ml_collections

from configs.sections import common
from configs.sections.noisy_label_data import (
  noisy_label_data,
  run_steps,
  size_name,
  target_classes,
  unet_model,
)
from mlsup_jax import losses
from mlsup_jax.methods.pint import LOSS_ROLES

VARIANTS = {
  "pint": (True, True),
  "pnt": (True, False),
  "int": (False, True),
  "none": (False, False),
}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  flags, values = common.parse_arg(
    arg,
    flags={"smoke", "small", "full"},
    values={
      "variant": "pint",
      "noise": "dilation",
      "ratio": "0.5",
      "eval": "test",
      "steps": "",
      "target": "liver",
    },
  )
  variant, noise = values["variant"], values["noise"]
  if variant not in VARIANTS:
    raise ValueError(f"Unknown variant {variant!r}; expected one of {tuple(VARIANTS)}.")
  ratio = float(values["ratio"])
  size = size_name(flags)
  smoke = size == "smoke"
  steps = run_steps(size, values["steps"])
  passes = 2 if smoke else 8
  pixel, image = VARIANTS[variant]

  config = ml_collections.ConfigDict()
  config.method = "pint"
  config.seed = 0

  config.model = unet_model(size, values["target"])
  config.pint = ml_collections.ConfigDict(
    {
      "pixel": pixel,  # PNT.
      "image": image,  # INT.
      # Teacher (UA-MT): EMA decay γ with the warm start min(1 − 1/(t+1), γ).
      "ema_decay": 0.99,
      # T perturbed teacher passes on x + clip(N(0, 0.1²), −0.2, 0.2).
      "num_passes": passes,
      "noise_std": 0.1,
      "noise_clip": 0.2,
      "passes_per_call": 0,  # Passes evaluated together (memory); 0: all T at once.
      # Pixel level: α_v = 1[u_v < τ_t] ("hard") or sigmoid((τ_t − u_v) / soft_temperature).
      "pixel_weighting": "hard",
      "soft_temperature": 0.05,  # nats.
      # τ_t = (start + (end − start) r(t, threshold_rampup_steps)) · scale, scale = ln K, the
      # entropy ceiling of K classes (UA-MT's ln 2 is the binary case; the 5-class study chose
      # ln 5 over ln 2 / ln 3 on validation, docs/noisy_labels_multiclass.md). UA-MT ramps
      # start 0.75 → end 1; at τ = ln K every pixel's label is trusted again by the end of the
      # run, so we hold τ = 0.75 ln K. Validation Dice (`:small,ratio=0.4,eval=val`, seeds
      # 0 / 1 / 2): constant 0.899 / 0.897 / 0.900, UA-MT's ramp 0.901 / 0.889 / 0.896, plain
      # 0.904 / 0.882 / 0.892; with `steps=3000` constant 0.870 / 0.863 / 0.875, ramp 0.837 /
      # 0.829 (seeds 0 / 1), plain 0.849 / 0.830 / 0.851.
      # UA-MT's ramp: --config.pint.threshold_end=1.0.
      "threshold_start": 0.75,
      "threshold_end": 0.75,
      "threshold_scale": math.log(len(target_classes(values["target"]))),
      "threshold_rampup_steps": steps,  # UA-MT: the whole run.
      # Image level: α_i from the rank of U_i in the batch.
      "image_weighting": "rank_linear",
      "image_keep_fraction": 0.5,  # rank_hard: the share of most certain images trusted.
      # PINT: "rescue" w = 1 − (1 − α_i)(1 − α_v), or "product" w = α_i α_v.
      "combine": "rescue",
      # w̃ = 1 − λ_t (1 − w), λ_t = r(t, pseudo_label_rampup_steps); 0: the spec's formulas.
      "pseudo_label_rampup_steps": max(steps // 4, 1),
    }
  )
  # Per-pixel terms by name: L_seg on the noisy label (`supervised`; PINT: cross-entropy) and
  # L_pse against the teacher (`pseudo_label`; PINT: ‖f − ŷ‖²).
  config.loss = losses.roles_section(
    LOSS_ROLES,
    {"supervised": {"cross_entropy": 1.0}, "pseudo_label": {"pseudo_label_mse": 1.0}},
  )
  # UA-MT's SGD (momentum 0.9, weight decay 1e-4); the lr of the U-Net in configs/mcpm.py, and a
  # cosine decay instead of UA-MT's ×0.1 steps (the library has no step schedule).
  config.optimizer = common.optimizer("sgd", learning_rate=0.05, weight_decay=1e-4)
  config.optimizer.schedule = "constant" if smoke else "cosine"

  # The training images are MCPM's (its clean meta role is held out, unused).
  config.data = noisy_label_data(
    size=size,
    noise=noise,
    ratio=ratio,
    meta_stream=False,
    eval_split=values["eval"],
    target=values["target"],
  )
  config.train = common.train(
    num_steps=steps,
    log_every=2 if smoke else 50,
    checkpoint_every=3 if smoke else 500,
  )
  config.eval = ml_collections.ConfigDict(
    {"batch_size": 4 if smoke else 16, "use_teacher": False, "missed_distance": "exclude"}
  )
  config.mesh = common.mesh()
  return common.finalize(config)

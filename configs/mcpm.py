r"""MCPM, MW-Net and the plain U-Net under synthetic label noise on the abdominal CT phantom.

Train and evaluate (the meta set is a clean, disjoint part of the same phantom pool):
  python -m launch.train --config=configs/mcpm.py --workdir=runs/mcpm
  python -m launch.train --config=configs/mcpm.py:variant=mwnet --workdir=runs/mwnet
  python -m launch.train --config=configs/mcpm.py:variant=unet --workdir=runs/unet_noisy
Smoke run (seconds on a CPU):
  python -m launch.train --config=configs/mcpm.py:smoke --workdir=runs/mcpm_smoke
Other noise, e.g. 60% elastic deformations, or a clean upper bound:
  ... --config=configs/mcpm.py:noise=elastic,ratio=0.6
  ... --config=configs/mcpm.py:variant=unet,ratio=0

Options after the colon (comma-separated):
  variant=mcpm|mwnet|unet  per-pixel meta mask (default) | per-image MW-Net weights | no meta
                           re-weighting (the baseline, same data and evaluation);
  noise=dilation|erosion|elastic  the label corruption (elastic = warp + rotation + translation
                           followed by a dilation, the paper's "ElasticDeform");
  ratio=R                  fraction r of corrupted training samples (default 0.4);
  target=liver|lesion|all  the segmentation target: the liver with its tumours as one binary
                           foreground (default; the papers segment one structure, e.g. LIDC
                           nodules), the lesions as one class, or all 5 phantom classes;
  eval=test|val            evaluate on the test slices (default) or on disjoint validation
                           slices (for choosing hyper-parameters);
  small                    32² images, 600 steps: a CPU-sized run (learns tests, README table);
  full                     the paper's scale, for accelerators: LIDC's 1906 noisy + 300 clean meta
                           slices at 128², a 5-level U-Net (32 … 320), batch 16, 6000 steps
                           (`configs/sections/noisy_label_data.py` says which numbers are ours);
  steps=N                  train N steps instead of the size's default (the cosine decay follows);
  smoke                    a tiny run for tests.
Memory and time of the second-order meta step: `--config.meta.meta_every=k` updates the meta
network every k steps; `--config.meta.remat=True` recomputes the virtual step in the backward.
"""

import ml_collections

from configs.sections import common
from configs.sections.noisy_label_data import noisy_label_data, run_steps, size_name, unet_model
from mlsup_jax import losses
from mlsup_jax.methods.mcpm import LOSS_ROLES

VARIANTS = {"mcpm": "pixel", "mwnet": "image", "unet": "none"}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  flags, values = common.parse_arg(
    arg,
    flags={"smoke", "small", "full"},
    values={
      "variant": "mcpm",
      "noise": "dilation",
      "ratio": "0.4",
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
  meta_features = (8,) if smoke else (16, 16)

  config = ml_collections.ConfigDict()
  config.method = "mcpm"
  config.seed = 0

  config.model = unet_model(size, values["target"])
  config.meta = ml_collections.ConfigDict(
    {
      "weighting": VARIANTS[variant],
      # MetaMaskNet (MCPM): hidden conv widths and kernel; the image as a second input or not.
      "features": meta_features,
      "kernel_size": 3,
      "use_image": False,  # MCPM only; the paper's meta net reads the loss map alone.
      "hidden": 100,  # MetaWeightNet (MW-Net's VNet 1 → 100 → 1).
      # R / mean(R) over the batch (L2RW, MLB-Seg; MCPM) or MW-Net's raw R (its code). Chosen
      # for MCPM on the validation slices (`:small,target=liver,eval=val`, mean Dice, seeds 0/1):
      # normalised 0.929 / 0.919, raw 0.920 / 0.878; the U-Net 0.890 (seed 0).
      "normalize": variant == "mcpm",
      "inner_lr": 0.0,  # 0: α = the segmentation optimizer's current lr (MW-Net).
      "meta_every": 1,
      "remat": False,
      # MW-Net's meta optimizer: Adam, lr 1e-3, (coupled) weight decay 1e-4.
      "optimizer": common.optimizer("adam", learning_rate=1e-3, weight_decay=1e-4),
    }
  )
  # `train`: the per-pixel loss ℓ the meta network weights; `meta`: the meta loss on the clean
  # meta batch. MW-Net: plain cross-entropy for both.
  config.loss = losses.roles_section(
    LOSS_ROLES, {"train": {"cross_entropy": 1.0}, "meta": {"cross_entropy": 1.0}}
  )
  # MW-Net's model optimizer: SGD, momentum 0.9, Nesterov, weight decay 5e-4 (lr for a U-Net).
  config.optimizer = common.optimizer("sgd", learning_rate=0.05, weight_decay=5e-4)
  config.optimizer.nesterov = True
  config.optimizer.schedule = "constant" if smoke else "cosine"

  config.data = noisy_label_data(
    size=size,
    noise=noise,
    ratio=ratio,
    meta_stream=VARIANTS[variant] != "none",
    eval_split=values["eval"],
    target=values["target"],
  )
  config.train = common.train(
    num_steps=steps,
    log_every=2 if smoke else 50,
    checkpoint_every=3 if smoke else 500,
  )
  # `missed_distance`: a structure missed in a case counts as "exclude" (left out of the mean
  # distances, counted in `num_missed`), "diagonal" (the image diagonal) or a number.
  config.eval = ml_collections.ConfigDict(
    {"batch_size": 4 if smoke else 16, "missed_distance": "exclude"}
  )
  config.mesh = common.mesh()
  return common.finalize(config)

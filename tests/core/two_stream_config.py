"""Config of `two_stream_launch.py`: 2 labelled + 6 unlabelled phantom slices per step (1:3)."""

import ml_collections

from configs.sections import common


def get_config(arg=None):
  del arg
  phantom = {"name": "phantom_abdomen", "image_size": 32, "spatial_dims": 2, "seed": 0}
  relabelled = {"name": "relabel", "mapping": (0, 1, 1, 1, 1)}  # the liver with its tumours
  config = ml_collections.ConfigDict()
  config.method = "test_two_streams"
  config.seed = 0
  config.model = ml_collections.ConfigDict(
    {"name": "unet", "num_classes": 2, "features": (8, 16), "dropout_rate": 0.1, "dtype": "float32"}
  )
  config.loss = ml_collections.ConfigDict()
  config.optimizer = common.optimizer("sgd", learning_rate=0.05)
  unlabelled = {**phantom, "split": "val", "num_cases": 24}
  config.data = ml_collections.ConfigDict(
    {
      "train_source": {**relabelled, "base": {**phantom, "split": "train", "num_cases": 8}},
      "eval_source": {**relabelled, "base": {**phantom, "split": "test", "num_cases": 4}},
      "streams": {
        "unlabelled": common.stream(
          unlabelled,
          6,
          ("ct_window", "random_dihedral"),
          require_label=False,
          views={"strong": ("random_brightness",)},
        )
      },
      "batch_size": 2,
      "seed": 0,
      "spatial_dims": 2,
      "num_classes": 2,
      "require_label": True,
      "train_transforms": ("ct_window", "random_dihedral"),
      "eval_transforms": ("ct_window",),
      "window_level": 40.0,
      "window_width": 400.0,
      "brightness_delta": 0.2,
      "worker_count": 0,
      "read_threads": 2,
    }
  )
  config.train = common.train(num_steps=24, log_every=4, checkpoint_every=8)
  config.eval = ml_collections.ConfigDict({"batch_size": 4})
  config.mesh = common.mesh()
  return common.finalize(config)

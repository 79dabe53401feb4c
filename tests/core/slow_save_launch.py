"""`launch.train` with a pause after every checkpoint save, so a test can SIGKILL it mid-run.

The pause changes only wall time, never what is computed or saved.
"""

import time

from absl import app

from launch import train
from mlsup_jax.core import checkpoint

_save = checkpoint.Checkpointer.save


def _slow_save(self, step, *args, **kwargs):
  _save(self, step, *args, **kwargs)
  self.wait()
  time.sleep(1.5)


checkpoint.Checkpointer.save = _slow_save

if __name__ == "__main__":
  app.run(train.main)

"""The per-operation CPU profile of a compiled step, at smoke size."""

from __future__ import annotations

from benchmarks import op_profile
from configs import scunet


def test_a_smoke_step_is_profiled_by_operation_kind():
  profile = op_profile.profile_step(scunet.get_config("smoke"), warmup=1, steps=1)
  kinds = profile["by_kind"]
  assert set(kinds) <= {label for label, _ in op_profile.KINDS} | {"elementwise / other"}
  assert sum(kinds.values()) > 0
  # SCU-Net is convolutional: its convolutions are among the step's operations.
  assert kinds.get("convolution", 0) > 0
  assert abs(sum(profile["ops"].values()) - sum(kinds.values())) < 1e-6

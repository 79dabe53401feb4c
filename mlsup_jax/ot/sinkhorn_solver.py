"""How OTDD runs Sinkhorn (ott-jax): absolute ε, a stated tolerance, guarded momentum.

microsoft/otdd runs geomloss' ε-scaling for ~10 updates and stops there, so its values sit
0–3 % (balanced) to 12–23 % (imbalanced classes) below the converged divergence (spec
reference_code_constants §7). Here every problem runs until ott-jax's marginal error (L1 norm of
the marginal violation) is below `threshold`, and reports whether it got there. Float32
potentials limit the reachable error to ~1e-4–1e-5 when cost/ε ≈ 10³, hence the default 1e-3.

Small ε next to the cost needs O(cost / ε) iterations. Adaptive momentum (over-relaxation with
Lehmann et al.'s weight from the observed error decay, ott-jax's `Momentum(start=…)`) cut them
4–6× on our test problems (e.g. 3700 → 750 at 1000 points, D = 64, cost/ε ≈ 600), but it
DIVERGED (−inf) on some small-ε problems, unpredictably in the start iteration: during a slow
transient the error ratio is ≈ 1, giving a weight ≈ 1.94. ott-jax still reports such runs as
`converged`, and gating by `error_threshold` removed the speed-up. So the accelerated attempt
runs first and, where it diverged, the callers re-run plain Sinkhorn; convergence is judged
here from the final cost and the last measured error, not from ott-jax's flag.

The self-transport problems of a Sinkhorn divergence use Feydy et al.'s averaged updates
(parallel updates, weight 0.5), as ott-jax's `sinkhorn_divergence` does; they cannot diverge.

ε-scaling (`epsilon_decay` < 1: ε_t = ε · max(init · decay^t, 1), ott-jax's `Epsilon` schedule,
init = largest cost / ε per problem) is off by default: on the outer problem it did not reduce
iterations next to momentum and slowed convergence at D = 256. It is what makes OTDD's exact
inner problems converge (`INNER_SETTINGS`): class-vs-class clouds with ε = 0.1 next to costs of
≈ 600 (cost/ε ≈ 6000; issue 28: 5 classes in 16-D, 20 % flipped labels) need up to 60 000 plain
iterations, and momentum started from ε's first iteration diverged on half of them. Annealed
first, with momentum starting once ε has reached its target (`momentum_start`), they took
240–2200 iterations and none diverged. Later convergence is still judged at the target ε: the
marginal error uses the target ε, so a problem stops early only if its plan at the target ε
meets the tolerance.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import jax.tree_util as jtu
from ott.geometry import epsilon_scheduler, geometry
from ott.solvers import linear
from ott.solvers.linear import acceleration


@dataclasses.dataclass(frozen=True)
class SinkhornSettings:
  """Numerics of one kind of Sinkhorn problem; hashable, so a static `jax.jit` argument.

  ε is not here: it is a traced argument (carried by the geometry), so changing it does not
  recompile.

  Attributes:
    threshold: stop when ott-jax's L1 marginal error is below this.
    max_iterations: cap per attempt; problems that hit it report not converged.
    inner_iterations: iterations between two error evaluations (ott-jax's `inner_iterations`).
    adaptive_momentum: try the accelerated solver first (see module docstring).
    momentum_start: iteration from which Lehmann's adaptive momentum applies (a multiple of
      `inner_iterations`, ≥ 2 of them: the weight uses the error ratio of the two blocks before).
    epsilon_decay: ε-scaling decay per iteration (1.0: fixed ε); callers that build the
      geometry apply it with `annealed_epsilon`.
  """

  threshold: float = 1e-3
  max_iterations: int = 5000
  inner_iterations: int = 10
  adaptive_momentum: bool = True
  momentum_start: int = 60
  epsilon_decay: float = 1.0

  def __post_init__(self):
    if not self.threshold > 0:
      raise ValueError(f"threshold must be > 0, got {self.threshold}.")
    if self.inner_iterations < 1 or self.max_iterations < 2 * self.inner_iterations:
      raise ValueError(
        f"need inner_iterations ≥ 1 and max_iterations ≥ 2 · inner_iterations, got "
        f"{self.inner_iterations} and {self.max_iterations}."
      )
    start, inner = self.momentum_start, self.inner_iterations
    if start < 2 * inner or start % inner:
      raise ValueError(
        f"momentum_start must be a multiple of inner_iterations={inner} and ≥ {2 * inner}, "
        f"got {start}."
      )
    if not 0 < self.epsilon_decay <= 1:
      raise ValueError(f"epsilon_decay must be in (0, 1], got {self.epsilon_decay}.")


# OTDD's exact inner problems (class cloud vs class cloud): ε-scaling by 0.9 per iteration from
# the largest cost down to ε takes ≤ 175 iterations up to cost/ε = 10⁸, so momentum measures its
# error ratio at the target ε from iteration 200 on (see the module docstring).
INNER_SETTINGS = SinkhornSettings(momentum_start=200, epsilon_decay=0.9)


@jtu.register_pytree_node_class
class _TracedEpsilon(epsilon_scheduler.Epsilon):
  """ott-jax's `Epsilon` schedule with a traced `init` (a pytree child, not static aux data),
  so the start of the annealing can follow each problem's cost scale without recompiling."""

  def tree_flatten(self):  # noqa: D102
    return (self.target, self.init), {"decay": self.decay}

  @classmethod
  def tree_unflatten(cls, aux_data, children):  # noqa: D102
    return cls(children[0], init=children[1], **aux_data)


def annealed_epsilon(epsilon, max_cost, settings: SinkhornSettings):
  """ε, or an ε-scaling schedule from `max_cost` down to ε when `settings.epsilon_decay` < 1.

  Args:
    epsilon: target ε (absolute, scalar).
    max_cost: scalar, the largest cost of the problem (its scale); traced.
    settings: gives the decay per iteration.

  Returns:
    `epsilon` itself, or an `Epsilon` for `geometry.Geometry(epsilon=...)`.
  """
  if settings.epsilon_decay == 1.0:
    return epsilon
  init = jnp.maximum(max_cost / epsilon, 1.0)
  return _TracedEpsilon(epsilon, init=init, decay=settings.epsilon_decay)


class OTSolve(NamedTuple):
  """One entropic OT problem: cost OT_ε = <P, C> + ε KL(P | a⊗b) (ott-jax's `reg_ot_cost`),
  whether it met the tolerance, total iterations (all attempts), whether it diverged."""

  cost: jax.Array
  converged: jax.Array
  iterations: jax.Array
  diverged: jax.Array


def _solve_once(geom, a, b, settings: SinkhornSettings, **kwargs) -> OTSolve:
  out = linear.solve(
    geom,
    a=a,
    b=b,
    threshold=settings.threshold,
    max_iterations=settings.max_iterations,
    inner_iterations=settings.inner_iterations,
    **kwargs,
  )
  # ott-jax marks unmeasured blocks inf and finished ones −1: the last measured error sits at
  # block n_iters / inner_iterations − 1.
  last_error = out.errors[jnp.maximum(out.n_iters // settings.inner_iterations - 1, 0)]
  finite = jnp.isfinite(out.reg_ot_cost)
  return OTSolve(
    cost=out.reg_ot_cost,
    converged=finite & (last_error >= 0) & (last_error < settings.threshold),
    iterations=out.n_iters,
    diverged=~finite | ~jnp.isfinite(last_error),
  )


def solve_ot(
  geom: geometry.Geometry,
  a: jax.Array,
  b: jax.Array,
  settings: SinkhornSettings,
  *,
  symmetric: bool = False,
  accelerated: bool | None = None,
) -> OTSolve:
  """Entropic OT between weights `a: [n]` and `b: [m]` on `geom` (its ε is used as is).

  A diverged accelerated solve is NOT retried here (an in-graph `lax.cond` doubles compile
  time, and under `vmap` runs both branches for every lane): callers check `diverged` on the
  host and call again with `accelerated=False`.

  Args:
    geom: `[n, m]` geometry carrying the absolute ε.
    a, b: marginals, each summing to 1 (zeros allowed: padding).
    settings: tolerance and iteration caps.
    symmetric: `geom` compares a measure with itself (a = b): averaged updates, no momentum.
    accelerated: use adaptive momentum; None: `settings.adaptive_momentum`.
  """
  if symmetric:
    momentum = acceleration.Momentum(start=0, value=0.5)
    return _solve_once(geom, a, b, settings, parallel_dual_updates=True, momentum=momentum)
  accelerated = settings.adaptive_momentum if accelerated is None else accelerated
  if not accelerated:
    return _solve_once(geom, a, b, settings)
  # Lehmann's weight uses the error ratio of the two blocks before `start`.
  momentum = acceleration.Momentum(start=settings.momentum_start, value=1.0)
  return _solve_once(geom, a, b, settings, momentum=momentum)

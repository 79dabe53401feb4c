"""ACTION's anatomical contrastive distillation: KL between the teacher's and the student's
similarity distributions over a queue of earlier teacher embeddings (ISD, Tejankar et al. 2021).

For a student embedding `s` and the teacher's embedding `t` of another view of the same image,
both compared with a queue `{q_k}` of earlier teacher embeddings (all L2-normalised):

  p_t = softmax(t · q / T_t),   p_s = softmax(s · q / T_s),   loss = KL(p_t ‖ p_s)

averaged over the batch. A sharp teacher (`T_t` 0.01) and a softer student (`T_s` 0.1) make the
student match the teacher's *ranking* of the queue — soft negatives instead of MoCo's hard ones.
The queue then takes the teacher embeddings (`losses/queues.enqueue`). ACTION uses a queue of 36
image-level embeddings; its pretraining distils pooled encoder features first, then also pooled
output maps.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from mlsup_jax.losses.embeddings import l2_normalise


def similarity_kl(
  student: jax.Array,
  teacher: jax.Array,
  queue: jax.Array,
  valid: jax.Array | None = None,
  student_temperature: float = 0.1,
  teacher_temperature: float = 0.01,
) -> jax.Array:
  """`KL(p_teacher ‖ p_student)` over the queue, batch mean (module docstring).

  Args:
    student: `[N, D]` student embeddings (gradients flow).
    teacher: `[N, D]` teacher embeddings (no gradient).
    queue: `[K, D]` earlier teacher embeddings.
    valid: `[K]` bool, filled queue slots (default all); empty slots take no part.
    student_temperature, teacher_temperature: `T_s`, `T_t`.

  Returns:
    The scalar loss (0 when no slot is valid).

  Example:
    >>> import jax.numpy as jnp
    >>> from mlsup_jax.losses.similarity_distillation import similarity_kl
    >>> queue = jnp.eye(3)
    >>> x = jnp.array([[1.0, 0.2, 0.0]])
    >>> float(similarity_kl(x, x, queue, student_temperature=0.5, teacher_temperature=0.5))
    0.0
  """
  queue = jax.lax.stop_gradient(l2_normalise(queue.astype(jnp.float32)))
  valid = jnp.ones(queue.shape[:1], bool) if valid is None else valid
  s = l2_normalise(student.astype(jnp.float32)) @ queue.T / student_temperature
  t = jax.lax.stop_gradient(l2_normalise(teacher.astype(jnp.float32))) @ queue.T
  t = t / teacher_temperature
  s = jnp.where(valid[None], s, -jnp.inf)
  t = jnp.where(valid[None], t, -jnp.inf)
  log_ps = s - jax.nn.logsumexp(s, axis=-1, keepdims=True)
  log_pt = t - jax.nn.logsumexp(t, axis=-1, keepdims=True)
  kl = jnp.sum(jnp.where(valid[None], jnp.exp(log_pt) * (log_pt - log_ps), 0.0), axis=-1)
  return jnp.where(jnp.any(valid), jnp.mean(kl), 0.0)

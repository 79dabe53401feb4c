"""Train-step benchmark of an independent PyTorch ACTION++ step (the `semi_supervised` torch leg),
and of its contrastive part alone.

The step of `mlsup_jax/methods/semi_supervised.py` with `semi.kind=action_pp`, written again in
eager PyTorch the way the authors' code is written (per-class Python loops, `torch.multinomial`
draws, the class → centre Hungarian assignment on the host with SciPy):

1. no gradient: the EMA teacher's softmax on the weak unlabelled view → hard pseudo-labels,
   each image weighted by its share of pixels with confidence ≥ `semi.threshold`; one CutMix box
   per image pair (image i takes the box from image i + 1) mixes the strong views, labels and
   weights; `anchors_per_class` labelled pixels per present class drawn uniformly, with the
   teacher's embeddings of them;
2. the student on the labelled and on the mixed strong batch: `0.5 (CE + Dice)` (Dice without
   background) + `λ(t)` · the weighted pseudo-label CE + `tsc.weight` · the targeted supervised
   contrast (queue of teacher anchors, running centroids, uniform centres, logsumexp) + the
   regional contrast's weight · ReCo (hard queries below `strong_threshold`, the class prototype
   as positive, negatives drawn by class similarity) over the labelled and the confident
   unlabelled pixels, both temperatures on the cosine schedule;
3. AdamW, then the EMA teacher update (`torch._foreach_*`) and the queue write.

Network: the U-Net of `torch_kmax_models` plus ACTION++'s projection (every decoder scale resized
to full resolution, concatenated, `1×1 conv → ReLU → 1×1 conv`), as `nn/unet.py`. The uniform
class centres are the library's (`losses/class_centres.uniform_centres`): a fixed input, as the
authors' `.npy` file. `benchmark_torch_contrast` times the two contrastive terms alone (forward
and backward to the embeddings) against the JAX terms at the same shapes. PyTorch is optional
(`pip install -e .[bench]`) and imported lazily, on CPU with `OMP_WAIT_POLICY=PASSIVE`.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Sequence

import numpy as np

from benchmarks.torch_kmax import _import_torch
from benchmarks.torch_kmax_models import _torch_modules, count_parameters
from benchmarks.torch_report import timed_steps, torch_report
from mlsup_jax.losses.class_centres import uniform_centres


def build_action_pp_unet(config, in_channels: int = 1):
  """The PyTorch U-Net with ACTION++'s pixel projection: `x [B, C, *S]` → `(logits, embedding)`."""
  import torch
  from torch import nn
  from torch.nn import functional as F

  modules = _torch_modules()
  m, dims = config.model, int(config.data.spatial_dims)
  conv = nn.Conv2d if dims == 2 else nn.Conv3d
  mode = "bilinear" if dims == 2 else "trilinear"

  class ProjectedUNet(nn.Module):
    def __init__(self):
      super().__init__()
      self.backbone = modules.UNetBackbone(in_channels, tuple(m.features), dims, m.dropout_rate)
      self.head = conv(m.features[0], m.num_classes, 1)
      width = int(m.embedding_dim)
      self.project = nn.Sequential(
        conv(sum(m.features), width, 1), nn.ReLU(inplace=True), conv(width, width, 1)
      )

    def forward(self, x):
      scales = self.backbone(x)
      full = x.shape[2:]
      resized = [
        f if f.shape[2:] == full else F.interpolate(f, size=full, mode=mode, align_corners=False)
        for f in scales
      ]
      return self.head(scales[-1]), self.project(torch.cat(resized, dim=1))

  return ProjectedUNet()


def _cutmix_masks(torch, batch: int, spatial: Sequence[int], low: float, high: float, dev):
  """`[B, *S]` float masks, one box per image of area fraction in `[low, high]`."""
  side = torch.empty(batch, device=dev).uniform_(low, high) ** (1.0 / len(spatial))
  centre = torch.rand(batch, len(spatial), device=dev)
  inside = torch.ones(batch, *spatial, dtype=torch.bool, device=dev)
  for axis, n in enumerate(spatial):
    coord = (torch.arange(n, device=dev, dtype=torch.float32) + 0.5) / n
    shape = [1] * len(spatial)
    shape[axis] = n
    coord = coord.reshape(1, *shape)
    view = (-1,) + (1,) * len(spatial)
    lo = (centre[:, axis] - side / 2).reshape(view)
    hi = (centre[:, axis] + side / 2).reshape(view)
    inside &= (coord >= lo) & (coord < hi)
  return inside.float()


def _mix(torch, x, box):
  """`x [B, …]` with the inside of `box [B, *S]` taken from image i + 1."""
  if x.ndim > box.ndim:  # [B, K, *S]: one box for every channel
    box = box.unsqueeze(1)
  return box * torch.roll(x, -1, 0) + (1 - box) * x


def regional_contrast(torch, embedding, labels, probs, valid, term, temperature):
  """ReCo's loss, as the authors' loop: `embedding [N, D, *S]`, `labels [N, *S]`,
  `probs [N, K, *S]`, `valid [N, *S]` bool."""
  from torch.nn import functional as F

  dim, num_classes = embedding.shape[1], probs.shape[1]
  flat = F.normalize(embedding.movedim(1, -1).reshape(-1, dim), dim=-1)
  labels, valid = labels.reshape(-1), valid.reshape(-1)
  probs = probs.movedim(1, -1).reshape(-1, num_classes)
  members = [(labels == c) & valid for c in range(num_classes)]
  present = [c for c in range(num_classes) if bool(members[c].any())]  # host sync, as ReCo
  if len(present) < 2:
    return flat.sum() * 0.0
  with torch.no_grad():
    prototypes = torch.stack([F.normalize(flat[members[c]].mean(0), dim=0) for c in present])
    pools = torch.stack(
      [
        flat[members[c]][torch.randint(int(members[c].sum()), (term.num_negatives,))]
        for c in present
      ]
    )  # [P, N, D]
  losses = []
  for i, c in enumerate(present):
    hard = (members[c] & (probs[:, c] < term.strong_threshold)).nonzero().squeeze(1)
    if hard.numel() == 0:
      continue
    queries = flat[hard[torch.randint(hard.numel(), (term.num_queries,))]]  # [Q, D]
    with torch.no_grad():
      others = [j for j in range(len(present)) if j != i]
      weights = torch.softmax(prototypes[i] @ prototypes[others].T / temperature, dim=0)
      neg_class = torch.multinomial(
        weights, term.num_queries * term.num_negatives, replacement=True
      ).reshape(term.num_queries, term.num_negatives)
      slot = torch.randint(term.num_negatives, neg_class.shape)
      negatives = pools[torch.tensor(others)[neg_class], slot]  # [Q, N, D]
    positive = queries @ prototypes[i]
    negative = torch.einsum("qd,qnd->qn", queries, negatives)
    logits = torch.cat([positive[:, None], negative], dim=1) / temperature
    losses.append(F.cross_entropy(logits, torch.zeros(len(logits), dtype=torch.long)))
  return torch.stack(losses).mean() if losses else flat.sum() * 0.0


class TargetedContrast:
  """ACTION++'s TSC with its queue and running centroids (the JAX term's computation)."""

  def __init__(self, torch, num_classes, dim, queue_size, centres, target_weight, dev):
    from torch.nn import functional as F

    self.torch, self.F = torch, F
    self.queue = torch.zeros(queue_size, dim, device=dev)
    self.queue_labels = -torch.ones(queue_size, dtype=torch.long, device=dev)
    self.pointer = 0
    self.centroids = F.normalize(torch.randn(num_classes, dim, device=dev), dim=-1)
    self.centres = torch.as_tensor(np.asarray(centres), device=dev)
    self.target_weight = target_weight

  def __call__(self, student, teacher, labels, temperature):
    from scipy.optimize import linear_sum_assignment

    torch, F = self.torch, self.F
    student, teacher = F.normalize(student, dim=-1), F.normalize(teacher, dim=-1)
    with torch.no_grad():
      for c in labels.unique().tolist():
        mean = F.normalize(student[labels == c].mean(0), dim=0)
        self.centroids[c] = F.normalize(0.9 * self.centroids[c] + 0.1 * mean, dim=0)
      cost = -(self.centroids @ self.centres.T).cpu().numpy()
      _, assignment = linear_sum_assignment(cost)  # the authors' host-side Hungarian step
    filled = self.queue_labels >= 0
    logits = (
      torch.cat(
        [
          (student * teacher).sum(-1, keepdim=True),
          (student @ self.queue.T).masked_fill(~filled[None], -math.inf),
          student @ self.centres.T,
        ],
        dim=1,
      )
      / temperature
    )
    log_prob = torch.log_softmax(logits, dim=1).masked_fill(torch.isinf(logits), 0.0)
    same = (self.queue_labels[None] == labels[:, None]) & filled[None]
    matched = torch.as_tensor(assignment, device=labels.device)[labels]
    class_part = log_prob[:, 0] + (log_prob[:, 1 : 1 + len(self.queue)] * same).sum(1)
    target_part = log_prob[:, 1 + len(self.queue) :].gather(1, matched[:, None])[:, 0]
    count = 1 + same.sum(1) + 1
    loss = (-(class_part + self.target_weight * target_part) / count).mean()
    self._pending = (teacher.detach(), labels)
    return loss

  def enqueue(self):
    """Writes the last call's teacher anchors into the queue (after `backward`: the queue is
    part of that call's graph)."""
    teacher, labels = self._pending
    with self.torch.no_grad():
      slots = (self.pointer + self.torch.arange(len(teacher))) % len(self.queue)
      self.queue[slots], self.queue_labels[slots] = teacher, labels
      self.pointer = (self.pointer + len(teacher)) % len(self.queue)


def _anchors(torch, labels, per_class: int):
  """Flat indices of `per_class` labelled pixels per present class (uniform, with replacement)."""
  flat = labels.reshape(-1)
  index, classes = [], []
  for c in flat.unique().tolist():
    members = (flat == c).nonzero().squeeze(1)
    index.append(members[torch.randint(members.numel(), (per_class,))])
    classes.append(torch.full((per_class,), c, dtype=torch.long))
  return torch.cat(index), torch.cat(classes)


def _spatial(config) -> list[int]:
  """The phantom's image sides `[*S]` (the labelled stream's base source)."""
  size = int(config.data.train_source.base.image_size)
  return [size] * int(config.data.spatial_dims)


def _schedule(step: int, total: int, low: float, high: float, period: float) -> float:
  cycle = max(period * total, 1.0)
  return (high - low) * (1.0 + math.cos(2.0 * math.pi * step / cycle)) / 2.0 + low


def benchmark_torch_semi_supervised(
  config,
  batch: int,
  warmup: int = 3,
  iters: int = 10,
  device: str = "cpu",
  image_shape: Sequence[int] | None = None,
) -> dict:
  """Times the PyTorch ACTION++ train step (module docstring) at the JAX leg's shapes.

  Args:
    config: a `configs/semi_supervised.py` config (`semi.kind=action_pp`; other kinds are
      reported as skipped).
    batch: labelled examples per step (the unlabelled batch is the config's stream batch).
    warmup, iters: untimed and timed steps.
    device: "cpu" or "cuda".
    image_shape: `[*S, C]` (default: the config's phantom size, one channel).
  """
  if config.semi.kind != "action_pp":
    return {"leg": "torch", "skipped": f"no PyTorch implementation of {config.semi.kind!r}"}
  try:
    torch = _import_torch(device)
  except ImportError:
    return {"leg": "torch", "skipped": "torch not installed"}
  from torch.nn import functional as F

  torch.manual_seed(0)
  dev = torch.device(device)
  *spatial, channels = image_shape or (*_spatial(config), 1)
  semi, num_classes = config.semi, int(config.model.num_classes)
  unlabelled_batch = int(config.data.streams.unlabelled.batch_size)
  model = build_action_pp_unet(config, channels).to(dev).train()
  teacher = build_action_pp_unet(config, channels).to(dev).train()
  teacher.load_state_dict(model.state_dict())
  for p in teacher.parameters():
    p.requires_grad_(False)
  opt = config.optimizer
  optimizer = torch.optim.AdamW(
    model.parameters(),
    lr=opt.learning_rate,
    betas=(opt.b1, opt.b2),
    eps=opt.eps,
    weight_decay=opt.weight_decay,
  )
  term = config.loss.contrast.regional_contrast
  tsc_config = semi.tsc
  tsc = TargetedContrast(
    torch,
    num_classes,
    int(config.model.embedding_dim),
    int(tsc_config.queue_size),
    uniform_centres(num_classes, int(config.model.embedding_dim)),
    float(tsc_config.target_weight),
    dev,
  )
  images = torch.randn(batch, channels, *spatial, device=dev)
  labels = torch.randint(0, num_classes, (batch, *spatial), device=dev)
  weak = torch.randn(unlabelled_batch, channels, *spatial, device=dev)
  strong = weak + 0.1 * torch.randn_like(weak)
  total = int(config.train.num_steps)
  supervised_weight = float(config.loss.supervised.cross_entropy.weight)
  params = [p for p in model.parameters()]
  teacher_params = [p for p in teacher.parameters()]
  counter = {"step": 0}

  def step():
    t = counter["step"]
    counter["step"] += 1
    tau_tsc = _schedule(
      t, total, tsc_config.temperature_low, tsc_config.temperature_high, tsc_config.period
    )
    tau_reco = _schedule(
      t, total, tsc_config.contrast_temperature_low, tsc_config.temperature_high, tsc_config.period
    )
    ramp = math.exp(-5.0 * (1.0 - min(t, semi.rampup_steps) / semi.rampup_steps) ** 2)
    with torch.no_grad():
      probs = torch.softmax(teacher(weak)[0], dim=1)
      confidence, pseudo = probs.max(dim=1)
      share = (confidence >= semi.threshold).float().mean(dim=tuple(range(1, confidence.ndim)))
      weight_map = share.reshape(-1, *([1] * len(spatial))).expand_as(confidence)
      box = _cutmix_masks(torch, unlabelled_batch, spatial, semi.cutmix_min, semi.cutmix_max, dev)
      mixed = _mix(torch, strong, box)
      mixed_probs = _mix(torch, probs, box)
      mixed_pseudo = mixed_probs.argmax(dim=1)
      mixed_weight = _mix(torch, weight_map, box)
      anchor_index, anchor_labels = _anchors(torch, labels, int(tsc_config.anchors_per_class))
      teacher_emb = teacher(images)[1].movedim(1, -1).reshape(-1, config.model.embedding_dim)
      anchor_teacher = teacher_emb[anchor_index]
    optimizer.zero_grad(set_to_none=True)
    logits, embedding = model(images)
    ce = F.cross_entropy(logits, labels)
    p = logits.softmax(1)[:, 1:]
    target = F.one_hot(labels, num_classes).movedim(-1, 1).float()[:, 1:]
    axes = (0, *range(2, p.ndim))
    dice = 1 - ((2 * (p * target).sum(axes) + 1) / ((p + target).sum(axes) + 1)).mean()
    loss = supervised_weight * (ce + dice)
    student_anchor = embedding.movedim(1, -1).reshape(-1, config.model.embedding_dim)[anchor_index]
    loss = loss + tsc_config.weight * tsc(student_anchor, anchor_teacher, anchor_labels, tau_tsc)
    logits_u, embedding_u = model(mixed)
    unsup = (F.cross_entropy(logits_u, mixed_pseudo, reduction="none") * mixed_weight).mean()
    loss = loss + semi.unsup_weight * ramp * unsup
    reco = regional_contrast(
      torch,
      torch.cat([embedding, embedding_u]),
      torch.cat([labels, mixed_pseudo]),
      torch.cat([logits.softmax(1), logits_u.softmax(1)]).detach(),
      torch.cat(
        [
          torch.ones_like(labels, dtype=torch.bool),
          mixed_probs.max(dim=1).values > semi.weak_threshold,
        ]
      ),
      term,
      tau_reco,
    )
    loss = loss + term.weight * reco
    loss.backward()
    optimizer.step()
    tsc.enqueue()
    with torch.no_grad():
      gamma = min(1.0 - 1.0 / (t + 1), semi.ema_decay)
      torch._foreach_mul_(teacher_params, gamma)
      torch._foreach_add_(teacher_params, params, alpha=1.0 - gamma)

  times = timed_steps(torch, dev, step, warmup=warmup, iters=iters)
  return torch_report(
    torch,
    dev,
    times=times,
    batch=batch,
    warmup=warmup,
    iters=iters,
    dtype="float32",
    layout="NCHW" if len(spatial) == 2 else "NCDHW",
    parameters=count_parameters(model),
  )


def benchmark_torch_contrast(config, device: str = "cpu", warmup: int = 3, iters: int = 10) -> dict:
  """Median ms of ACTION++'s two contrastive terms alone (sampling + loss, forward + backward to
  the embeddings) in PyTorch and in JAX (jitted), at the config's batch and image shapes."""
  import jax
  import jax.numpy as jnp

  from mlsup_jax.losses import pixel_contrast, targeted_contrast

  torch = _import_torch(device)
  dev = torch.device(device)
  spatial = _spatial(config)
  num_classes, dim = int(config.model.num_classes), int(config.model.embedding_dim)
  n = int(config.data.batch_size) + int(config.data.streams.unlabelled.batch_size)
  term, tsc_config = config.loss.contrast.regional_contrast, config.semi.tsc
  anchors = num_classes * int(tsc_config.anchors_per_class)
  centres = uniform_centres(num_classes, dim)
  rng = np.random.default_rng(0)
  emb = rng.normal(size=(n, *spatial, dim)).astype(np.float32)
  labels = rng.integers(0, num_classes, size=(n, *spatial))
  probs = rng.dirichlet(np.ones(num_classes), size=(n, *spatial)).astype(np.float32)
  anchor_labels = np.repeat(np.arange(num_classes), int(tsc_config.anchors_per_class))
  student = rng.normal(size=(anchors, dim)).astype(np.float32)

  # PyTorch.
  tsc = TargetedContrast(
    torch,
    num_classes,
    dim,
    int(tsc_config.queue_size),
    centres,
    float(tsc_config.target_weight),
    dev,
  )
  t_emb = torch.tensor(emb, device=dev).movedim(-1, 1).requires_grad_(True)
  t_student = torch.tensor(student, device=dev, requires_grad=True)
  t_args = (
    torch.tensor(labels, device=dev),
    torch.tensor(probs, device=dev).movedim(-1, 1),
    torch.ones(labels.shape, dtype=torch.bool, device=dev),
  )
  t_anchor_labels = torch.tensor(anchor_labels, device=dev)

  def torch_step():
    loss = regional_contrast(torch, t_emb, *t_args, term, 0.5)
    loss = loss + tsc(t_student, t_student.detach(), t_anchor_labels, 0.1)
    loss.backward()
    tsc.enqueue()

  torch_ms = 1e3 * statistics.median(
    timed_steps(torch, dev, torch_step, warmup=warmup, iters=iters)
  )

  # JAX (the library's terms).
  memory = targeted_contrast.init_memory(
    jax.random.key(0), int(tsc_config.queue_size), num_classes, dim
  )

  def jax_loss(e, s, key, memory):
    reco, _ = pixel_contrast.regional_contrast(
      e,
      jnp.asarray(labels),
      jnp.asarray(probs),
      jnp.ones(labels.shape, bool),
      key,
      num_queries=int(term.num_queries),
      num_negatives=int(term.num_negatives),
      temperature=0.5,
      strong_threshold=float(term.strong_threshold),
    )
    t, memory, _ = targeted_contrast.targeted_contrast(
      s,
      s,
      jnp.asarray(anchor_labels),
      jnp.full((anchors,), 1.0 / int(tsc_config.anchors_per_class)),
      memory,
      jnp.asarray(centres),
      0.1,
    )
    return reco + t, memory

  grad = jax.jit(jax.value_and_grad(jax_loss, argnums=(0, 1), has_aux=True))
  e, s = jnp.asarray(emb), jnp.asarray(student)
  times = []
  for i in range(warmup + iters):
    start = time.perf_counter()
    (_, memory), grads = grad(e, s, jax.random.key(i), memory)
    jax.block_until_ready(grads)
    if i >= warmup:
      times.append(time.perf_counter() - start)
  return {
    "shape": {
      "pixels": int(n * np.prod(spatial)),
      "dim": dim,
      "anchors": anchors,
      "queue": int(tsc_config.queue_size),
    },
    "torch_ms": torch_ms,
    "jax_ms": 1e3 * statistics.median(times),
  }

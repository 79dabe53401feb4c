"""Train-step benchmark of an independent PyTorch LTUDA step (the `ltuda` torch leg).

The step of `mlsup_jax/methods/ltuda.py`, written again in eager PyTorch the way the authors'
`train_CDA.py` / `train_CDA_PDA.py` and `unet_proto.py` are written (per-sample and per-class
Python loops, `torch.where` merges, the SwAV-style Sinkhorn by hand):

1. no gradient: the EMA teacher's sigmoid on the weak view of the concatenated sub-dataset
   batches → organ where ≥ 0.5; the pseudo-label keeps each sample's annotated organ from its
   label and takes the teacher only for the organs the sample does not annotate; two CutMix
   boxes per image (area 0.02–0.4, aspect 0.3–3.3) paste the cross-set partner (image i + b);
2. the student on the weak view and the two strong views (one batch): per-sample masked pBCE on
   the weak view; on each strong view pBCE against the mixed pseudo-label, and (stage
   `cda_pda`) the two prototype heads (LayerNorm → normalise → cosines to 5 prototypes per
   class → max → LayerNorm over classes) with cross-entropy against the pseudo-label and PPC
   0.01 / PPD 0.001 after the prototypes' momentum update from Sinkhorn assignments of the
   correctly classified pixels (3 iterations, ε 0.05); stage `cda` adds the pBCE against the
   mixed partial labels instead;
3. AdamW, then the EMA teacher update (`torch._foreach_*`).

Network: the U-Net + pixel projection of `torch_semi_supervised.build_action_pp_unet` (as
`nn/unet.py` with `embedding_dim`). PyTorch is optional (`pip install -e .[bench]`) and imported
lazily.
"""

from __future__ import annotations

from collections.abc import Sequence

from benchmarks.torch_kmax import _import_torch
from benchmarks.torch_kmax_models import count_parameters
from benchmarks.torch_report import timed_steps, torch_report
from benchmarks.torch_semi_supervised import build_action_pp_unet


def _cutmix(torch, batch: int, spatial: Sequence[int], dev):
  """`[B, *S]` bool boxes as the authors' `obtain_cutmix_box` (2-D: aspect between the axes)."""
  masks = torch.zeros(batch, *spatial, dtype=torch.bool, device=dev)
  for i in range(batch):
    area = float(torch.empty(1).uniform_(0.02, 0.4))
    ratio = float(torch.empty(1).uniform_(0.3, 1 / 0.3))
    sides = [max(1, int(n * area ** (1 / len(spatial)))) for n in spatial]
    sides[-2] = min(spatial[-2], max(1, int(spatial[-2] * (area * ratio) ** 0.5)))
    sides[-1] = min(spatial[-1], max(1, int(spatial[-1] * (area / ratio) ** 0.5)))
    starts = [int(torch.randint(0, n - s + 1, (1,))) for n, s in zip(spatial, sides, strict=True)]
    window = tuple(slice(a, a + s) for a, s in zip(starts, sides, strict=True))
    masks[(i, *window)] = True
  return masks


def _paste(torch, x, mask, shift: int):
  """`x [N, *S]` or `[N, C, *S]` with image `i + shift`'s values where `mask [N, *S]` holds."""
  m = mask.reshape(mask.shape[0], *([1] * (x.ndim - mask.ndim)), *mask.shape[1:])
  return torch.where(m, torch.roll(x, -shift, 0), x)


def _sinkhorn(torch, out, iterations: int = 3, epsilon: float = 0.05):
  """The authors' `distributed_sinkhorn` on one process: `[N, M]` scores → assignments `[N]`."""
  q = torch.exp(out / epsilon).t()
  q /= q.sum()
  k, n = q.shape
  for _ in range(iterations):
    q /= q.sum(dim=1, keepdim=True)
    q /= k
    q /= q.sum(dim=0, keepdim=True)
    q /= n
  return (q * n).t().argmax(dim=1)


def benchmark_torch_ltuda(
  config,
  batch: int,
  warmup: int = 3,
  iters: int = 10,
  device: str = "cpu",
  image_shape: Sequence[int] | None = None,
  stage: str = "cda_pda",
) -> dict:
  """Times the PyTorch LTUDA step (module docstring) at the JAX leg's shapes.

  Args:
    config: a `configs/ltuda.py` config with `ltuda.kind=ltuda`.
    batch: one sub-dataset stream's batch (the step reads one per stream).
    warmup, iters: untimed and timed steps.
    device: "cpu" or "cuda".
    image_shape: `[*S, C]` of one example.
    stage: "cda" or "cda_pda".
  """
  if config.ltuda.kind != "ltuda":
    return {"leg": "torch", "skipped": "the baselines are plain segmentation steps"}
  try:
    torch = _import_torch(device)
  except ImportError:
    return {"leg": "torch", "skipped": "torch not installed"}
  from torch.nn import functional as F

  torch.manual_seed(0)
  dev = torch.device(device)
  *spatial, channels = image_shape
  organs = int(config.model.num_classes)
  streams = 1 + len(config.data.streams)
  total = streams * batch
  classes, per_class = organs + 1, int(config.ltuda.prototypes.per_class)
  dim = int(config.model.embedding_dim)
  model = build_action_pp_unet(config, channels).to(dev).train()
  teacher = build_action_pp_unet(config, channels).to(dev).train()
  teacher.load_state_dict(model.state_dict())
  for p in teacher.parameters():
    p.requires_grad_(False)
  feature_norm = torch.nn.LayerNorm(dim).to(dev)
  class_norm = torch.nn.LayerNorm(classes).to(dev)
  prototypes = {
    name: F.normalize(0.02 * torch.randn(classes, per_class, dim, device=dev), dim=-1)
    for name in ("labelled", "unlabelled")
  }
  params = [*model.parameters(), *feature_norm.parameters(), *class_norm.parameters()]
  opt = config.optimizer
  optimizer = torch.optim.AdamW(
    params, lr=opt.learning_rate, betas=(opt.b1, opt.b2), eps=opt.eps, weight_decay=opt.weight_decay
  )
  images = torch.randn(total, channels, *spatial, device=dev)
  task = torch.arange(total, device=dev) // batch % organs  # each stream annotates one organ
  labels = torch.randint(0, organs + 1, (total, *spatial), device=dev)
  labels = torch.where(labels == (task + 1).reshape(-1, *([1] * len(spatial))), labels, 0)
  momentum = float(config.ltuda.prototypes.momentum)
  pda = stage == "cda_pda"

  def pbce(logits, target, known):  # logits [N, O, *S], target [N, *S], known [N, O, *S]
    onehot = F.one_hot(target.long(), organs + 1)[..., 1:].movedim(-1, 1).float()
    loss = F.binary_cross_entropy_with_logits(logits, onehot, reduction="none") * known
    dims = tuple(range(2, logits.ndim))
    count = known.sum(dim=dims)
    per_channel = loss.sum(dim=dims) / count.clamp(min=1)
    has = count > 0
    return (per_channel * has).sum() / has.sum().clamp(min=1)

  def prototype_head(embedding, name, target):
    feats = F.normalize(feature_norm(embedding.movedim(1, -1)), dim=-1)
    flat = feats.reshape(-1, dim)
    cosines = torch.einsum("nd,kmd->nkm", flat, prototypes[name])
    logits = class_norm(cosines.amax(dim=-1))
    target = target.reshape(-1)
    correct = logits.argmax(dim=-1) == target
    pixel_target = torch.full_like(target, -1)
    with torch.no_grad():
      protos = prototypes[name].clone()
      for k in range(classes):
        member = target == k
        if not member.any():
          continue
        assigned = _sinkhorn(torch, cosines[member, k].detach())
        pixel_target[member] = assigned + k * per_class
        chosen = correct[member]
        onehot = F.one_hot(assigned, per_class).float() * chosen[:, None]
        sums = onehot.t() @ flat[member].detach()
        moved = onehot.sum(0) > 0
        if moved.any():
          new = momentum * protos[k, moved] + (1 - momentum) * F.normalize(sums[moved], dim=-1)
          protos[k, moved] = new
      prototypes[name] = F.normalize(protos, dim=-1)
    valid = pixel_target >= 0
    pixel_logits = cosines.reshape(flat.shape[0], -1)
    ppc = F.cross_entropy(pixel_logits[valid], pixel_target[valid])
    ppd = (1 - pixel_logits[valid].gather(1, pixel_target[valid][:, None])).pow(2).mean()
    shape = (embedding.shape[0], *embedding.shape[2:], classes)
    return logits.reshape(shape).movedim(-1, 1), 0.01 * ppc + 0.001 * ppd

  counter = {"step": 0}

  def step():
    t = counter["step"]
    counter["step"] += 1
    with torch.no_grad():
      probs = torch.sigmoid(teacher(images)[0])
      confidence, organ = probs.max(dim=1)
      predicted = torch.where(confidence >= 0.5, organ + 1, 0)
      pseudo = torch.zeros_like(labels)
      for b in range(total):  # the code's per-sample, per-channel merge
        for c in range(organs):
          if c != int(task[b]):
            pseudo[b][predicted[b] == c + 1] = c + 1
      pseudo = torch.where(labels > 0, labels, pseudo)
      masks = [_cutmix(torch, total, spatial, dev) for _ in range(2)]
      strong = [_paste(torch, images, m, batch) for m in masks]
      targets = [_paste(torch, pseudo, m, batch) for m in masks]
      known = torch.zeros(total, organs, *spatial, device=dev)
      known[torch.arange(total), task] = 1
      if pda:
        labelled = torch.where(labels > 0, labels, torch.where(pseudo == 0, 0, -1))
        unlabelled = torch.where(labels > 0, -1, pseudo)
        masks_l = [_paste(torch, labelled, m, batch) for m in masks]
        masks_u = [_paste(torch, unlabelled, m, batch) for m in masks]
    optimizer.zero_grad(set_to_none=True)
    logits, embedding = model(torch.cat([images, *strong]))
    loss = pbce(logits[:total], labels, known)
    ones = torch.ones_like(known)
    for v in range(2):
      view = slice((v + 1) * total, (v + 2) * total)
      loss = loss + pbce(logits[view], targets[v], ones)
      if pda:
        for name, mask in (("labelled", masks_l[v]), ("unlabelled", masks_u[v])):
          head_logits, alignment = prototype_head(embedding[view], name, mask)
          loss = loss + F.cross_entropy(head_logits, targets[v].long()) + alignment
      else:
        mixed_known = _paste(torch, known, masks[v], batch)
        loss = loss + pbce(logits[view], _paste(torch, labels, masks[v], batch), mixed_known)
    loss.backward()
    optimizer.step()
    with torch.no_grad():
      gamma = min(1.0 - 1.0 / (t + 1), float(config.ltuda.ema_decay))
      student, ema = list(model.parameters()), list(teacher.parameters())
      torch._foreach_mul_(ema, gamma)
      torch._foreach_add_(ema, student, alpha=1.0 - gamma)

  times = timed_steps(torch, dev, step, warmup=warmup, iters=iters)
  return torch_report(
    torch,
    dev,
    times=times,
    batch=batch,  # per stream, as the JAX leg's `batch_size` (its main stream's batch)
    warmup=warmup,
    iters=iters,
    dtype="float32",
    layout="NCHW" if len(spatial) == 2 else "NCDHW",
    parameters=count_parameters(model),
  )

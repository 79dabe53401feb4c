"""The independent PyTorch networks of the TEND and CVAD torch legs (channels-first, NCHW).

Written from the layer descriptions of `mlsup_jax/nn/autoencoder.py` and `mlsup_jax/nn/cvae.py`
with the same architecture and parameter count. Every layer is a 4×4 conv (`Conv2d(4, 2, 1)`,
halves H and W) or transposed conv (`ConvTranspose2d(4, 2, 1)`, doubles them); a block is
`(T)conv → BatchNorm(eps 1e-5, momentum 0.1) → activation`, the conv without a bias when
BatchNorm follows it (the JAX layout, not PyTorch's habit).

* TEND auto-encoder: `depth` conv blocks (widths `base·2^i`, ReLU) → `depth − 1` tconv blocks
  (the widths mirrored) → a raw tconv with bias to C channels → sigmoid.
* TEND classifier: the auto-encoder's encoder → conv (→ 2 × the top width, with bias) + ReLU →
  flatten → Linear(→ feature_dim) = c → Linear(→ 1) = logit.
* CVAD cascade VAE (LeakyReLU 0.2): E11 (`e11_depth` conv blocks) → h_e; E12 → e; μ1, log σ1²
  (Linear, K); D1 input Linear(K → e's size) → D11 (tconv blocks back to h_e's width) → h_d →
  D12 (tconv blocks, raw tconv to C) = logits of I′1. Branch: concat(h_d, h_e) → E2 ("conv": one
  conv block keeping the width; "fc": none) → μ2, log σ2² (4K) → Linear(4K → h_e's size) → D2
  (D12's layout, own weights) = logits of I′2. I′ = ½(σ(I′1) + σ(I′2)). Training samples
  z = μ + ε·exp(½ log σ²), evaluation uses z = μ; the perturbed fake I″ decodes
  μ + s·std(μ)·δ (population std over each example's latent dims, no gradient).
* CVAD discriminator: `e11_depth + e12_depth` conv blocks (LeakyReLU 0.2) → flatten →
  Linear(→ hidden, no bias) → BatchNorm1d(momentum 0.9, the authors') → ReLU → Linear(→ 1).

Flattening is PyTorch's `[C, h, w]` order (the JAX models flatten `[h, w, C]`: a weight port
permutes the rows of those Linear layers). The `torch.nn.Module` classes are built on first use
(`_torch_modules`), so importing this module needs no PyTorch; the `build_*` functions make them
from a TEND / CVAD config and the image shape `[H, W, C]`.
"""

from __future__ import annotations

import functools
import types
from collections.abc import Sequence

# CVAD's LeakyReLU slope; the JAX models' `LEAKY_SLOPE`.
LEAKY_SLOPE = 0.2


def widths(base: int, depth: int, first_level: int = 0) -> tuple[int, ...]:
  """`base·2^i` for `i = first_level … first_level + depth − 1`."""
  return tuple(base * 2 ** (first_level + i) for i in range(depth))


@functools.cache
def _torch_modules() -> types.SimpleNamespace:
  """The `torch.nn.Module` classes (built on first use so that importing needs no PyTorch)."""
  import torch
  from torch import nn

  def activation(name: str) -> nn.Module:
    if name == "relu":
      return nn.ReLU()
    if name == "leaky_relu":
      return nn.LeakyReLU(LEAKY_SLOPE)
    raise ValueError(f"Unknown activation {name!r}; expected 'relu' or 'leaky_relu'.")

  def conv(cin: int, cout: int, transpose: bool, bias: bool) -> nn.Module:
    cls = nn.ConvTranspose2d if transpose else nn.Conv2d
    return cls(cin, cout, 4, 2, 1, bias=bias)

  def conv_block(cin, cout, transpose=False, norm=True, act="relu") -> nn.Sequential:
    """`(T)conv 4 s2 p1 [→ BatchNorm] → activation`; a bias only without BatchNorm."""
    layers = [conv(cin, cout, transpose, bias=not norm)]
    if norm:
      layers.append(nn.BatchNorm2d(cout, eps=1e-5, momentum=0.1))
    return nn.Sequential(*layers, activation(act))

  def conv_stack(cin, outs, transpose=False, raw_output=False, norm=True, act="relu"):
    """Blocks to the widths `outs`; with `raw_output` the last layer is a bare conv (logits)."""
    layers = []
    for width in outs[:-1] if raw_output else outs:
      layers.append(conv_block(cin, width, transpose, norm, act))
      cin = width
    if raw_output:
      layers.append(conv(cin, outs[-1], transpose, bias=True))
    return nn.Sequential(*layers)

  def check_spatial(x, factor: int, name: str) -> None:
    if x.ndim != 4 or x.shape[2] % factor or x.shape[3] % factor:
      raise ValueError(f"{name} expects [B, C, H, W] with H, W multiples of {factor}: {x.shape}.")

  class AutoEncoder(nn.Module):
    """TEND's auto-encoder: `[B, C, H, W]` in [0, 1] → reconstruction, logits, latent."""

    def __init__(self, in_channels, base_width=16, depth=5, use_norm=True, act="relu"):
      super().__init__()
      self.depth = depth
      self.encoder = conv_stack(in_channels, widths(base_width, depth), norm=use_norm, act=act)
      outs = widths(base_width, depth - 1)[::-1] + (in_channels,)
      top = base_width * 2 ** (depth - 1)
      self.decoder = conv_stack(top, outs, True, True, use_norm, act)

    def forward(self, x):
      check_spatial(x, 2**self.depth, "AutoEncoder")
      latent = self.encoder(x)
      logits = self.decoder(latent)
      return {"reconstruction": logits.sigmoid(), "reconstruction_logits": logits, "latent": latent}

  class TendClassifier(nn.Module):
    """TEND's classifier: `[B, C, H, W]` → `features [B, K]` (c) and `logit [B]`."""

    def __init__(
      self,
      in_channels,
      image_size: Sequence[int],
      base_width=16,
      depth=5,
      use_norm=True,
      head_width=None,
      head_norm=False,
      feature_dim=512,
      freeze_encoder=False,
    ):
      super().__init__()
      self.depth, self.freeze_encoder = depth, freeze_encoder
      self.encoder = conv_stack(in_channels, widths(base_width, depth), norm=use_norm)
      if freeze_encoder:  # Not trained (the JAX optimizer masks it out, weight decay included).
        self.encoder.requires_grad_(False)
      top = base_width * 2 ** (depth - 1)
      head_width = head_width or 2 * top
      self.head = conv_block(top, head_width, norm=head_norm)
      h, w = (n // 2 ** (depth + 1) for n in image_size)
      self.features = nn.Linear(head_width * h * w, feature_dim)
      self.logit = nn.Linear(feature_dim, 1)

    def forward(self, x):
      check_spatial(x, 2 ** (self.depth + 1), "TendClassifier")
      if self.freeze_encoder:  # The thesis's frozen encoder: running statistics, no gradient.
        training = self.encoder.training
        with torch.no_grad():
          e = self.encoder.eval()(x)
        self.encoder.train(training)
      else:
        e = self.encoder(x)
      c = self.features(self.head(e).flatten(1))
      return {"features": c, "logit": self.logit(c)[:, 0]}

  class LatentToMap(nn.Module):
    """`Linear(K → c·h·w)` → `[B, c, h, w]` (no activation)."""

    def __init__(self, latent_dim, shape):
      super().__init__()
      self.shape = tuple(shape)
      self.dense = nn.Linear(latent_dim, self.shape[0] * self.shape[1] * self.shape[2])

    def forward(self, z):
      return self.dense(z).reshape(z.shape[0], *self.shape)

  def perturbed_latent(mu, scale: float, delta):
    """`μ + scale·std(μ)·δ`, std over each example's latent dims (population, no gradient)."""
    return mu + scale * mu.detach().std(dim=-1, keepdim=True, correction=0) * delta

  class CascadeVAE(nn.Module):
    """CVAD's generator (module docstring): `[B, C, H, W]` in [0, 1] → I′, I′1, I′2, μ, log σ²."""

    def __init__(
      self,
      in_channels,
      image_size: Sequence[int],
      base_width=16,
      e11_depth=3,
      e12_depth=2,
      latent_dim=512,
      branch_encoder="conv",
      perturb_scale=0.1,
      use_norm=True,
      act="leaky_relu",
    ):
      super().__init__()
      if branch_encoder not in ("conv", "fc"):
        raise ValueError(f"Unknown branch_encoder {branch_encoder!r}; expected 'conv' or 'fc'.")
      self.factor, self.perturb_scale = 2 ** (e11_depth + e12_depth), perturb_scale
      height, width = image_size
      kw = {"norm": use_norm, "act": act}
      c_he = base_width * 2 ** (e11_depth - 1)
      c_e = base_width * 2 ** (e11_depth + e12_depth - 1)
      he_shape = (c_he, height >> e11_depth, width >> e11_depth)
      e_shape = (c_e, height // self.factor, width // self.factor)
      # Primary VAE.
      self.e11 = conv_stack(in_channels, widths(base_width, e11_depth), **kw)
      self.e12 = conv_stack(c_he, widths(base_width, e12_depth, e11_depth), **kw)
      e_size = e_shape[0] * e_shape[1] * e_shape[2]
      self.mu1, self.logvar1 = nn.Linear(e_size, latent_dim), nn.Linear(e_size, latent_dim)
      self.d1_input = LatentToMap(latent_dim, e_shape)
      self.d11 = conv_stack(c_e, widths(base_width, e12_depth, e11_depth - 1)[::-1], True, **kw)
      d12_outs = widths(base_width, e11_depth - 1)[::-1] + (in_channels,)
      self.d12 = conv_stack(c_he, d12_outs, True, True, **kw)
      # Branch VAE on concat(h_d, h_e).
      c_f, (h, w) = 2 * c_he, he_shape[1:]
      if branch_encoder == "conv":
        self.e2 = conv_block(c_f, c_f, **kw)
        h, w = h // 2, w // 2
      else:
        self.e2 = nn.Identity()
      branch_dim = 4 * latent_dim
      self.mu2, self.logvar2 = (
        nn.Linear(c_f * h * w, branch_dim),
        nn.Linear(c_f * h * w, branch_dim),
      )
      self.d2_input = LatentToMap(branch_dim, he_shape)
      self.d2 = conv_stack(c_he, d12_outs, True, True, **kw)

    def forward(self, x, perturb: bool = False, noise: dict | None = None):
      """The generator's outputs (train mode: sampled latents; eval mode: z = μ).

      Args:
        x: `[B, C, H, W]` images in [0, 1].
        perturb: also decode the perturbed latents into `perturbed` (I″).
        noise: optional standard normals replacing the drawn ones (for reproducible tests):
          `eps1 [B, K]`, `eps2 [B, 4K]` (sampling) and `delta1`, `delta2` (perturbation).

      Returns:
        `reconstruction`, `reconstruction_primary`, `reconstruction_branch` `[B, C, H, W]`;
        `mu1, logvar1 [B, K]`, `mu2, logvar2 [B, 4K]`; `perturbed` when `perturb`.
      """
      check_spatial(x, self.factor, "CascadeVAE")
      noise = noise or {}

      def draw(name, like):
        return noise[name] if name in noise else torch.randn_like(like)

      def sample(mu, logvar, name):
        return mu + draw(name, mu) * (0.5 * logvar).exp() if self.training else mu

      h_e = self.e11(x)
      e = self.e12(h_e).flatten(1)
      mu1, logvar1 = self.mu1(e), self.logvar1(e)
      h_d = self.d11(self.d1_input(sample(mu1, logvar1, "eps1")))
      primary = self.d12(h_d).sigmoid()
      f = self.e2(torch.cat([h_d, h_e], dim=1)).flatten(1)
      mu2, logvar2 = self.mu2(f), self.logvar2(f)
      branch = self.d2(self.d2_input(sample(mu2, logvar2, "eps2"))).sigmoid()
      outputs = {
        "reconstruction": 0.5 * (primary + branch),
        "reconstruction_primary": primary,
        "reconstruction_branch": branch,
        "mu1": mu1,
        "logvar1": logvar1,
        "mu2": mu2,
        "logvar2": logvar2,
      }
      if perturb:
        p1 = perturbed_latent(mu1, self.perturb_scale, draw("delta1", mu1))
        p2 = perturbed_latent(mu2, self.perturb_scale, draw("delta2", mu2))
        p1 = self.d12(self.d11(self.d1_input(p1))).sigmoid()
        outputs["perturbed"] = 0.5 * (p1 + self.d2(self.d2_input(p2)).sigmoid())
      return outputs

  class Discriminator(nn.Module):
    """CVAD's discriminator: `[B, C, H, W]` → logit `[B]` (sigmoid = probability of OOD)."""

    def __init__(
      self, in_channels, image_size, base_width=16, depth=5, use_norm=True, hidden_dim=512
    ):
      super().__init__()
      self.depth = depth
      self.encoder = conv_stack(
        in_channels, widths(base_width, depth), norm=use_norm, act="leaky_relu"
      )
      h, w = (n // 2**depth for n in image_size)
      self.hidden = nn.Linear(base_width * 2 ** (depth - 1) * h * w, hidden_dim, bias=False)
      # PyTorch momentum 0.9 (the authors'), i.e. Flax's 0.1.
      self.hidden_norm = nn.BatchNorm1d(hidden_dim, eps=1e-5, momentum=0.9)
      self.logit = nn.Linear(hidden_dim, 1)

    def forward(self, x):
      check_spatial(x, 2**self.depth, "Discriminator")
      h = self.hidden(self.encoder(x).flatten(1))
      return self.logit(torch.relu(self.hidden_norm(h)))[:, 0]

  return types.SimpleNamespace(
    AutoEncoder=AutoEncoder,
    TendClassifier=TendClassifier,
    CascadeVAE=CascadeVAE,
    Discriminator=Discriminator,
  )


def _shape(image_shape: Sequence[int]) -> tuple[tuple[int, int], int]:
  """`[H, W, C]` → `((H, W), C)`."""
  height, width, channels = (int(n) for n in image_shape)
  return (height, width), channels


def build_tend_autoencoder(config, image_shape: Sequence[int]):
  """TEND's auto-encoder for a `configs/tend.py` config and images `[H, W, C]`."""
  _, channels = _shape(image_shape)
  m = config.model
  return _torch_modules().AutoEncoder(channels, m.base_width, m.depth, m.use_norm)


def build_tend_classifier(config, image_shape: Sequence[int]):
  """TEND's classifier for a `configs/tend.py` config and images `[H, W, C]`."""
  size, channels = _shape(image_shape)
  m = config.model
  return _torch_modules().TendClassifier(
    channels,
    size,
    base_width=m.base_width,
    depth=m.depth,
    use_norm=m.use_norm,
    head_norm=m.head_norm,
    feature_dim=m.feature_dim,
    freeze_encoder=m.freeze_encoder,
  )


def build_cascade_vae(config, image_shape: Sequence[int]):
  """CVAD's generator for a `configs/cvad.py` config and images `[H, W, C]`."""
  size, channels = _shape(image_shape)
  m = config.model
  return _torch_modules().CascadeVAE(
    channels,
    size,
    base_width=m.base_width,
    e11_depth=m.e11_depth,
    e12_depth=m.e12_depth,
    latent_dim=m.latent_dim,
    branch_encoder=m.branch_encoder,
    perturb_scale=m.perturb_scale,
  )


def build_discriminator(config, image_shape: Sequence[int]):
  """CVAD's discriminator for a `configs/cvad.py` config and images `[H, W, C]`."""
  size, channels = _shape(image_shape)
  m = config.model
  return _torch_modules().Discriminator(
    channels,
    size,
    base_width=m.base_width,
    depth=m.e11_depth + m.e12_depth,
    hidden_dim=m.discriminator_hidden_dim,
  )


def count_parameters(model) -> int:
  """Every parameter, frozen ones included (as the JAX models' `params`)."""
  return sum(p.numel() for p in model.parameters())

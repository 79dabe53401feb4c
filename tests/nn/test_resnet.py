"""The Flax ResNet-18 and its torchvision weight loader."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mlsup_jax.nn.resnet import ResNet, load_torchvision_weights


def _torchvision_names(variables) -> dict:
  """Our variables under torchvision's names and layouts (the inverse of the loader)."""
  params, stats = variables["params"], variables["batch_stats"]
  out = {}

  def conv(key, kernel):
    out[key] = np.asarray(kernel).transpose(3, 2, 0, 1)

  def norm(prefix, p, s):
    out[prefix + ".weight"], out[prefix + ".bias"] = np.asarray(p["scale"]), np.asarray(p["bias"])
    out[prefix + ".running_mean"], out[prefix + ".running_var"] = (
      np.asarray(s["mean"]),
      np.asarray(s["var"]),
    )

  conv("conv1.weight", params["conv1"]["kernel"])
  norm("bn1", params["bn1"], stats["bn1"])
  for name, block in params.items():
    if not name.startswith("layer"):
      continue
    stage, index = name[5:].split("_")
    prefix = f"layer{stage}.{index}"
    for i in (1, 2):
      conv(f"{prefix}.conv{i}.weight", block[f"conv{i}"]["kernel"])
      norm(f"{prefix}.bn{i}", block[f"bn{i}"], stats[name][f"bn{i}"])
    if "downsample_conv" in block:
      conv(f"{prefix}.downsample.0.weight", block["downsample_conv"]["kernel"])
      norm(f"{prefix}.downsample.1", block["downsample_bn"], stats[name]["downsample_bn"])
  out["fc.weight"] = np.zeros((1000, 512 * 1), np.float32)  # ignored by the loader
  return out


def _randomised(variables, seed=0):
  leaves, tree = jax.tree.flatten(variables)
  rng = np.random.default_rng(seed)
  new = [rng.uniform(0.5, 1.5, np.shape(x)).astype(np.float32) for x in leaves]
  return jax.tree.unflatten(tree, new)


def test_shapes_strides_and_bfloat16():
  model = ResNet(width_multiplier=0.125)
  x = jnp.zeros((2, 64, 64, 3))
  variables = model.init(jax.random.key(0), x, train=False)
  assert model.apply(variables, x, train=False)["features"].shape == (2, 64)
  blocks = [k for k in variables["params"] if k.startswith("layer")]
  assert len(blocks) == 8  # ResNet-18: 2 + 2 + 2 + 2 basic blocks
  half = ResNet(width_multiplier=0.125, dtype=jnp.bfloat16)
  features = half.apply(variables, x, train=False)["features"]
  assert features.dtype == jnp.float32 and features.shape == (2, 64)


def test_loader_round_trip_and_bad_state_dicts():
  model = ResNet(width_multiplier=0.125)
  variables = model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)), train=False)
  target = _randomised(variables)
  loaded = load_torchvision_weights(variables, _torchvision_names(target))
  jax.tree.map(np.testing.assert_array_equal, loaded, jax.tree.map(np.asarray, target))
  state = _torchvision_names(target)
  del state["layer2.0.downsample.0.weight"]
  with pytest.raises(ValueError, match="downsample"):
    load_torchvision_weights(variables, state)
  state = _torchvision_names(target)
  state["layer1.0.conv1.weight"] = state["layer1.0.conv1.weight"][:, :4]
  with pytest.raises(ValueError, match="expected"):
    load_torchvision_weights(variables, state)
  state = _torchvision_names(target)
  state["layer5.0.conv1.weight"] = np.zeros(1)
  with pytest.raises(ValueError, match="lacks"):
    load_torchvision_weights(variables, state)


def test_three_channel_stem_is_summed_for_grey_input(tmp_path):
  rgb = ResNet(width_multiplier=0.125)
  grey = ResNet(width_multiplier=0.125)
  rgb_vars = _randomised(rgb.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)), train=False))
  grey_vars = grey.init(jax.random.key(0), jnp.zeros((1, 32, 32, 1)), train=False)
  path = str(tmp_path / "weights.npz")
  np.savez(path, **_torchvision_names(rgb_vars))
  loaded = load_torchvision_weights(grey_vars, path)
  x = np.random.default_rng(0).random((2, 32, 32, 1)).astype(np.float32)
  a = grey.apply(loaded, x, train=False)["features"]
  b = rgb.apply(rgb_vars, np.repeat(x, 3, axis=-1), train=False)["features"]
  np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)


def test_same_features_as_a_torch_resnet18_with_the_loaded_weights():
  torch = pytest.importorskip("torch")
  from benchmarks.torch_resnet import build_resnet  # torchvision's layout and names

  torch.manual_seed(0)
  net = build_resnet(torch, width=8).eval()
  with torch.no_grad():  # non-trivial BatchNorm statistics
    for module in net.modules():
      if isinstance(module, torch.nn.BatchNorm2d):
        module.running_mean.uniform_(-0.5, 0.5)
        module.running_var.uniform_(0.5, 1.5)
        module.weight.uniform_(0.5, 1.5)
        module.bias.uniform_(-0.2, 0.2)
  model = ResNet(width_multiplier=0.125)
  variables = model.init(jax.random.key(0), jnp.zeros((1, 64, 64, 3)), train=False)
  state = {k: v.numpy() for k, v in net.state_dict().items()}
  loaded = load_torchvision_weights(variables, state)
  x = np.random.default_rng(0).random((2, 64, 64, 3)).astype(np.float32)
  ours = np.asarray(model.apply(loaded, x, train=False)["features"])
  with torch.no_grad():
    theirs = net(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy()
  np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4)

"""torchvision checkpoints -> Flax: key mapping, layouts, errors, and a forward against torch."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxseg.models import SECTION, build_model
from jaxseg.models.convert import load_into, load_state_dict
from jaxseg.models.pretrained import apply_pretrained
from tests.mmseg_oracle import require

KEY = jax.random.PRNGKey(0)



def torchvision_resnet50_shapes() -> dict[str, tuple]:
  """Keys and shapes of torchvision's resnet50 state dict, written out independently."""
  shapes = {"conv1.weight": (64, 3, 7, 7)}

  def bn(prefix, c):
    shapes.update({f"{prefix}.{n}": (c,) for n in ("weight", "bias", "running_mean",
                                                    "running_var")})
    shapes[f"{prefix}.num_batches_tracked"] = ()

  bn("bn1", 64)
  inplanes = 64
  for stage, (planes, blocks) in enumerate(zip((64, 128, 256, 512), (3, 4, 6, 3)), start=1):
    for b in range(blocks):
      p = f"layer{stage}.{b}"
      cin = inplanes if b == 0 else planes * 4
      shapes[f"{p}.conv1.weight"] = (planes, cin, 1, 1)
      bn(f"{p}.bn1", planes)
      shapes[f"{p}.conv2.weight"] = (planes, planes, 3, 3)
      bn(f"{p}.bn2", planes)
      shapes[f"{p}.conv3.weight"] = (planes * 4, planes, 1, 1)
      bn(f"{p}.bn3", planes * 4)
      if b == 0:
        shapes[f"{p}.downsample.0.weight"] = (planes * 4, inplanes, 1, 1)
        bn(f"{p}.downsample.1", planes * 4)
    inplanes = planes * 4
  shapes.update({"fc.weight": (1000, 2048), "fc.bias": (1000,)})
  return shapes


def random_state(shapes, seed=0):
  rng = np.random.default_rng(seed)
  return {k: (rng.standard_normal(s).astype(np.float32) if s else np.array(7, np.int64))
          for k, s in shapes.items()}


def save_state(state, tmp_path, name) -> str:
  """Writes `state` as .safetensors when installed, else .npz: both load without torch."""
  try:
    from safetensors.numpy import save_file
  except ImportError:
    path = str(tmp_path / f"{name}.npz")
    np.savez(path, **state)
    return path
  path = str(tmp_path / f"{name}.safetensors")
  save_file(state, path)
  return path


def abstract_variables(model, size=32):
  x = jnp.zeros((1, size, size, 3))
  return jax.eval_shape(lambda: model.init(KEY, x, train=False))


def zeros_like_variables(model):
  # Zeros stand in for an init: every loaded leaf must then differ from zero.
  return jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), abstract_variables(model))


def test_no_weights_is_a_noop():
  variables = {"params": {"w": np.ones(3)}}
  assert apply_pretrained(SECTION.config(name="fcn_resnet50"), variables) is variables


def test_backbone_safetensors_lands_every_tensor_without_torch(tmp_path):
  state = random_state(torchvision_resnet50_shapes())
  path = save_state(state, tmp_path, "resnet50")
  model = build_model(SECTION.config(name="fcn_resnet50"), 21)
  variables, report = load_into(zeros_like_variables(model), load_state_dict(path), path=path,
                                prefix="backbone")
  assert report.unused == ["fc.bias", "fc.weight"]
  assert all(not m.startswith(("params/backbone", "batch_stats/backbone"))
             for m in report.missing)
  bb, stats = variables["params"]["backbone"], variables["batch_stats"]["backbone"]
  np.testing.assert_array_equal(bb["conv1"]["kernel"], state["conv1.weight"].transpose(2, 3, 1, 0))
  np.testing.assert_array_equal(bb["layer3_5"]["conv2"]["kernel"],
                                state["layer3.5.conv2.weight"].transpose(2, 3, 1, 0))
  np.testing.assert_array_equal(bb["layer4_0"]["downsample_1"]["scale"],
                                state["layer4.0.downsample.1.weight"])
  np.testing.assert_array_equal(stats["layer2_3"]["bn3"]["var"],
                                state["layer2.3.bn3.running_var"])
  np.testing.assert_array_equal(stats["bn1"]["mean"], state["bn1.running_mean"])
  # Every torch tensor but fc went somewhere and every backbone leaf is now non-zero.
  loaded = [leaf for c in ("params", "batch_stats")
            for leaf in jax.tree.leaves(variables[c]["backbone"])]
  assert len(report.loaded) == len(loaded) == sum(
      1 for k in state if not k.startswith("fc.") and not k.endswith("num_batches_tracked"))
  assert all(np.abs(leaf).sum() > 0 for leaf in loaded)
  assert not np.abs(variables["params"]["classifier"]["cls"]["kernel"]).any()  # untouched


def test_vgg_fc_layers_become_convolutions(tmp_path):
  model = build_model(SECTION.config(name="fcn8s", backbone=dict(output_stride=32)), 21)
  abstract = abstract_variables(model)["params"]["backbone"]
  shapes = {}
  for name, leaves in abstract.items():
    torch_name = name.replace("_", ".")
    k = leaves["kernel"].shape
    shapes[f"{torch_name}.weight"] = (k[3], k[2], k[0], k[1])
    shapes[f"{torch_name}.bias"] = (k[3],)
  shapes["classifier.0.weight"] = (4096, 25088)  # torchvision's Linear layers.
  shapes["classifier.3.weight"] = (4096, 4096)
  shapes.update({"classifier.6.weight": (1000, 4096), "classifier.6.bias": (1000,)})
  state = random_state(shapes)
  path = save_state(state, tmp_path, "vgg16")
  cfg = SECTION.config(name="fcn8s", backbone=dict(output_stride=32), backbone_weights=path)
  variables = apply_pretrained(cfg, zeros_like_variables(model))
  fc6 = np.asarray(variables["params"]["backbone"]["classifier_0"]["kernel"])  # (7, 7, 512, 4096)
  # torch flattens pool5 as (C, H, W): input index c * 49 + y * 7 + x.
  c, y, x, o = 300, 2, 5, 4000
  assert fc6[y, x, c, o] == state["classifier.0.weight"][o, c * 49 + y * 7 + x]
  np.testing.assert_array_equal(variables["params"]["backbone"]["features_28"]["bias"],
                                state["features.28.bias"])


def test_shape_mismatch_names_key_shapes_and_file_and_changes_nothing(tmp_path):
  shapes = torchvision_resnet50_shapes()
  shapes["layer2.1.conv2.weight"] = (128, 128, 1, 1)
  path = save_state(random_state(shapes), tmp_path, "bad")
  model = build_model(SECTION.config(name="fcn_resnet50"), 21)
  variables = zeros_like_variables(model)
  with pytest.raises(ValueError, match=r"layer2\.1\.conv2\.weight.*\(128, 128, 1, 1\).*"
                                       r"\(3, 3, 128, 128\)") as error:
    apply_pretrained(SECTION.config(name="fcn_resnet50", backbone_weights=path), variables)
  assert path in str(error.value)
  assert not any(np.abs(leaf).any() for leaf in jax.tree.leaves(variables))


def test_nothing_matching_is_an_error(tmp_path):
  path = save_state({"encoder.weight": np.ones((2, 2), np.float32)}, tmp_path, "other")
  model = build_model(SECTION.config(name="fcn_resnet50"), 21)
  with pytest.raises(ValueError, match="no tensor"):
    apply_pretrained(SECTION.config(name="fcn_resnet50", weights=path),
                     zeros_like_variables(model))


def rel_l2(a, b):
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return np.linalg.norm(a - b) / np.linalg.norm(b)


@pytest.mark.parametrize("kind", ["fcn", "deeplabv3"])
def test_torchvision_checkpoint_forward_matches_torch(kind, tmp_path):
  torch = require("torch")
  from tests import torch_reference

  torch.manual_seed(0)
  net = torch_reference.randomize_batch_norm(
      torch_reference.segmentation_resnet50(kind, num_classes=21).eval())
  path = str(tmp_path / f"{kind}_resnet50.pth")
  torch.save(net.state_dict(), path)

  cfg = SECTION.config(name=f"{kind}_resnet50", weights=path)
  model = build_model(cfg, 21)
  variables = apply_pretrained(cfg, zeros_like_variables(model), verbose=False)
  _, report = load_into(zeros_like_variables(model), load_state_dict(path), path=path)
  assert report.missing == [] and report.unused == []

  x_BCHW = torch.randn(2, 3, 64, 48)
  with torch.no_grad():
    expected = net(x_BCHW)
  logits, aux = jax.jit(lambda v, x: model.apply(v, x, train=False))(
      variables, jnp.asarray(x_BCHW.numpy().transpose(0, 2, 3, 1)))
  assert rel_l2(logits, expected["out"].numpy().transpose(0, 2, 3, 1)) < 1e-4
  assert rel_l2(aux["aux_logits"], expected["aux"].numpy().transpose(0, 2, 3, 1)) < 1e-4


def test_backbone_features_match_torch_at_output_stride_32(tmp_path):
  torch = require("torch")
  from tests import torch_reference

  from jaxseg.models.resnet import ResNet

  torch.manual_seed(1)
  net = torch_reference.resnet50().eval()
  path = str(tmp_path / "resnet50.pth")
  torch.save({"state_dict": net.state_dict()}, path)  # Training-checkpoint nesting.
  backbone = ResNet(depth=50, output_stride=32)
  wrapped = {c: {"backbone": v} for c, v in
             jax.tree.map(lambda s: np.zeros(s.shape, s.dtype),
                          abstract_variables(backbone)).items()}
  wrapped, _ = load_into(wrapped, load_state_dict(path), path=path, prefix="backbone")
  variables = {c: v["backbone"] for c, v in wrapped.items()}
  x_BCHW = torch.randn(1, 3, 65, 63)  # Odd sizes: torch's padding must be mirrored exactly.
  with torch.no_grad():
    expected = net(x_BCHW)
  feats = jax.jit(lambda v, x: backbone.apply(v, x, train=False))(
      variables, jnp.asarray(x_BCHW.numpy().transpose(0, 2, 3, 1)))
  for name in ("stem", "layer1", "layer4"):
    assert rel_l2(feats[name], expected[name].numpy().transpose(0, 2, 3, 1)) < 1e-4, name


def test_torch_key_mapping_of_each_module_kind():
  from jaxseg.models.convert import torch_key
  heads = {"classifier": {"aspp", "conv", "bn", "cls"}, "aux_classifier": {"conv", "bn", "cls"}}
  cases = {
      ("params", ("backbone", "stem_3", "kernel")): "backbone.stem.3.weight",
      ("batch_stats", ("backbone", "stem_4", "var")): "backbone.stem.4.running_var",
      ("params", ("backbone", "features_10", "bias")): "backbone.features.10.bias",
      ("params", ("classifier", "aspp", "convs_4_1", "kernel")):
          "classifier.0.convs.4.1.weight",
      ("params", ("classifier", "aspp", "project_1", "scale")): "classifier.0.project.1.weight",
      ("params", ("classifier", "conv", "kernel")): "classifier.1.weight",
      ("params", ("classifier", "cls", "bias")): "classifier.4.bias",
      ("batch_stats", ("aux_classifier", "bn", "mean")): "aux_classifier.1.running_mean",
      ("params", ("upscore_pool4", "kernel")): None,
  }
  for (collection, path), expected in cases.items():
    assert torch_key(collection, path, heads) == expected, path

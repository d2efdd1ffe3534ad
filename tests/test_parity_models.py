"""jaxseg's mmseg_* segmentors against mmsegmentation's own models, built from its VOC configs.

Each mmseg model is built once (random weights, random BN statistics), saved as
an mmseg checkpoint, loaded through `model.weights` (the converter), and must
have mmseg's parameter count and its eval-mode logits to float tolerance.
"""

import numpy as np
import pytest

import jax
import jax.numpy as jnp

from jaxseg.models import SECTION, build_model
from jaxseg.models.pretrained import apply_pretrained
from tests import mmseg_oracle

pytestmark = pytest.mark.parity

CONFIGS = {  # jaxseg model -> mmseg 1.2.2's shipped config of the recipe.
    "mmseg_fcn_resnet50": "fcn/fcn_r50-d8_4xb4-20k_voc12aug-512x512.py",
    "mmseg_deeplabv3_resnet50": "deeplabv3/deeplabv3_r50-d8_4xb4-20k_voc12aug-512x512.py",
    "mmseg_deeplabv3plus_resnet50":
        "deeplabv3plus/deeplabv3plus_r50-d8_4xb4-20k_voc12aug-512x512.py",
}
# sum(p.numel() for p in net.parameters()) of mmseg's builds (21 classes, aux head).
MMSEG_PARAMS = {"mmseg_fcn_resnet50": 49_499_274, "mmseg_deeplabv3_resnet50": 68_114_570,
                "mmseg_deeplabv3plus_resnet50": 43_591_418}
SMALL_HW = (65, 97)  # Odd sides: every stride-2 conv and resize must round like torch.


def jaxseg_cfg(name, weights="", **values):
  return SECTION.config(name=name, backbone=dict(deep_stem=True, output_stride=8), weights=weights,
                        **values)


class Pair:
  """One mmseg model and its jaxseg twin with the converted weights."""

  def __init__(self, name, tmp_dir):
    torch = mmseg_oracle.require("torch")
    torch.manual_seed(0)
    torch.set_num_threads(2)
    self.name, self.net = name, mmseg_oracle.build_segmentor(CONFIGS[name])
    self.path = str(tmp_dir / f"{name}.pth")
    torch.save({"meta": {"mmseg_version": "1.2.2"}, "state_dict": self.net.state_dict()},
               self.path)
    cfg = jaxseg_cfg(name, weights=self.path)
    self.model = build_model(cfg, 21)
    shapes = jax.eval_shape(lambda: self.model.init(jax.random.PRNGKey(0),
                                                    jnp.zeros((1, 65, 65, 3)), train=False))
    zeros = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), shapes)
    self.variables = apply_pretrained(cfg, zeros, verbose=False)
    self.apply = jax.jit(lambda v, x: self.model.apply(v, x, train=False))

  def compare(self, hw, seed=0):
    """(max |diff| / max |mmseg|, rel. L2) of the main and aux logits on a random input."""
    torch = mmseg_oracle.require("torch")
    x_BCHW = torch.from_numpy(
        np.random.default_rng(seed).standard_normal((1, 3, *hw)).astype(np.float32))
    expected, expected_aux = mmseg_oracle.logits(self.net, x_BCHW)
    out, aux = self.apply(self.variables, jnp.asarray(x_BCHW.numpy().transpose(0, 2, 3, 1)))
    stats = {}
    for key, got, want in (("logits", out, expected), ("aux", aux["aux_logits"], expected_aux)):
      want = want.numpy().transpose(0, 2, 3, 1).astype(np.float64)
      diff = np.abs(np.asarray(got, np.float64) - want)
      assert got.shape == want.shape, key
      stats[key] = (diff.max() / np.abs(want).max(),
                    np.linalg.norm(diff) / np.linalg.norm(want), diff.max())
    return stats


def report(name, hw, stats):
  """The measured differences, shown with `pytest -s` (quoted in the docs and reports)."""
  print(f"\n{name} {hw[0]}x{hw[1]}: " + "; ".join(
      f"{key} max|diff| {v[2]:.2e} (rel. to max|logit| {v[0]:.2e}, rel. L2 {v[1]:.2e})"
      for key, v in stats.items()))


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def pair(request, tmp_path_factory):
  return Pair(request.param, tmp_path_factory.mktemp("mmseg"))


def count(tree) -> int:
  return int(sum(np.prod(leaf.shape) for leaf in jax.tree.leaves(tree)))


def test_parameter_counts_equal_mmseg(pair):
  mmseg_count = sum(p.numel() for p in pair.net.parameters())
  assert mmseg_count == MMSEG_PARAMS[pair.name]
  assert count(pair.variables["params"]) == mmseg_count


def test_eval_logits_equal_mmseg(pair):
  stats = pair.compare(SMALL_HW)
  report(pair.name, SMALL_HW, stats)
  for key, (rel_max, rel_l2, _) in stats.items():
    assert rel_max < 2e-5 and rel_l2 < 5e-6, (key, rel_max, rel_l2)


# One real size (VOC's commonest, 375x500) on the model with the most resizes.
@pytest.mark.parametrize("pair", ["mmseg_deeplabv3plus_resnet50"], indirect=True)
def test_eval_logits_equal_mmseg_at_a_voc_image_size(pair):
  stats = pair.compare((375, 500), seed=1)
  report(pair.name, (375, 500), stats)
  for key, (rel_max, rel_l2, _) in stats.items():
    assert rel_max < 2e-5 and rel_l2 < 5e-6, (key, rel_max, rel_l2)


@pytest.mark.parametrize("pair", ["mmseg_fcn_resnet50"], indirect=True)
def test_converter_refuses_missing_extra_and_foreign_keys(pair, tmp_path):
  torch = mmseg_oracle.require("torch")
  state = pair.net.state_dict()
  zeros = jax.tree.map(np.zeros_like, pair.variables)
  broken = dict(state)
  del broken["decode_head.conv_cat.bn.running_var"]
  broken["decode_head.extra.weight"] = torch.zeros(3)
  path = str(tmp_path / "broken.pth")
  torch.save(broken, path)  # A bare state dict loads too.
  with pytest.raises(ValueError) as error:
    apply_pretrained(jaxseg_cfg(pair.name, weights=path), zeros)
  message = str(error.value)
  assert path in message and "decode_head.conv_cat.bn.running_var" in message
  assert "decode_head.extra.weight" in message
  # torchvision's heads have other modules: the mmseg checkpoint names every misfit.
  tv_cfg = jaxseg_cfg("fcn_resnet50", weights=pair.path)
  tv = build_model(tv_cfg, 21)
  tv_zeros = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), jax.eval_shape(
      lambda: tv.init(jax.random.PRNGKey(0), jnp.zeros((1, 65, 65, 3)), train=False)))
  with pytest.raises(ValueError, match=r"lacks.*decode_head\.cls\.weight.*; .*no place for.*"
                                       r"decode_head\.conv_cat\.conv\.weight"):
    apply_pretrained(tv_cfg, tv_zeros)


@pytest.mark.parametrize("pair", ["mmseg_fcn_resnet50"], indirect=True)
def test_train_mode_logits_and_bn_means_equal_mmseg(pair):
  """Train mode (dropout off): BN normalises with batch statistics, running means move alike.

  Batch statistics of 2 small images amplify float32 rounding (~1e-4 of the
  logits, against ~1e-6 in eval mode). Running variances are not compared: torch
  updates them with the unbiased batch variance, flax with the biased one (a
  factor n/(n-1), n = batch x pixels; 16/15 for ASPP's pooled branch at batch 16).
  """
  import copy

  from jaxseg.models.convert_mmseg import load_mmseg_segmentor
  torch = mmseg_oracle.require("torch")
  net = copy.deepcopy(pair.net).train()  # The shared fixture stays in eval mode.
  net.decode_head.dropout.p = net.auxiliary_head.dropout.p = 0.0
  x_BCHW = torch.from_numpy(
      np.random.default_rng(2).standard_normal((2, 3, *SMALL_HW)).astype(np.float32))
  with torch.no_grad():
    expected = net.encode_decode(x_BCHW, [dict(img_shape=SMALL_HW)] * 2)
  model = build_model(jaxseg_cfg(pair.name, head=dict(dropout=0.0), aux_head=dict(dropout=0.0)), 21)
  (logits, _), updated = jax.jit(lambda v, x: model.apply(
      v, x, train=True, mutable=["batch_stats"], rngs={"dropout": jax.random.PRNGKey(0)}))(
          pair.variables, jnp.asarray(x_BCHW.numpy().transpose(0, 2, 3, 1)))
  want = expected.numpy().transpose(0, 2, 3, 1)
  diff = np.abs(np.asarray(logits, np.float64) - want)
  print(f"\n{pair.name} train mode {SMALL_HW}: max|diff| {diff.max():.2e}, max|logit| "
        f"{np.abs(want).max():.2e}, rel. L2 {np.linalg.norm(diff) / np.linalg.norm(want):.2e}")
  assert diff.max() < 1e-3 * np.abs(want).max()
  assert np.linalg.norm(diff) < 2e-4 * np.linalg.norm(want)
  torch_state = {k: v.numpy() for k, v in net.state_dict().items()}
  torch_updated, _ = load_mmseg_segmentor(pair.variables, torch_state, path="updated")
  # encode_decode runs no auxiliary head, so only the backbone's and decode head's BNs move.
  means = lambda tree: {jax.tree_util.keystr(path): leaf for path, leaf
                        in jax.tree_util.tree_leaves_with_path(tree["batch_stats"])
                        if path[-1].key == "mean" and path[0].key != "aux_classifier"}
  got, ref = means(updated), means(torch_updated)
  assert got.keys() == ref.keys() and len(got) == 55 + 3  # ResNet-50-v1c + FCN head BNs.
  for key in got:
    np.testing.assert_allclose(got[key], ref[key], rtol=1e-4, atol=1e-5, err_msg=key)

"""segformer_b* against transformers' SegformerForSemanticSegmentation and mmseg 1.2.2's SegFormer.

Each reference is built with random weights (BN statistics randomised too), its
state dict converted by convert_segformer, and must give jaxseg's parameter
count and, in eval mode, every stage's features and the stride-4 logits to float
tolerance on non-square inputs whose sides are no multiple of 32.
Measured max |diff| are printed with `pytest -s`.
"""

import numpy as np
import pytest

import jax
import jax.numpy as jnp

from jaxseg.evaluation.inference import head_logits
from jaxseg.models import SECTION, build_model
from jaxseg.models.convert_segformer import load_segformer
from jaxseg.models.mit import STAGES
from tests import mmseg_oracle

pytestmark = pytest.mark.parity

SIZES = [(64, 96), (97, 129)]
NUM_CLASSES = 7
MMSEG_CONFIG = "segformer/segformer_mit-{}_8xb2-160k_ade20k-512x512.py"


def hf_config(variant: str):
  transformers = mmseg_oracle.require("transformers")
  wide = variant != "b0"
  depths = {"b0": [2, 2, 2, 2], "b2": [3, 4, 6, 3]}[variant]
  return transformers.SegformerConfig(
      hidden_sizes=[64, 128, 320, 512] if wide else [32, 64, 160, 256], depths=depths,
      decoder_hidden_size=768 if wide else 256, num_labels=NUM_CLASSES)


def hf_net(variant: str):
  torch = mmseg_oracle.require("torch")
  transformers = mmseg_oracle.require("transformers")
  torch.manual_seed(0)
  net = transformers.SegformerForSemanticSegmentation(hf_config(variant))
  from tests.torch_reference import randomize_batch_norm
  return randomize_batch_norm(net).eval()


def mmseg_net(variant: str):
  mmseg_oracle.require("torch").manual_seed(0)
  return mmseg_oracle.build_segmentor(MMSEG_CONFIG.format(variant))


def torch_state(net) -> dict:
  return {k: v.detach().numpy() for k, v in net.state_dict().items()}


def jaxseg_model(variant, style, num_classes, **head):
  """SegFormer-`variant` with the `style` decoder and any other `model.head` keys."""
  return build_model(SECTION.config(name=f"segformer_{variant}", head=dict(style=style, **head)),
                     num_classes)


def abstract_variables(model, hw=(64, 64)):
  return jax.eval_shape(lambda: model.init(jax.random.key(0, impl="rbg"),
                                           jnp.zeros((1, *hw, 3)), train=False))


def param_count(variables) -> int:
  return sum(int(np.prod(p.shape)) for p in jax.tree.leaves(variables["params"]))


def torch_param_count(net) -> int:
  return sum(p.numel() for p in net.parameters())


@pytest.mark.parametrize("variant", ["b0", "b2"])
def test_parameter_counts_equal_both_references(variant):
  hf = hf_net(variant)
  ours = jaxseg_model(variant, "hf", NUM_CLASSES)
  assert param_count(abstract_variables(ours)) == torch_param_count(hf)
  mm = mmseg_net(variant)  # 150 ADE20K classes; mmseg's SegformerHead is 256 wide at any size.
  ours = jaxseg_model(variant, "mmseg", 150, channels=256)
  assert param_count(abstract_variables(ours)) == torch_param_count(mm)


def converted(model, net):
  zeros = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), abstract_variables(model))
  variables, report = load_segformer(zeros, torch_state(net), path="<random>", whole=True)
  assert len(report.loaded) > 100
  return variables


def jaxseg_outputs(model, variables, x_BHWC):
  """({stage: BHWC features}, stride-4 logits)."""
  def is_backbone(module, method_name):
    return method_name == "__call__" and module.path == ("backbone",)

  _, state = model.apply(variables, x_BHWC, train=False, capture_intermediates=is_backbone,
                         mutable=["intermediates"])
  return state["intermediates"]["backbone"]["__call__"][0], head_logits(model, variables,
                                                                          x_BHWC, None)


def hf_outputs(net, x_BCHW):
  torch = mmseg_oracle.require("torch")
  with torch.no_grad():
    out = net(pixel_values=x_BCHW, output_hidden_states=True)
  return list(out.hidden_states), out.logits


def mmseg_outputs(net, x_BCHW):
  torch = mmseg_oracle.require("torch")
  with torch.no_grad():
    feats = net.extract_feat(x_BCHW)
    return list(feats), net.decode_head.forward(feats)


def max_diff(got_BHWC, want_BCHW) -> float:
  want = want_BCHW.numpy().transpose(0, 2, 3, 1)
  assert got_BHWC.shape == want.shape
  return float(np.abs(np.asarray(got_BHWC, np.float64) - want).max())


@pytest.mark.parametrize("head", ["hf", "mmseg"])
def test_eval_features_and_logits_equal_the_reference(head):
  torch = mmseg_oracle.require("torch")
  torch.set_num_threads(2)
  if head == "hf":
    net, outputs, model = hf_net("b0"), hf_outputs, jaxseg_model("b0", "hf", NUM_CLASSES)
  else:
    net, outputs, model = mmseg_net("b0"), mmseg_outputs, jaxseg_model("b0", "mmseg", 150)
  variables = converted(model, net)
  run = jax.jit(lambda x: jaxseg_outputs(model, variables, x))
  for seed, hw in enumerate(SIZES):
    x = np.random.default_rng(seed).standard_normal((1, 3, *hw)).astype(np.float32)
    want_features, want_logits = outputs(net, torch.from_numpy(x))
    features, logits = run(jnp.asarray(x.transpose(0, 2, 3, 1)))
    diffs = {name: max_diff(features[name], want) for name, want in zip(STAGES, want_features)}
    diffs["logits"] = max_diff(logits, want_logits)
    print(f"\nsegformer_b0 head={head} {hw[0]}x{hw[1]}: max|diff| "
          + ", ".join(f"{k} {v:.2e}" for k, v in diffs.items()))
    scale = float(np.abs(want_logits.numpy()).max())
    assert diffs["logits"] <= 1e-4 * max(scale, 1.0), diffs
    for name, want in zip(STAGES, want_features):  # LayerNorm outputs: O(1) values.
      assert diffs[name] <= 1e-4 * max(float(np.abs(want.numpy()).max()), 1.0), diffs

"""mmseg's SegFormer recipe against jaxseg's: one AdamW step, and the learning-rate schedule.

The oracle is mmseg 1.2.2's segformer_mit-b0_8xb2-160k_ade20k-512x512.py itself:
its model (SyncBN as BN, dropout and drop path off), its `optim_wrapper` built by
mmengine's `build_optim_wrapper` (AdamW with paramwise_cfg custom_keys), and its
`param_scheduler` (LinearLR + PolyLR) stepped by mmengine. jaxseg runs the same
step with `segformer.MMSEG_RECIPE_OPTIM` (lr_mult / decay_mult rules).
"""

import copy
import logging
import re

import numpy as np
import pytest

import jax
import jax.numpy as jnp
import ml_collections

from jaxseg import optim
from jaxseg.losses.pixel import cross_entropy
from jaxseg.models import SECTION, build_model
from jaxseg.models.convert_segformer import load_segformer
from jaxseg.models.segformer import MMSEG_RECIPE_OPTIM
from tests import mmseg_oracle

pytestmark = pytest.mark.parity

CONFIG = "segformer/segformer_mit-b0_8xb2-160k_ade20k-512x512.py"


def mmseg_config():
  mmengine = mmseg_oracle.require("mmengine")
  mmseg_oracle.require("mmseg.models")
  logging.getLogger("mmengine").setLevel(logging.WARNING)
  return mmengine.Config.fromfile(mmseg_oracle.config_path(CONFIG))


def optim_section(**overrides) -> ml_collections.ConfigDict:
  section = optim.SECTION.config(**{**MMSEG_RECIPE_OPTIM, **overrides})
  optim.validate_config(section)
  return section


def test_schedule_is_mmengines_linear_warmup_then_poly():
  """The config's own schedulers, shortened (warmup 15, 100 steps), step by step."""
  torch = mmseg_oracle.require("torch")
  from mmengine.optim.scheduler import LinearLR, PolyLR
  cfg = mmseg_config()
  linear, poly = (copy.deepcopy(s) for s in cfg.param_scheduler)
  assert (linear.type, linear.start_factor, linear.end) == ("LinearLR", 1e-6, 1500)
  assert (poly.type, poly.power, poly.eta_min, poly.begin) == ("PolyLR", 1.0, 0.0, 1500)
  assert cfg.optim_wrapper.optimizer.lr == MMSEG_RECIPE_OPTIM["lr"]
  warmup, total = 15, 100
  param = torch.nn.Parameter(torch.zeros(1))
  opt = torch.optim.AdamW([param], lr=cfg.optim_wrapper.optimizer.lr)
  schedulers = [LinearLR(opt, start_factor=linear.start_factor, begin=0, end=warmup,
                         by_epoch=False),
                PolyLR(opt, eta_min=poly.eta_min, power=poly.power, begin=warmup, end=total,
                       by_epoch=False)]
  expected = []
  for _ in range(total):
    expected.append(opt.param_groups[0]["lr"])
    opt.step()
    for s in schedulers:
      s.step()
  schedule = optim.build_schedule(optim_section(warmup_steps=warmup), total)
  got = np.array([schedule(t) for t in range(total)], np.float64)
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-12)


def build_mmseg_net(cfg):
  torch = mmseg_oracle.require("torch")
  from mmengine.registry import init_default_scope
  from mmseg.registry import MODELS
  model = copy.deepcopy(cfg.model)
  model.backbone.init_cfg = None
  model.backbone.drop_path_rate = 0.0
  model.decode_head.dropout_ratio = 0.0
  mmseg_oracle._single_device_norms(model)
  init_default_scope("mmseg")
  torch.manual_seed(0)
  from tests.torch_reference import randomize_batch_norm
  return randomize_batch_norm(MODELS.build(model)).train()


def test_one_adamw_step_equals_mmsegs_optim_wrapper():
  torch = mmseg_oracle.require("torch")
  torch.set_num_threads(2)
  from mmengine.optim import build_optim_wrapper
  from mmengine.structures import PixelData
  from mmseg.structures import SegDataSample
  cfg = mmseg_config()
  net = build_mmseg_net(cfg)
  state = {k: v.detach().numpy().copy() for k, v in net.state_dict().items()}
  rng = np.random.default_rng(0)
  x_BCHW = rng.standard_normal((2, 3, 64, 96)).astype(np.float32)
  labels_BHW = rng.integers(0, 150, (2, 64, 96)).astype(np.int64)
  labels_BHW[:, :8] = 255  # Ignored rows: mmseg still divides by every pixel.
  samples = []
  for label_HW in labels_BHW:
    sample = SegDataSample()
    sample.gt_sem_seg = PixelData(data=torch.from_numpy(label_HW[None]))
    samples.append(sample)
  wrapper = build_optim_wrapper(net, copy.deepcopy(cfg.optim_wrapper))
  losses = net.loss(torch.from_numpy(x_BCHW), samples)
  wrapper.update_params(losses["decode.loss_ce"])
  want_loss = float(losses["decode.loss_ce"])

  model = build_model(SECTION.config(
      name="segformer_b0", head=dict(style="mmseg", channels=256, dropout=0.0),
      backbone=dict(drop_path_rate=0.0)), 150)
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0, impl="rbg"),
                                             jnp.zeros((1, 64, 96, 3)), train=False))
  zeros = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), shapes)
  variables, _ = load_segformer(zeros, state, path="<mmseg>", whole=True)
  want, _ = load_segformer(zeros, {k: v.detach().numpy() for k, v in net.state_dict().items()},
                           path="<mmseg stepped>", whole=True)
  # No schedulers stepped: mmseg's wrapper uses the base lr, as poly's step 0 without warmup.
  tx, _ = optim.build_optimizer(optim_section(warmup_steps=0), 160000)
  x_BHWC = jnp.asarray(x_BCHW.transpose(0, 2, 3, 1))
  labels = jnp.asarray(labels_BHW)

  def loss_fn(params):
    (logits, _), _ = model.apply({"params": params, "batch_stats": variables["batch_stats"]},
                                 x_BHWC, train=True, mutable=["batch_stats"])
    return cross_entropy(logits, labels, labels != 255, avg_non_ignore=False)

  @jax.jit
  def step(params):
    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, _ = tx.update(grads, tx.init(params), params)
    return loss, jax.tree.map(lambda p, u: p + u, params, updates)

  loss, params = step(variables["params"])
  assert abs(float(loss) - want_loss) <= 1e-5 * want_loss, (float(loss), want_loss)
  moved = jax.tree.map(lambda new, old: float(np.abs(np.asarray(new) - old).max()),
                       want["params"], variables["params"])
  # Elements that disagree by more than a few float32 ulps of an O(1) weight. Adam moves
  # each weight by ~lr (x10 in the head), and decay adds lr * wd * w (6e-7 on a
  # LayerNorm scale of 1): a wrong lr_mult or decay_mult fails every element of a
  # group. A handful of elements whose gradient is near Adam's eps (1e-8) move by
  # g / (|g| + eps), which float rounding of g flips: those are tolerated, 1 in 1000.
  off = jax.tree.map(lambda got, ref: float(np.mean(np.abs(np.asarray(got) - ref) > 3e-7)),
                     params, want["params"])
  diffs = jax.tree.map(lambda got, ref: float(np.abs(np.asarray(got) - ref).max()), params,
                       want["params"])
  name = lambda path: optim.param_path(path)
  off, diffs, moved = ({name(p): v for p, v in jax.tree_util.tree_leaves_with_path(tree)}
                       for tree in (off, diffs, moved))
  # Params whose gradient is 0 in exact arithmetic, so rounding noise that Adam scales
  # up to ~lr: a key bias adds the same q.b to every key of a query (softmax ignores
  # it), and the last stage norm's bias shifts stage4 uniformly, which the head's
  # 1x1 conv and train-mode BN remove.
  off = {k: v for k, v in off.items() if not re.search(r"attn/k/bias$|^backbone/norm_3/bias$", k)}
  worst = max(off, key=off.get)
  print(f"\nloss {float(loss):.7f} vs mmseg {want_loss:.7f}; updated params max|diff| "
        f"{max(diffs.values()):.2e}, elements off by > 3e-7: at most {off[worst]:.1e} "
        f"({worst}); step head {moved['classifier/conv_seg/bias']:.2e}, "
        f"encoder {moved['backbone/patch_embed_0/proj/bias']:.2e}")
  assert off[worst] <= 1e-3, (worst, off[worst], diffs[worst])
  lr = MMSEG_RECIPE_OPTIM["lr"]
  assert 9 * lr < moved["classifier/conv_seg/bias"] < 11 * lr  # Both apply the head's x10.

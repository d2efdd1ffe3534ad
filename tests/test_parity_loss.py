"""The mmseg recipes' training side against mmsegmentation: its CrossEntropyLoss (and
numpy) for `loss.cross_entropy.avg_non_ignore`, its shipped configs' loss, optimizer and
schedule settings (SegFormer's AdamW and paramwise_cfg included), and mmengine's
PolyLR (SegFormer: LinearLR + PolyLR) step by step.

mmseg 1.x's default avg_non_ignore=False divides the summed CE by every pixel,
ignored ones included; the voc recipes train with that. mmseg raises (IndexError)
for class weights together with ignored pixels, so that one case is checked
against the formula only.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxseg import losses
from jaxseg.config.resolve import build_config
from tests import mmseg_oracle

C, IGNORE = 4, 255
W4 = (0.5, 2.0, 1.0, 3.0)


def mmseg_cross_entropy_loss():
  return mmseg_oracle.require("mmseg.models.losses").CrossEntropyLoss


def case(seed=0, ignore_frac=0.25, all_ignore=False):
  rng = np.random.default_rng(seed)
  logits = rng.normal(0, 2.0, (2, 5, 6, C)).astype(np.float32)
  labels = rng.integers(0, C, (2, 5, 6))
  labels[rng.random(labels.shape) < ignore_frac] = IGNORE
  if all_ignore:
    labels[:] = IGNORE
  return logits, labels


def jax_ce(logits, labels, avg_non_ignore, class_weights=()):
  cfg = losses.SECTION.config(cross_entropy=dict(
      avg_non_ignore=avg_non_ignore, class_weights=tuple(float(w) for w in class_weights)))
  ce = losses.term("cross_entropy", cfg)
  fn = lambda x: ce(x, jnp.asarray(labels), jnp.asarray(labels != IGNORE))
  value, grad = jax.value_and_grad(fn)(jnp.asarray(logits))
  return float(value), np.asarray(grad)


def mmseg_ce(logits, labels, avg_non_ignore, class_weights=None):
  import torch

  loss = mmseg_cross_entropy_loss()(avg_non_ignore=avg_non_ignore, class_weight=class_weights)
  x = torch.tensor(logits.transpose(0, 3, 1, 2), dtype=torch.float64, requires_grad=True)
  value = loss(x, torch.tensor(labels), ignore_index=IGNORE)
  value.backward()
  return float(value), x.grad.numpy().transpose(0, 2, 3, 1)


@pytest.mark.filterwarnings("ignore")  # mmseg warns about its own avg_non_ignore default.
@pytest.mark.parametrize("avg_non_ignore", [False, True])
@pytest.mark.parametrize("kind", ["ignore_pixels", "class_weights", "all_ignore"])
def test_cross_entropy_equals_mmseg(kind, avg_non_ignore):
  if kind == "class_weights":  # mmseg cannot take class weights with ignored pixels.
    logits, labels = case(ignore_frac=0.0)
    weights = W4
  else:
    logits, labels = case(all_ignore=kind == "all_ignore")
    weights = ()
  ours, our_grad = jax_ce(logits, labels, avg_non_ignore, weights)
  theirs, their_grad = mmseg_ce(logits, labels, avg_non_ignore, list(weights) or None)
  # mmseg adds float32 eps to its denominator; relative 1e-6 covers it and f32.
  np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(our_grad, their_grad, rtol=1e-5, atol=1e-8)
  if kind == "all_ignore":
    assert ours == 0.0 and not our_grad.any()


def np_log_softmax(x):
  x = x.astype(np.float64)
  return x - x.max(-1, keepdims=True) - np.log(
      np.exp(x - x.max(-1, keepdims=True)).sum(-1, keepdims=True))


@pytest.mark.parametrize("weights", [(), W4])
def test_all_pixels_denominator_counts_ignored_pixels_as_one(weights):
  logits, labels = case(seed=3)
  w = np.asarray(weights or (1.0,) * C)
  logp = np_log_softmax(logits).reshape(-1, C)
  y = labels.ravel()
  valid = y != IGNORE
  numerator = sum(-w[t] * lp[t] for lp, t in zip(logp[valid], y[valid]))
  assert 0 < valid.sum() < y.size
  expected_all = numerator / (w[y[valid]].sum() + (~valid).sum())
  expected_valid = numerator / w[y[valid]].sum()
  np.testing.assert_allclose(jax_ce(logits, labels, False, weights)[0], expected_all, rtol=1e-6)
  np.testing.assert_allclose(jax_ce(logits, labels, True, weights)[0], expected_valid, rtol=1e-6)
  if not weights:  # Without class weights: exactly sum / (B*H*W).
    np.testing.assert_allclose(expected_all, numerator / y.size, rtol=1e-12)


def test_voc_recipes_train_with_mmseg_denominator_and_base_keeps_torch_mean():
  assert losses.SECTION.config().cross_entropy.avg_non_ignore is True
  for name in ("voc_fcn", "voc_deeplabv3", "voc_deeplabv3plus", "voc_fcn8s", "voc_fcn:tv"):
    cfg = build_config(name)
    assert cfg.loss.cross_entropy.avg_non_ignore is False, name
    assert cfg.loss.terms == "cross_entropy" and not cfg.loss.cross_entropy.class_weights
    assert cfg.loss.cross_entropy.label_smoothing == 0.0


MMSEG_CONFIGS = {"voc_fcn": "fcn/fcn_r50-d8_4xb4-20k_voc12aug-512x512.py",
                 "voc_deeplabv3": "deeplabv3/deeplabv3_r50-d8_4xb4-20k_voc12aug-512x512.py",
                 "voc_deeplabv3plus":
                     "deeplabv3plus/deeplabv3plus_r50-d8_4xb4-20k_voc12aug-512x512.py",
                 "ade20k_deeplabv3plus":
                     "deeplabv3plus/deeplabv3plus_r50-d8_4xb4-80k_ade20k-512x512.py",
                 "cityscapes_deeplabv3plus":
                     "deeplabv3plus/deeplabv3plus_r50-d8_4xb2-80k_cityscapes-512x1024.py",
                 **{f"ade20k_segformer_{size}":
                        f"segformer/segformer_mit-{size}_8xb2-160k_ade20k-512x512.py"
                    for size in ("b0", "b1", "b2", "b3", "b4", "b5")},
                 "ade20k_segformer_b5:640x640":
                     "segformer/segformer_mit-b5_8xb2-160k_ade20k-640x640.py",
                 **{f"cityscapes_segformer_{size}":
                        f"segformer/segformer_mit-{size}_8xb1-160k_cityscapes-1024x1024.py"
                    for size in ("b0", "b1", "b2", "b3", "b4", "b5")}}
SEGFORMER = sorted(name for name in MMSEG_CONFIGS if "segformer" in name)
SGD_RECIPES = sorted(set(MMSEG_CONFIGS) - set(SEGFORMER))  # The R50-D8 ones.


def mmseg_config(name):
  config = mmseg_oracle.require("mmengine.config")
  return config.Config.fromfile(mmseg_oracle.config_path(MMSEG_CONFIGS[name]))


@pytest.mark.parametrize("name", sorted(MMSEG_CONFIGS))
def test_recipe_loss_is_mmsegs_shipped_config(name):
  """Loss weights, class weights, denominator and pretrained weights from mmseg's own file."""
  from jaxseg.models import weights

  model = mmseg_config(name).model
  ours = build_config(name)
  aux = model.get("auxiliary_head")
  assert bool(aux) == ("aux_head" in ours.model and ours.model.aux_head.enabled)
  heads = [model.decode_head.loss_decode] + ([aux.loss_decode] if aux else [])
  for head in heads:
    assert head.type == "CrossEntropyLoss" and not head.get("use_sigmoid")
    assert head.get("class_weight") is None and not ours.loss.cross_entropy.class_weights
    assert head.get("avg_non_ignore", False) is ours.loss.cross_entropy.avg_non_ignore
  assert [h.loss_weight for h in heads] == [1.0, ours.loss.aux_weight][:len(heads)]
  assert model.decode_head.get("sampler") is None and ours.loss.terms == "cross_entropy"
  assert model.decode_head.get("ignore_index", 255) == IGNORE
  # R50: `pretrained` names mmcv's hub entry; MiT: the backbone's init_cfg has the URL.
  pretrained = model.pretrained or model.backbone.init_cfg.checkpoint
  ours_name = ours.model.backbone_weights
  assert pretrained in (ours_name, weights.NAMED.get(ours_name))


@pytest.mark.parametrize("name", SGD_RECIPES)
def test_recipe_optimizer_and_schedule_are_mmsegs(name):
  """SGD settings, iterations and batch from mmseg's config; lr per step from mmengine's PolyLR."""
  torch = mmseg_oracle.require("torch")
  config = mmseg_oracle.require("mmengine.config")
  from mmengine.optim import PolyLR

  from jaxseg import optim

  mm = config.Config.fromfile(mmseg_oracle.config_path(MMSEG_CONFIGS[name]))
  ours = build_config(name)
  sgd, (poly,) = mm.optim_wrapper.optimizer, mm.param_scheduler
  assert sgd.type == "SGD" and ours.optim.name == "sgd" and not ours.optim.nesterov
  assert (sgd.lr, sgd.momentum, sgd.weight_decay) == (
      ours.optim.lr, ours.optim.momentum, ours.optim.weight_decay)
  assert mm.optim_wrapper.get("paramwise_cfg") is None and ours.optim.decay_norm_and_bias
  assert mm.optim_wrapper.clip_grad is None and ours.optim.clip_grad_norm == 0
  assert mm.train_cfg.max_iters == poly.end == ours.train.steps and ours.optim.warmup_steps == 0
  gpus, per_gpu = 4, mm.train_dataloader.batch_size  # The config name's 4xb4.
  assert gpus * per_gpu == ours.train.batch_size

  def mmengine_lrs(end):
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([parameter], lr=sgd.lr)
    scheduler = PolyLR(optimizer, eta_min=poly.eta_min, power=poly.power, begin=poly.begin,
                       end=end, by_epoch=False)
    lrs = []
    for _ in range(ours.train.steps):  # The lr step i's update uses, i = 0, 1, ...
      lrs.append(optimizer.param_groups[0]["lr"])
      optimizer.step()
      scheduler.step()
    return np.asarray(lrs)

  schedule = optim.build_schedule(ours.optim, ours.train.steps)
  steps = np.arange(0, ours.train.steps, 97).tolist() + [ours.train.steps - 1]
  ours_lr = np.asarray([float(schedule(i)) for i in steps])
  # mmengine's PolyLR reaches eta_min at the last iteration (it decays over end - 1
  # steps), optax's over all of them: the same curve one step longer. Documented in
  # docs/models.md; the largest gap is 1.3e-6 at the last step.
  np.testing.assert_allclose(ours_lr, mmengine_lrs(poly.end + 1)[steps], rtol=2e-6,
                             atol=1e-9)  # optax computes in float32.
  gap = np.abs(ours_lr - mmengine_lrs(poly.end)[steps])
  assert gap.max() < 1.5e-6 and gap[-1] == gap.max()


@functools.lru_cache
def mmengine_warmup_poly_lrs(lr, linear, poly, steps):
  """The lr of each of `steps` iterations under mmengine's LinearLR then PolyLR (their
  config items as sorted tuples; cached: every SegFormer recipe has the same ones)."""
  torch = mmseg_oracle.require("torch")
  from mmengine.optim import LinearLR, PolyLR
  linear, poly = dict(linear), dict(poly)
  parameter = torch.nn.Parameter(torch.zeros(1))
  optimizer = torch.optim.AdamW([parameter], lr=lr)
  schedulers = [LinearLR(optimizer, start_factor=linear["start_factor"], begin=linear["begin"],
                         end=linear["end"], by_epoch=False),
                PolyLR(optimizer, eta_min=poly["eta_min"], power=poly["power"],
                       begin=poly["begin"], end=poly["end"], by_epoch=False)]
  lrs = np.empty(steps)
  for i in range(steps):  # The lr step i's update uses; the optimizer never steps (no grads).
    lrs[i] = optimizer.param_groups[0]["lr"]
    for scheduler in schedulers:
      scheduler.step()
  return lrs


@pytest.mark.filterwarnings("ignore:Detected call of")  # Schedulers without optimizer steps.
@pytest.mark.parametrize("name", SEGFORMER)
def test_segformer_recipe_optimizer_and_schedule_are_mmsegs(name):
  """AdamW and paramwise_cfg from the config (the rules that implement them are proven on
  one mmseg step in test_parity_segformer_step.py, with b0-ADE's paramwise_cfg, which every
  SegFormer config equals); the lr at each of the 160k steps from mmengine's schedulers."""
  from jaxseg import optim
  from jaxseg.models.segformer import MMSEG_RECIPE_OPTIM

  mm, ours = mmseg_config(name), build_config(name)
  reference = mmseg_config("ade20k_segformer_b0")
  adamw = mm.optim_wrapper.optimizer
  assert (adamw.type, ours.optim.name) == ("AdamW", "adamw")
  assert (adamw.lr, tuple(adamw.betas), adamw.weight_decay) == (
      ours.optim.lr, (ours.optim.b1, ours.optim.b2), ours.optim.weight_decay)
  assert mm.optim_wrapper.paramwise_cfg == reference.optim_wrapper.paramwise_cfg == dict(
      custom_keys={"pos_block": dict(decay_mult=0.0), "norm": dict(decay_mult=0.0),
                   "head": dict(lr_mult=10.0)})
  assert {k: ours.optim.to_dict()[k] for k in MMSEG_RECIPE_OPTIM} == MMSEG_RECIPE_OPTIM
  assert mm.optim_wrapper.get("clip_grad") is None and ours.optim.clip_grad_norm == 0
  linear, poly = mm.param_scheduler
  assert (linear.type, poly.type) == ("LinearLR", "PolyLR") and not linear.by_epoch
  assert linear.end == poly.begin == ours.optim.warmup_steps and linear.begin == 0
  assert linear.start_factor == ours.optim.warmup_start_factor
  assert (poly.power, poly.eta_min) == (ours.optim.poly.power, ours.optim.poly.end_lr)
  assert mm.train_cfg.max_iters == poly.end == ours.train.steps
  expected = mmengine_warmup_poly_lrs(adamw.lr, tuple(sorted(linear.items())),
                                      tuple(sorted(poly.items())), ours.train.steps)
  schedule = optim.build_schedule(ours.optim, ours.train.steps)
  steps = np.arange(ours.train.steps)
  # optax computes in float32: 1 - t/T carries ~1e-7 absolute error, i.e. 1e-7 * lr
  # (which, near the end where lr -> 0, is the whole difference).
  np.testing.assert_allclose(np.asarray(schedule(steps), np.float64), expected, rtol=2e-6,
                             atol=1e-7 * adamw.lr)
  assert expected[0] == adamw.lr * linear.start_factor and expected[-1] == 0.0

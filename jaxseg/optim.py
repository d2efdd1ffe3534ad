"""Optimizers and learning-rate schedules, chosen by `optim.name` and `optim.schedule`.

Each registered optimizer and schedule declares its own arguments, with their
ranges, as keyword-only parameters (jaxseg/declare.py): an optimizer's are
keys of the section (`optim.momentum`), a schedule's are under its name
(`optim.poly.power`); `SECTION` lists the keys read here for every choice.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Annotated, Callable

import jax
import jax.numpy as jnp
import ml_collections
import optax

from jaxseg.config.checks import Checker
from jaxseg.config.sections import Choice, Section
from jaxseg.declare import Arg
from jaxseg.registry import Registry

OPTIMIZERS: Registry = Registry("optimizer")
SCHEDULES: Registry = Registry("schedule")


# Arguments several optimizers or schedules take, declared once.
EndLr = Annotated[float, Arg(min=0, help="learning rate at the last step")]
Beta = Annotated[float, Arg(min=0, below=1, help="Adam's decay of a moment estimate")]


@SCHEDULES.register("poly")
def poly(lr: float, decay_steps: int, *, end_lr: EndLr = 0.0,
         power: Annotated[float, Arg(above=0, help="exponent of the decay")] = 0.9
         ) -> optax.Schedule:
  """lr -> end_lr as (1 - step / decay_steps) ** power (mmseg's PolyLR)."""
  return optax.polynomial_schedule(lr, end_lr, power, decay_steps)


@SCHEDULES.register("cosine")
def cosine(lr: float, decay_steps: int, *, end_lr: EndLr = 0.0) -> optax.Schedule:
  return optax.cosine_decay_schedule(lr, decay_steps, alpha=end_lr / lr)


@SCHEDULES.register("constant")
def constant(lr: float, decay_steps: int) -> optax.Schedule:
  del decay_steps
  return optax.constant_schedule(lr)


def linear_warmup(lr: float, start_factor: float, steps: int) -> optax.Schedule:
  """lr * (start_factor + (1 - start_factor) * min(t, steps) / steps), as a factor of lr:
  exact in float32 for a tiny start (mmseg's 1e-6), where optax.linear_schedule
  subtracts two nearly equal lrs."""
  def schedule(count):
    frac = jnp.minimum(count, steps).astype(jnp.float32) / steps
    return lr * (start_factor + (1.0 - start_factor) * frac)
  return schedule


def build_schedule(cfg: ml_collections.ConfigDict, total_steps: int) -> optax.Schedule:
  """Linear warmup from `lr * warmup_start_factor` to `lr`, then the named decay over
  the remaining steps.

  With `mmengine_schedule`, each phase reaches its end value at its LAST step, as
  mmengine's schedulers do (their total_iters is end - begin - 1): the warmup reaches
  lr at step warmup_steps - 1, poly reaches end_lr at step total_steps - 1. So
  warmup_start_factor=1e-6 + poly power 1 is mmseg's LinearLR(start_factor=1e-6,
  end=warmup) + PolyLR(begin=warmup, end=total) step for step.
  """
  last = 1 if cfg.mmengine_schedule else 0
  decay = SCHEDULES.build(cfg.schedule, cfg.get(cfg.schedule, {}), lr=cfg.lr,
                          decay_steps=max(total_steps - cfg.warmup_steps - last, 1))
  if cfg.warmup_steps <= 0:
    return decay
  if cfg.warmup_start_factor == 0 and not last:  # The original warmup, bit for bit.
    warmup = optax.linear_schedule(0.0, cfg.lr, cfg.warmup_steps)
  else:
    warmup = linear_warmup(cfg.lr, cfg.warmup_start_factor, max(cfg.warmup_steps - last, 1))
  return optax.join_schedules([warmup, decay], [cfg.warmup_steps])


def param_path(path) -> str:
  """A tree path as 'encoder/Conv_0/kernel', the form `optim.lr_mult` regexes match."""
  return "/".join(str(getattr(k, "key", getattr(k, "name", k))) for k in path)


def multipliers(rules, params, default=None):
  """The multiplier of each param: the first of `rules` ((regex, mult), ...) whose
  regex `re.search`es its path, else `default(param)` (1.0 when None)."""
  compiled = [(re.compile(pattern), float(mult)) for pattern, mult in rules]

  def multiplier(path, param):
    name = param_path(path)
    fallback = 1.0 if default is None else default(param)
    return next((mult for regex, mult in compiled if regex.search(name)), fallback)

  return jax.tree_util.tree_map_with_path(multiplier, params)


def decay_mask(cfg):
  """None (decay everything), or params -> each param's weight-decay multiplier:
  the first `optim.decay_mult` rule that matches, else 1 (0 for 1-D params, biases
  and norm scales/offsets, when `decay_norm_and_bias` is off). Without rules the
  multipliers are optax's bool mask, as they always were."""
  kernels_only = None if cfg.decay_norm_and_bias else (lambda p: float(p.ndim > 1))
  if not cfg.decay_mult:
    if cfg.decay_norm_and_bias:
      return None
    return lambda params: jax.tree.map(lambda p: p.ndim > 1, params)
  return DecayMultipliers(tuple(cfg.decay_mult), kernels_only)


@dataclasses.dataclass(frozen=True)
class DecayMultipliers:
  """params -> each param's float weight-decay multiplier (`decay_mask` with rules)."""

  rules: tuple
  default: Callable | None  # param -> multiplier where no rule matches; None = 1.

  def __call__(self, params):
    return multipliers(self.rules, params, self.default)


def add_decayed_weights(weight_decay: float, mask) -> optax.GradientTransformation:
  """optax.add_decayed_weights, with `mask` also returning float multipliers
  (`optim.decay_mult`: mmengine paramwise_cfg's decay_mult)."""
  if not isinstance(mask, DecayMultipliers):
    return optax.add_decayed_weights(weight_decay, mask=mask)

  def update(updates, params):
    return jax.tree.map(lambda u, p, m: u + jnp.asarray(weight_decay * m, u.dtype) * p,
                        updates, params, mask(params))

  return optax.stateless(update)


def scale_by_lr_mult(cfg) -> optax.GradientTransformation:
  """Scales final updates per param group (`optim.lr_mult`). Every optimizer here is
  linear in lr at its last stage (decoupled decay included), so this equals a
  per-group lr: mmengine paramwise_cfg's lr_mult, on the scheduled lr."""

  def update(updates, params=None):
    del params
    return jax.tree.map(lambda u, m: u * jnp.asarray(m, u.dtype), updates,
                        multipliers(cfg.lr_mult, updates))

  return optax.stateless(update)


# The optimizers get the schedule as `lr`, and `weight_decay` with its mask (decay_mask).


@OPTIMIZERS.register("sgd")
def sgd(lr, weight_decay: float, mask, *,
        momentum: Annotated[float, Arg(min=0, below=1, help="SGD momentum")] = 0.9,
        nesterov: bool = False) -> optax.GradientTransformation:
  # Decay added to the gradient before momentum, as torch.optim.SGD does.
  return optax.chain(add_decayed_weights(weight_decay, mask),
                     optax.sgd(lr, momentum=momentum or None, nesterov=nesterov))


@OPTIMIZERS.register("adam")
def adam(lr, weight_decay: float, mask, *, b1: Beta = 0.9,
         b2: Beta = 0.999) -> optax.GradientTransformation:
  """Adam with L2 decay added to the gradient (torch.optim.Adam's weight_decay)."""
  return optax.chain(add_decayed_weights(weight_decay, mask),
                     optax.adam(lr, b1=b1, b2=b2))


@OPTIMIZERS.register("adamw")
def adamw(lr, weight_decay: float, mask, *, b1: Beta = 0.9,
           b2: Beta = 0.999) -> optax.GradientTransformation:
  """AdamW with decoupled decay (scaled by lr, as torch.optim.AdamW's)."""
  if isinstance(mask, DecayMultipliers):  # optax.adamw is this chain with a bool mask.
    return optax.chain(optax.scale_by_adam(b1=b1, b2=b2), add_decayed_weights(weight_decay, mask),
                       optax.scale_by_learning_rate(lr))
  return optax.adamw(lr, b1=b1, b2=b2, weight_decay=weight_decay, mask=mask)


SECTION = Section("optim", shared={
    "name": "sgd",  # sgd | adam | adamw (python run.py --list)
    "lr": 0.01,  # Peak learning rate, reached after the warmup.
    "weight_decay": 5e-4,
    "decay_norm_and_bias": True,  # False: weight decay on kernels (ndim > 1) only.
    "schedule": "poly",  # poly | cosine | constant, after the linear warmup.
    "warmup_steps": 0,
    "clip_grad_norm": 0.0,  # Clip gradients to this global norm (0 = off).
    # Per-parameter-group lr multipliers: ((regex, multiplier), ...) matched with
    # re.search against '/'-joined param paths (e.g. 'head/Conv_0/kernel'); the
    # first match wins.
    "lr_mult": (),
    # Per-parameter-group weight-decay multipliers, matched as lr_mult: e.g. mmseg's
    # SegFormer paramwise_cfg (jaxseg/models/segformer.py MMSEG_RECIPE_OPTIM).
    "decay_mult": (),
    # The warmup starts at lr * this (mmengine LinearLR's start_factor).
    "warmup_start_factor": 0.0,
    # Warmup and decay reach their end values one step earlier, as mmengine's
    # schedulers do (build_schedule); for mmseg recipes step for step.
    "mmengine_schedule": False,
}, choices=(Choice("name", OPTIMIZERS), Choice("schedule", SCHEDULES, nested=True)))


def validate_config(optim_cfg: ml_collections.ConfigDict) -> None:
  """Fails at config load (not mid-run) on a bad `optim` section."""
  c = Checker(optim_cfg, "optim")
  c.choice("name", OPTIMIZERS.names(), "optimizer")
  c.choice("schedule", SCHEDULES.names(), "schedule")
  c.number("lr", above=0)
  for key in ("weight_decay", "clip_grad_norm"):
    c.number(key, min=0)
  c.count("warmup_steps", min=0)
  c.regex_rules("lr_mult")
  c.regex_rules("decay_mult")
  c.number("warmup_start_factor", min=0, max=1)


def build_optimizer(cfg: ml_collections.ConfigDict, total_steps: int):
  """Returns (optax transformation, schedule) from `cfg.optim`.

  Order: clip the (accumulated) gradient by global norm, run the named
  optimizer, then scale each param group's update by its lr multiplier.
  """
  schedule = build_schedule(cfg, total_steps)
  parts = [OPTIMIZERS.build(cfg.name, cfg, lr=schedule, weight_decay=cfg.weight_decay,
                            mask=decay_mask(cfg))]
  if cfg.clip_grad_norm > 0:
    parts.insert(0, optax.clip_by_global_norm(cfg.clip_grad_norm))
  if cfg.lr_mult:
    parts.append(scale_by_lr_mult(cfg))
  return optax.chain(*parts) if len(parts) > 1 else parts[0], schedule

"""Every loss against an independent numpy reference (published formulas, loops)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxseg import losses
from jaxseg.config.resolve import build_config
from jaxseg.errors import ConfigError

C = 4
IGNORE = 255


def _case(kind, seed=0):
  """logits (2, 5, 6, C), labels with ignore pixels; class 3 never appears."""
  rng = np.random.default_rng(seed)
  logits = rng.normal(0, 2.0, (2, 5, 6, C)).astype(np.float32)
  labels = rng.integers(0, C - 1, (2, 5, 6))
  labels[rng.random(labels.shape) < 0.25] = IGNORE
  if kind == "ignore_image":
    labels[1] = IGNORE
  elif kind == "all_ignore":
    labels[:] = IGNORE
  return logits, labels


def _cfg(terms="cross_entropy", **args):
  """The `loss` section of the single loss `terms` with its arguments `args` (one it
  does not take fails)."""
  return losses.SECTION.config(terms=terms, **({terms: args} if args else {}))


def _np_log_softmax(x):
  x = x.astype(np.float64)
  m = x.max(-1, keepdims=True)
  return x - m - np.log(np.exp(x - m).sum(-1, keepdims=True))


def _pixels(logits, labels):
  """(log-probs N x C, labels N) of the valid pixels only, as the references see them."""
  valid = labels.ravel() != IGNORE
  return _np_log_softmax(logits.reshape(-1, C))[valid], labels.ravel()[valid]


def ref_cross_entropy(logits, labels, w, eps):
  """torch.nn.functional.cross_entropy(weight=w, label_smoothing=eps, reduction='mean')."""
  logp, y = _pixels(logits, labels)
  num = sum((1 - eps) * -w[t] * lp[t] + eps / C * -(w * lp).sum() for lp, t in zip(logp, y))
  den = sum(w[t] for t in y)
  return num / den if den else 0.0


def ref_sigmoid_bce(logits, labels):
  valid = labels.ravel() != IGNORE
  x = logits.reshape(-1, C)[valid].astype(np.float64)
  y = np.eye(C)[labels.ravel()[valid]]
  p = 1 / (1 + np.exp(-x))
  return float(np.mean(-(y * np.log(p) + (1 - y) * np.log(1 - p)))) if len(x) else 0.0


def ref_focal(logits, labels, gamma, alpha):
  logp, y = _pixels(logits, labels)
  per = [-alpha * (1 - math.exp(lp[t])) ** gamma * lp[t] for lp, t in zip(logp, y)]
  return float(np.mean(per)) if per else 0.0


def _tp_fp_fn(logits, labels, mode):
  logp, y = _pixels(logits, labels)
  p = np.exp(logp)
  t = np.eye(C)[y] if len(y) else np.zeros((0, C))
  tp, fp, fn = (p * t).sum(0), (p * (1 - t)).sum(0), ((1 - p) * t).sum(0)
  if mode == "global":
    tp, fp, fn = tp.sum(), fp.sum(), fn.sum()
  return tp, fp, fn


def _mean_ratio(num, den):
  """Empty regions (0/0) count as perfect overlap."""
  return np.mean(np.where(den > 0, num / np.where(den > 0, den, 1), 1.0))


def ref_dice(logits, labels, smooth, mode):
  """Soft Dice (Milletari et al.): 1 - (2 TP + s) / (2 TP + FP + FN + s)."""
  tp, fp, fn = _tp_fp_fn(logits, labels, mode)
  return 1 - _mean_ratio(2 * tp + smooth, 2 * tp + fp + fn + smooth)


def ref_tversky(logits, labels, alpha, beta, smooth, mode):
  """Tversky index (Salehi et al.): 1 - (TP + s) / (TP + alpha FP + beta FN + s)."""
  tp, fp, fn = _tp_fp_fn(logits, labels, mode)
  return 1 - _mean_ratio(tp + smooth, tp + alpha * fp + beta * fn + smooth)


def ref_lovasz_grad(gt_sorted):
  """Port of Berman et al.'s lovasz_grad."""
  gts = gt_sorted.sum()
  intersection = gts - gt_sorted.cumsum()
  union = gts + (1 - gt_sorted).cumsum()
  jaccard = 1.0 - intersection / union
  jaccard[1:] = jaccard[1:] - jaccard[:-1]
  return jaccard


def ref_lovasz_flat(probas, labels):
  """Port of lovasz_softmax_flat(classes='present'); ignored pixels already removed."""
  if len(probas) == 0:
    return 0.0
  losses_c = []
  for c in range(C):
    fg = (labels == c).astype(np.float64)
    if fg.sum() == 0:
      continue
    errors = np.abs(fg - probas[:, c])
    perm = np.argsort(-errors, kind="stable")
    losses_c.append(np.dot(errors[perm], ref_lovasz_grad(fg[perm])))
  return float(np.mean(losses_c))


def ref_lovasz(logits, labels, per_image):
  if per_image:
    return float(np.mean([ref_lovasz(l[None], y[None], False) for l, y in zip(logits, labels)]))
  logp, y = _pixels(logits, labels)
  return ref_lovasz_flat(np.exp(logp), y)


def ref_ohem(logits, labels, thresh, min_kept, w, eps):
  """mmseg OHEMPixelSampler (thresh mode), then CE averaged over the kept pixels."""
  logp, y = _pixels(logits, labels)
  prob = np.exp(logp[np.arange(len(y)), y])
  sort_prob = np.sort(prob)
  batch_kept = min_kept * logits.shape[0]
  min_threshold = sort_prob[min(batch_kept, len(sort_prob) - 1)] if len(sort_prob) else 0.0
  kept = prob < max(min_threshold, thresh)
  num = sum((1 - eps) * -w[t] * lp[t] + eps / C * -(w * lp).sum()
            for lp, t, k in zip(logp, y, kept) if k)
  den = sum(w[t] for t, k in zip(y, kept) if k)
  return num / den if den else 0.0


def ref_topk(logits, labels, ratio):
  logp, y = _pixels(logits, labels)
  ce = np.sort(-logp[np.arange(len(y)), y])[::-1]
  k = math.ceil(ratio * len(ce))
  return float(ce[:k].mean()) if k else 0.0


W4 = np.array([0.5, 2.0, 1.0, 3.0])
CASES = {
    "ce": ("cross_entropy", {}, lambda l, y: ref_cross_entropy(l, y, np.ones(C), 0.0)),
    "ce_weighted_smooth": ("cross_entropy",
                           {"class_weights": tuple(W4), "label_smoothing": 0.1},
                           lambda l, y: ref_cross_entropy(l, y, W4, 0.1)),
    "bce": ("binary_cross_entropy", {}, ref_sigmoid_bce),
    "focal": ("focal", {"gamma": 2.0, "alpha": 0.25},
              lambda l, y: ref_focal(l, y, 2.0, 0.25)),
    "dice": ("dice", {"smooth": 1.0},
             lambda l, y: ref_dice(l, y, 1.0, "per_class")),
    "dice_global": ("dice", {"smooth": 0.5, "mode": "global"},
                    lambda l, y: ref_dice(l, y, 0.5, "global")),
    "tversky": ("tversky", {"alpha": 0.3, "beta": 0.7, "smooth": 1.0},
                lambda l, y: ref_tversky(l, y, 0.3, 0.7, 1.0, "per_class")),
    "lovasz": ("lovasz", {}, lambda l, y: ref_lovasz(l, y, False)),
    "per_image": ("lovasz", {"per_image": True},
                         lambda l, y: ref_lovasz(l, y, True)),
    "ohem": ("ohem", {"thresh": 0.3, "min_kept": 5},
             lambda l, y: ref_ohem(l, y, 0.3, 5, np.ones(C), 0.0)),
    "min_kept": ("ohem", {"thresh": 0.05, "min_kept": 12,
                               "class_weights": tuple(W4)},
                      lambda l, y: ref_ohem(l, y, 0.05, 12, W4, 0.0)),
    "topk": ("topk", {"ratio": 0.3}, lambda l, y: ref_topk(l, y, 0.3)),
}


@pytest.mark.parametrize("kind", ["mixed", "ignore_image", "all_ignore"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_loss_matches_reference_and_has_finite_grads(case, kind):
  name, updates, reference = CASES[case]
  logits, labels = _case(kind)
  fn = losses.term(name, _cfg(name, **updates))
  args = (jnp.asarray(labels), jnp.asarray(labels != IGNORE))
  got = float(jax.jit(lambda x: fn(x, *args))(jnp.asarray(logits)))
  np.testing.assert_allclose(got, reference(logits, labels), rtol=2e-5, atol=1e-6)
  grads = jax.grad(lambda x: fn(x, *args))(jnp.asarray(logits))
  assert np.all(np.isfinite(grads))
  if kind == "all_ignore":
    assert got == 0.0 and not np.any(grads)


def test_binary_mode_uses_one_logit_or_the_difference():
  rng = np.random.default_rng(1)
  labels = rng.integers(0, 2, (2, 4, 4))
  labels[0, 0] = IGNORE
  valid = labels != IGNORE
  x = rng.normal(0, 3, (2, 4, 4)).astype(np.float64)
  y = (labels == 1)[valid]
  p = 1 / (1 + np.exp(-x[valid]))
  expected = np.mean(-(y * np.log(p) + (1 - y) * np.log(1 - p)))
  fn = losses.term("binary_cross_entropy", _cfg("binary_cross_entropy", binary=True))
  one = fn(jnp.asarray(x[..., None], jnp.float32), labels, valid)
  two_channels = np.stack([np.full_like(x, 1.5), x + 1.5], -1).astype(np.float32)
  two = fn(jnp.asarray(two_channels), labels, valid)
  np.testing.assert_allclose([float(one), float(two)], [expected, expected], rtol=1e-5)


def test_focal_with_gamma_0_is_cross_entropy_and_extreme_logits_stay_finite():
  logits, labels = _case("mixed")
  args = (jnp.asarray(labels), jnp.asarray(labels != IGNORE))
  ce = losses.term("cross_entropy", _cfg())(jnp.asarray(logits), *args)
  fl = losses.term("focal", _cfg("focal", gamma=0.0, alpha=1.0))(
      jnp.asarray(logits), *args)
  np.testing.assert_allclose(float(fl), float(ce), rtol=1e-6)
  huge = jnp.asarray(logits * 1e4)
  for name in losses.LOSSES.names():
    g = jax.grad(lambda x: losses.term(name, _cfg(name))(x, *args))(huge)
    assert np.all(np.isfinite(g)), name


def test_make_loss_combines_weighted_terms_and_aux():
  logits, labels = _case("mixed")
  cfg = losses.SECTION.config(terms="cross_entropy:1.0, dice:0.5", aux_weight=0.4)
  fn = losses.make_loss(cfg, IGNORE)
  aux = {"aux_logits": jnp.asarray(logits[::-1].copy())}
  total, terms = fn(jnp.asarray(logits), aux, jnp.asarray(labels))
  ce = ref_cross_entropy(logits, labels, np.ones(C), 0.0)
  dice = ref_dice(logits, labels, 1.0, "per_class")
  aux_ce = ref_cross_entropy(logits[::-1], labels, np.ones(C), 0.0)
  aux_dice = ref_dice(logits[::-1], labels, 1.0, "per_class")
  np.testing.assert_allclose(float(terms["cross_entropy"]), ce, rtol=1e-5)
  np.testing.assert_allclose(float(terms["dice"]), dice, rtol=1e-5)
  np.testing.assert_allclose(float(total), ce + 0.5 * dice + 0.4 * (aux_ce + 0.5 * aux_dice),
                             rtol=1e-5)


def test_parse_terms():
  assert losses.parse_terms("dice") == (("dice", 1.0),)
  assert losses.parse_terms(" cross_entropy:1 ,lovasz:0.25") == (("cross_entropy", 1.0),
                                                                 ("lovasz", 0.25))


@pytest.mark.parametrize("override, message", [
    ("loss.terms=cross_entropy:1,dcie:0.5", "did you mean 'dice'"),
    ("loss.terms=dice:half", "'half' of 'dice' is not a number"),
    ("loss.terms=", "loss.terms is empty"),
    ("loss.dice.mode=micro", r"loss.dice.mode='micro': expected one of \['per_class', 'global'\]"),
    ("loss.dice.mode=globl", "did you mean 'global'"),
    ("loss.dice.smooth=-1", r"loss.dice.smooth=-1.0: expected a number >= 0"),
    ("loss.dice.smoth=2", "unknown config key 'loss.dice.smoth'; did you mean 'loss.dice.smooth'"),
    ("loss.focal.gamma=2", "'loss.focal.gamma' does not apply to the chosen loss dice "
                           r"\(it is a key of loss focal\)"),
    ("eval.mode=sliding", "eval.mode='sliding'"),
])
def test_bad_loss_config_fails_at_load(override, message):
  with pytest.raises(ConfigError, match=message):
    build_config("demo", ["loss.terms=dice", override])


@pytest.mark.parametrize("terms, override, message", [
    ("focal", "loss.focal.alpha=0", r"loss.focal.alpha=0.0: expected a number > 0"),
    ("ohem", "loss.ohem.thresh=1.5", r"loss.ohem.thresh=1.5: expected a number > 0 and <= 1"),
    ("ohem", "loss.ohem.min_kept=-1", r"loss.ohem.min_kept=-1: expected an int >= 0"),
    ("topk", "loss.topk.ratio=0", r"loss.topk.ratio=0.0: expected a number > 0 and <= 1"),
    ("cross_entropy", "loss.cross_entropy.label_smoothing=1",
     r"label_smoothing=1.0: expected a number >= 0 and < 1"),
    ("cross_entropy", "loss.cross_entropy.class_weights=(1,-1)",
     r"class_weights=\(1, -1\): expected numbers each >= 0"),
    ("tversky", "loss.tversky.beta=-0.5", r"loss.tversky.beta=-0.5: expected a number >= 0"),
])
def test_declared_ranges_are_checked_at_load(terms, override, message):
  """Each range lives in the loss's signature (pixel.py, region.py) and stops the run at load."""
  with pytest.raises(ConfigError, match=message):
    build_config("demo", [f"loss.terms={terms}", override])


def test_each_term_keeps_its_own_arguments():
  """Two terms that take an argument of the same name hold one value each (the flat
  layout shared `dice_smooth` between dice and tversky)."""
  cfg = build_config("demo", ["loss.terms=dice:1,tversky:1", "loss.dice.smooth=0.5",
                              "loss.tversky.smooth=2"])
  assert (cfg.loss.dice.smooth, cfg.loss.tversky.smooth) == (0.5, 2.0)
  logits, labels = _case("mixed")
  args = (jnp.asarray(logits), jnp.asarray(labels), jnp.asarray(labels != IGNORE))
  np.testing.assert_allclose(float(losses.term("dice", cfg.loss)(*args)),
                             ref_dice(logits, labels, 0.5, "per_class"), rtol=2e-5)
  np.testing.assert_allclose(float(losses.term("tversky", cfg.loss)(*args)),
                             ref_tversky(logits, labels, 0.3, 0.7, 2.0, "per_class"), rtol=2e-5)


def test_loss_variant_and_override_select_terms():
  assert build_config("demo:loss=lovasz").loss.terms == "lovasz"
  cfg = build_config("demo", ["loss.terms=cross_entropy:1.0,dice:0.5"])
  assert losses.parse_terms(cfg.loss.terms) == (("cross_entropy", 1.0), ("dice", 0.5))
  with pytest.raises(ConfigError, match="did you mean 'lovasz'"):
    build_config("demo:loss=lovaz")

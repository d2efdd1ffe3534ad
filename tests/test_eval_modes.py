"""Evaluation modes: slide and aug reduce to whole where they must, on padded canvases."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxseg.config.resolve import build_config
from jaxseg.evaluation import inference

K = 5
SIZES = np.array([[32, 48], [20, 31], [32, 17], [9, 9]], np.int32)  # Canvas is 32 x 48.


def _eval_cfg(**changes):
  cfg = build_config("demo:smoke", [])
  with cfg.unlocked():
    cfg.eval.update(changes)
  return cfg.eval


def _canvas(seed=0):
  x = np.random.default_rng(seed).normal(size=(len(SIZES), 32, 48, 3)).astype(np.float32)
  for i, (h, w) in enumerate(SIZES):
    x[i, h:], x[i, :, w:] = 0, 0  # Padding, as the eval pipeline makes it.
  return jnp.asarray(x)


def _pointwise(seed=1):
  """A 1x1-conv model: translation- and flip-equivariant, so every mode must agree."""
  w = jnp.asarray(np.random.default_rng(seed).normal(size=(3, K)), jnp.float32)
  return lambda x, valid: jnp.einsum("bhwc,ck->bhwk", x, w)


def _conv(seed=2):
  """A 3x3 conv: not flip-equivariant, sees its neighbours (and padding)."""
  w = jnp.asarray(np.random.default_rng(seed).normal(size=(3, 3, 3, K)), jnp.float32)
  return lambda x, valid: jax.lax.conv_general_dilated(
      x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))


def _valid(probs):
  return [np.asarray(probs[i, :h, :w]) for i, (h, w) in enumerate(SIZES)]


def _assert_same(a, b, atol=1e-6):
  for x, y in zip(_valid(a), _valid(b)):
    np.testing.assert_allclose(x, y, atol=atol)


def _probs(apply_fn, **changes):
  fn = jax.jit(lambda x, s: inference.predict_probs(apply_fn, x, s, _eval_cfg(**changes)))
  return fn(_canvas(), jnp.asarray(SIZES))


def test_slide_with_window_equal_to_canvas_is_whole():
  whole = _probs(_conv(), mode="whole")
  np.testing.assert_allclose(_probs(_conv(), mode="slide", crop_size=(32, 48), stride=(5, 7)),
                             whole, atol=1e-6)  # Window bigger than the canvas too:
  np.testing.assert_allclose(_probs(_conv(), mode="slide", crop_size=(64, 64), stride=(8, 8)),
                             whole, atol=1e-6)


def test_overlapping_windows_cover_every_valid_pixel_and_average_exactly():
  # A pointwise model gives the same logits in every window, so the count-map
  # average equals whole-image inference wherever the image is.
  _assert_same(_probs(_pointwise(), mode="slide", crop_size=(16, 16), stride=(10, 12)),
               _probs(_pointwise(), mode="whole"))


def test_aug_with_unit_scale_and_no_flip_is_whole():
  _assert_same(_probs(_conv(), mode="aug", scales=(1.0,), flip=False),
               _probs(_conv(), mode="whole"), atol=0)


def test_flip_of_a_flip_equivariant_model_changes_nothing():
  # Flips mirror within each image's own width; a padding leak would break this.
  _assert_same(_probs(_pointwise(), mode="aug", scales=(1.0,), flip=True),
               _probs(_pointwise(), mode="whole"))


def test_flip_changes_a_non_symmetric_model():
  flipped = _probs(_conv(), mode="aug", scales=(1.0,), flip=True)
  assert not np.allclose(flipped, _probs(_conv(), mode="whole"), atol=1e-4)


def test_multiscale_probabilities_are_distributions_on_the_canvas():
  probs = _probs(_conv(), mode="aug", scales=(0.5, 0.75, 1.25), flip=True, size_divisor=8)
  assert probs.shape == (len(SIZES), 32, 48, K)
  np.testing.assert_allclose(np.asarray(probs).sum(-1), 1.0, atol=1e-5)


def test_unknown_mode_fails_at_config_load():
  from jaxseg.errors import ConfigError

  with pytest.raises((ConfigError, ValueError), match="eval.mode"):
    build_config("demo:smoke", ["eval.mode=multiscale"])


def test_sharded_eval_step_counts_every_valid_pixel_once(shapes_dir):
  from jaxseg.data import datasets
  from jaxseg.evaluation import evaluate
  from jaxseg.runtime.build import build
  from jaxseg.runtime.sharding import make_mesh

  base = [f"data.dir={shapes_dir}", "model.width=4", "eval.batch_size=8"]
  dataset = datasets.prepare(build_config("demo:smoke", base).data)
  meta, mesh = datasets.meta_of(dataset), make_mesh()
  whole = build(build_config("demo:smoke", base), meta, mesh)
  source = dataset.as_data_source("validation")
  first = [source[i] for i in range(12)]  # 12 examples: the second batch is padded.

  def confusion(run):
    return evaluate.evaluate_split(run.eval_step, whole.state, first, run.cfg, run.meta,
                                   run.mesh).confusion

  expected = confusion(whole)
  assert expected.sum() == sum((np.asarray(_label(r)) != 255).sum() for r in first)
  # Window = canvas, and aug at scale 1 without flip: the same confusion as whole.
  for extra in (["eval.mode=slide", "eval.crop_size=(64,64)", "eval.stride=(32,32)"],
                ["eval.mode=aug", "eval.scales=(1.0,)", "eval.flip=false"]):
    run = build(build_config("demo:smoke", base + extra), meta, mesh, abstract=True)
    np.testing.assert_array_equal(confusion(run), expected)


def _label(record):
  from jaxseg.data.pipeline import _Decode

  return _Decode().map(record)["label"]

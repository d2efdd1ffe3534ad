"""The `voc` train augmentation equals mmseg's own train pipeline for the same random draws.

mmseg's RandomResize, RandomCrop(cat_max_ratio), RandomFlip and
PhotoMetricDistortion are built from its shipped pascal_voc12.py config, then
PackSegInputs and the model's SegDataPreProcessor pad the batch. Both sides
read one scripted sequence of uniforms through their own calls (numpy's
global random functions for mmseg, the generator for jaxseg), so equal outputs
mean equal resize sizes, crop windows (retries included), flips, photometric
formulas and padding, and an equal number of draws.
"""

import numpy as np
import pytest

from experiments import _voc
from jaxseg.data import augment as A
from tests.mmseg_oracle import config_path, require

pytestmark = pytest.mark.parity

MEAN, STD = (123.675, 116.28, 103.53), (58.395, 57.12, 57.375)


class Script:
  """Uniforms in [0, 1) handed out one per random call, whatever the call's API."""

  def __init__(self, uniforms):
    self.uniforms, self.used = list(uniforms), 0

  def _next(self) -> float:
    u = self.uniforms[self.used]
    self.used += 1
    return u

  def random(self, *shape):  # Generator.random / np.random.random_sample
    assert not shape
    return self._next()

  def uniform(self, low=0.0, high=1.0):
    return low + (high - low) * self._next()

  def integers(self, low, high=None):  # Generator.integers / np.random.randint
    low, high = (0, low) if high is None else (low, high)
    assert high > low
    return low + int(self._next() * (high - low))

  def choice(self, options, p):
    return options[int(np.searchsorted(np.cumsum(p), self._next(), side="right"))]


@pytest.fixture(scope="module")
def mmseg_train():
  """(transforms, preprocessor) of mmseg's VOC train pipeline, from its config files."""
  require("mmseg")
  from mmengine.config import Config
  from mmseg.registry import MODELS, TRANSFORMS
  from mmseg.utils import register_all_modules

  register_all_modules()
  data = Config.fromfile(config_path("_base_/datasets/pascal_voc12.py"))
  model = Config.fromfile(config_path("_base_/models/fcn_r50-d8.py"))
  names = [t["type"] for t in data.train_pipeline]
  assert names == ["LoadImageFromFile", "LoadAnnotations", "RandomResize", "RandomCrop",
                   "RandomFlip", "PhotoMetricDistortion", "PackSegInputs"]
  ops = [TRANSFORMS.build(t) for t in data.train_pipeline[2:]]
  preprocessor = MODELS.build(dict(model.data_preprocessor, size=data.crop_size))
  return ops, preprocessor


def _mmseg_augment(mmseg_train, image_HW3, label_HW, script, monkeypatch):
  ops, preprocessor = mmseg_train
  for name in ("random_sample", "randint", "uniform", "choice"):
    api = {"random_sample": script.random, "randint": script.integers}.get(name)
    monkeypatch.setattr(np.random, name, api or getattr(script, name))
  results = {"img": np.ascontiguousarray(image_HW3[..., ::-1]), "gt_seg_map": label_HW.copy(),
             "seg_fields": ["gt_seg_map"], "img_shape": label_HW.shape,
             "ori_shape": label_HW.shape, "img_path": "x.jpg", "seg_map_path": "x.png",
             "reduce_zero_label": False}
  for op in ops:
    results = op(results)
  monkeypatch.undo()
  batch = preprocessor({"inputs": [results["inputs"]], "data_samples": [results["data_samples"]]},
                       training=True)
  inputs = batch["inputs"][0].permute(1, 2, 0).numpy()
  return inputs, batch["data_samples"][0].gt_sem_seg.data[0].numpy()


def _example(seed, H=375, W=500):
  """A smooth image (so resizes are exercised) and a label mostly one class, plus ignore."""
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[0:H, 0:W] / max(H, W)
  image = np.stack([np.sin(7 * yy + c) * np.cos(5 * xx - c) for c in range(3)], -1)
  image = (127.5 + 120 * image + rng.normal(0, 6, image.shape)).clip(0, 255).astype(np.uint8)
  label = np.zeros((H, W), np.uint8)
  label[H // 3:H // 2, W // 4:W // 2] = 7
  label[:, :4] = 255
  label[-30:, -40:] = 15
  return image, label


def _voc_augment():
  return A.build_augment(A.SECTION.config(**_voc.mmseg_voc_augment()), 255)


# Uniforms, in draw order: ratio, crop windows (2 each, 11 when every retry fails),
# flip (< 0.5 flips), photometric coins (>= 0.5 is on) and values. `small`: ratio
# near 0.5, so the crop is the whole (smaller) image, padded; flipped; every
# photometric part on, contrast first. `large`: ratio near 2, not flipped, all
# parts off, contrast last. The rest: seeded uniforms.
SCENARIOS = {
    "small_all_on": [0.02] + [0.5] * 22 + [0.1, 0.9, 0.7, 0.9, 0.9, 0.3, 0.9, 0.8, 0.9, 0.6],
    "large_all_off": [0.97] + [0.4] * 22 + [0.6, 0.2, 0.1, 0.3, 0.4, 0.2],
    "random_0": list(np.random.default_rng(0).random(64)),
    "random_1": list(np.random.default_rng(1).random(64)),
    "random_2": list(np.random.default_rng(2).random(64)),
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
@pytest.mark.parametrize("shape", [(375, 500), (500, 333)])
def test_voc_augment_equals_mmseg_train_pipeline(mmseg_train, monkeypatch, name, shape):
  image, label = _example(len(name), *shape)
  theirs = Script(SCENARIOS[name])
  their_x, their_label = _mmseg_augment(mmseg_train, image, label, theirs, monkeypatch)
  ours = Script(SCENARIOS[name])
  out = _voc_augment()({"image": image, "label": label}, ours)
  assert ours.used == theirs.used  # The same draws, one for one.
  np.testing.assert_array_equal(out["label"], their_label)
  x = (out["image"].astype(np.float32) - np.float32(MEAN)) / np.float32(STD)
  inside = their_label != 255  # mmseg pads after normalising (0); ours pads the mean colour.
  real = np.zeros(their_label.shape, bool)
  h, w = _unpadded_size(their_x)
  real[:h, :w] = True
  np.testing.assert_allclose(x[real], their_x[real], atol=1e-5)
  assert np.abs(x[~real]).max(initial=0) < 0.01 and (their_x[~real] == 0).all()
  assert inside[~real].sum() == 0


def _unpadded_size(x_HWC):
  """The size of mmseg's crop before padding: the bottom/right block of exact zeros."""
  nonzero = np.abs(x_HWC).sum(-1) > 0
  return int(nonzero.any(1).nonzero()[0].max()) + 1, int(nonzero.any(0).nonzero()[0].max()) + 1


def test_scripted_scenarios_reach_retries_and_padding():
  """The scripted cases reach what they are meant to: every crop retry, padding or not."""
  image, label = _example(0)
  used, padded = [], []
  for name in ("small_all_on", "large_all_off"):
    script = Script(SCENARIOS[name])
    out = _voc_augment()({"image": image, "label": label}, script)
    used.append(script.used)
    padded.append(bool((out["label"][-1] == 255).all()))
  # 1 ratio + 11 windows (10 retries) x 2 + flip + photometric (9 draws all on, 5 all off).
  assert used == [33, 29] and padded == [True, False]

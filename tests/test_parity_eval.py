"""eval.protocol=resize is mmseg's test pipeline, piece by piece, against independent code.

- per-example resizes inside jit equal torch's F.interpolate(bilinear, align_corners=False);
- the host resize equals mmcv's Resize(scale=(2048, 512), keep_ratio=True);
- the real eval path (eval_batches -> make_eval_step) on bucketed canvases gives
  the labels of a torch reference that runs each image alone, unpadded, with
  mmseg's two logit resizes, for a model with a stride-4 head and a global pool
  (so a padding leak or a missing valid mask would show).
"""

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxseg.config.resolve import build_config
from jaxseg.data import pipeline, transforms
from jaxseg.evaluation import evaluate
from jaxseg.models import resample
from jaxseg.models.layers import global_mean
from tests.mmseg_oracle import require

pytestmark = pytest.mark.parity

MEAN, STD = (123.675, 116.28, 103.53), (58.395, 57.12, 57.375)


def test_resize_within_equals_torch_interpolate():
  torch = require("torch")
  F = torch.nn.functional
  rng = np.random.default_rng(0)
  in_sizes = np.array([[13, 17], [8, 11], [16, 20]], np.int32)
  out_sizes = np.array([[50, 67], [5, 29], [16, 20]], np.int32)
  x = rng.normal(size=(3, 16, 20, 4)).astype(np.float32)
  for i, (h, w) in enumerate(in_sizes):
    x[i, h:], x[i, :, w:] = 1e3, 1e3  # Padding that must never be read.
  out = np.asarray(resample.resize_within(jnp.asarray(x), jnp.asarray(in_sizes),
                                          jnp.asarray(out_sizes), (52, 70)))
  for i, ((h, w), (oh, ow)) in enumerate(zip(in_sizes, out_sizes)):
    ref = F.interpolate(torch.from_numpy(x[i:i + 1, :h, :w]).permute(0, 3, 1, 2), size=(oh, ow),
                        mode="bilinear", align_corners=False).permute(0, 2, 3, 1).numpy()[0]
    np.testing.assert_allclose(out[i, :oh, :ow], ref, atol=1e-5)
    assert not out[i, oh:].any() and not out[i, :, ow:].any()


@pytest.mark.parametrize("shape", [(375, 500), (500, 375), (333, 500), (100, 500), (512, 512)])
def test_eval_resize_equals_mmcv_resize(shape):
  require("mmcv")
  from mmcv.transforms import Resize

  image = np.random.default_rng(1).integers(0, 256, (*shape, 3), dtype=np.uint8)
  theirs = Resize(scale=(2048, 512), keep_ratio=True)({"img": image[..., ::-1].copy()})["img"]
  record = {"image": image, "label": np.zeros((*shape, 1), np.uint8)}
  ours = pipeline._ResizeForEval((512, 512), 255, (2048, 512)).map(pipeline._Decode().map(record))
  np.testing.assert_array_equal(ours["image"], theirs[..., ::-1])
  assert tuple(ours["resized_HW"]) == theirs.shape[:2] and tuple(ours["size_HW"]) == shape


STRIDE, K = 4, 5


class _Head(nn.Module):
  """Stride-s features (pixel (s*i, s*j), as a ResNet's grid), plus their valid-pixel mean."""

  stride: int
  pooled: bool

  @nn.compact
  def __call__(self, x_BHWC, *, valid_BHW):
    features = x_BHWC[:, ::self.stride, ::self.stride]
    logits = nn.Dense(K, name="local")(features)
    if self.pooled:
      logits += nn.Dense(K, name="pooled")(global_mean(features, valid_BHW, self.stride))
    return logits


class _Segmentor(nn.Module):
  stride: int = STRIDE
  pooled: bool = True

  @nn.compact
  def __call__(self, x_BHWC, *, train, valid_BHW=None):
    del train
    logits = _Head(self.stride, self.pooled, name="classifier")(x_BHWC, valid_BHW=valid_BHW)
    return jax.image.resize(logits, (*x_BHWC.shape[:3], K), "bilinear"), {}


@flax.struct.dataclass
class _State:
  params: dict

  def variables(self):
    return {"params": self.params}


def _reference_labels(torch, params, image_HW3, scale, stride=STRIDE):
  """mmseg's arithmetic in torch on one unpadded image: resize, head, two logit resizes."""
  F = torch.nn.functional
  H, W = image_HW3.shape[:2]
  h, w = transforms.rescaled_size(H, W, 1.0, scale)
  resized = transforms.resize_image(image_HW3, (h, w)).astype(np.float32)
  x = torch.from_numpy((resized - np.float32(MEAN)) / np.float32(STD))
  features = x[::stride, ::stride]
  p = {k: {n: torch.from_numpy(np.asarray(v)) for n, v in d.items()}
       for k, d in params["classifier"].items()}
  logits = features @ p["local"]["kernel"] + p["local"]["bias"]
  if "pooled" in p:
    logits = logits + features.mean((0, 1)) @ p["pooled"]["kernel"] + p["pooled"]["bias"]
  logits = logits.permute(2, 0, 1)[None]
  logits = F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)
  logits = F.interpolate(logits, size=(H, W), mode="bilinear", align_corners=False)
  return logits[0].argmax(0).numpy()


def _records():
  rng = np.random.default_rng(2)
  records = []
  for H, W in [(50, 37), (37, 50), (33, 50), (50, 50), (20, 50)]:
    yy, xx = np.mgrid[0:H, 0:W]
    image = np.stack([np.sin(yy / 3 + c) * np.cos(xx / 4 - c) for c in range(3)], -1)
    image = (128 + 100 * image + rng.normal(0, 10, image.shape)).clip(0, 255).astype(np.uint8)
    label = rng.integers(0, K, (H, W, 1)).astype(np.uint8)
    label[:3, :, 0] = 255
    records.append({"image": image, "label": label})
  return records


def _predict(records, *overrides, model=None):
  """(predictions cropped to each image, canvases seen, params) of the real eval step."""
  cfg = build_config("demo:smoke", ["eval.protocol=resize", "eval.resize_scale=(128,64)",
                                    "eval.resize_bucket=32", "eval.batch_size=2",
                                    f"augment.mean={MEAN}", f"augment.std={STD}", *overrides])
  model = model or _Segmentor()
  params = model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)), train=False)["params"]
  state = _State(params)
  step = jax.jit(evaluate.make_eval_step(model, cfg, K, 255))
  preds, canvases = [], set()
  for batch in pipeline.eval_batches(records, cfg, (64, 64), 255):
    canvases.add(batch["image"].shape[1:3])
    _, pred = step(state, batch)
    preds += [np.asarray(pred[i, :h, :w]) for i, (h, w) in enumerate(batch["size_HW"])
              if batch["example_mask"][i]]
  return preds, canvases, params


def test_resize_protocol_eval_step_equals_unpadded_reference():
  torch = require("torch")
  records = _records()
  preds, canvases, params = _predict(records)
  # Resized short side 64 (20x50: long side 128 binds, 51x128), batches of 2 on canvases
  # rounded up to 32: a landscape + portrait pair needs a square one.
  assert canvases == {(96, 96), (64, 128)}, canvases
  for (record, pred) in zip(records, preds, strict=True):
    expected = _reference_labels(torch, params, record["image"], (128, 64))
    np.testing.assert_array_equal(pred, expected)


@pytest.mark.parametrize("mode, agreement", [
    (["eval.mode=slide", "eval.crop_size=(32,32)", "eval.stride=(16,16)"], 1.0),
    (["eval.mode=aug", "eval.scales=(1.0,)", "eval.flip=true"], 0.98)])
def test_resize_protocol_composes_with_slide_and_aug(mode, agreement):
  """Both run on the resized image and come back at the original size. A pointwise model
  (stride 1, no pooling: windows and flips change nothing) must give the reference labels;
  aug averages probabilities, not logits, before the last resize, so a few ties may move."""
  torch = require("torch")
  records = _records()
  preds, _, params = _predict(records, *mode, model=_Segmentor(stride=1, pooled=False))
  for record, pred in zip(records, preds, strict=True):
    expected = _reference_labels(torch, params, record["image"], (128, 64), stride=1)
    assert pred.shape == expected.shape and (pred == expected).mean() >= agreement

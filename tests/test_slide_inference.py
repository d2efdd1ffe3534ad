"""Sliding-window inference equals mmseg's own `EncoderDecoder.slide_inference`, and its memory
does not grow with the number of windows.

The model is a small stride-4 conv net with the same random weights in torch and
in Flax (a `classifier` submodule, masked to the real pixels like jaxseg's
segmentors). mmseg's side is its `slide_inference` method itself, run per image
at the image's own size, with `encode_decode` as mmseg's: the net's logits
resized to each crop's size. jaxseg's side is the real path, `inference.native_probs`
and `slide_logits`, with one padded canvas holding every image at once.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxseg.config.resolve import build_config
from jaxseg.evaluation import inference
from jaxseg.models.layers import resize_bilinear
from tests.mmseg_oracle import require

K, WIDTH = 5, 6
MEAN, STD = (123.675, 116.28, 103.53), (58.395, 57.12, 57.375)
CANVAS = (64, 128)
# 64x128: the brief's grid (3 x 5 windows); not multiples of the stride; smaller than the
# window in one side, in both.
SIZES = np.array([[64, 128], [50, 77], [20, 77], [27, 30]], np.int32)
CROP, STRIDE = (32, 32), (24, 24)


class TinyNet(nn.Module):
  """conv3x3/2 - ReLU - conv3x3/2 - ReLU - classifier 1x1: head logits at stride 4."""

  @nn.compact
  def __call__(self, x, *, train: bool, valid_BHW=None):
    del train
    valid = jnp.ones(x.shape[:3], bool) if valid_BHW is None else valid_BHW
    for name in ("conv1", "conv2"):
      x = nn.relu(nn.Conv(WIDTH, (3, 3), strides=2, padding=((1, 1), (1, 1)), name=name)(x))
      valid = valid[:, ::2, ::2]  # ceil(h / 2) real rows, as the unpadded image's conv gives.
      x = jnp.where(valid[..., None], x, 0.0)  # Padding reads as zeros, like torch's.
    logits = nn.Conv(K, (1, 1), name="classifier")(x)
    return resize_bilinear(logits, (x.shape[1] * 4, x.shape[2] * 4)), {}


def _torch_net(torch):
  torch.manual_seed(0)
  net = torch.nn.Sequential(torch.nn.Conv2d(3, WIDTH, 3, 2, 1), torch.nn.ReLU(),
                            torch.nn.Conv2d(WIDTH, WIDTH, 3, 2, 1), torch.nn.ReLU(),
                            torch.nn.Conv2d(WIDTH, K, 1))
  with torch.no_grad():
    for layer in net:
      if isinstance(layer, torch.nn.Conv2d):
        layer.bias.uniform_(-0.5, 0.5)
  return net.eval()


def _flax_variables(net):
  convs = [layer for layer in net if hasattr(layer, "weight")]
  return {"params": {name: {"kernel": jnp.asarray(c.weight.detach().numpy().transpose(2, 3, 1, 0)),
                            "bias": jnp.asarray(c.bias.detach().numpy())}
                     for name, c in zip(("conv1", "conv2", "classifier"), convs)}}


def _images():
  rng = np.random.default_rng(3)
  canvas = np.zeros((len(SIZES), *CANVAS, 3), np.uint8)
  canvas[...] = np.round(MEAN).astype(np.uint8)  # The eval pipeline's padding colour.
  for i, (h, w) in enumerate(SIZES):
    canvas[i, :h, :w] = rng.integers(0, 256, (h, w, 3))
  return canvas


def _mmseg_slide(torch, net, image_HW3):
  """mmseg 1.2.2's EncoderDecoder.slide_inference on one unpadded image (logits, K x h x w)."""
  from mmengine.config import ConfigDict
  from mmseg.models.segmentors import EncoderDecoder
  import torch.nn.functional as F

  class Segmentor:  # What slide_inference reads of `self`; its code runs unchanged.
    test_cfg = ConfigDict(mode="slide", crop_size=CROP, stride=STRIDE)
    out_channels = K

    def encode_decode(self, crop, metas):  # extract_feat + decode_head.predict's resize.
      return F.interpolate(net(crop), size=tuple(metas[0]["img_shape"]), mode="bilinear",
                           align_corners=False)

  x = (image_HW3.astype(np.float32) - np.float32(MEAN)) / np.float32(STD)
  x = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))[None]
  with torch.no_grad():
    logits = EncoderDecoder.slide_inference(Segmentor(), x, [dict(img_shape=x.shape[2:])])
  return logits[0].numpy().transpose(1, 2, 0)


def _cfg(windows_per_step=1):
  return build_config("demo:smoke", [f"eval.crop_size={CROP}", f"eval.stride={STRIDE}",
                                     "eval.mode=slide", f"augment.mean={MEAN}",
                                     f"augment.std={STD}",
                                     f"eval.windows_per_step={windows_per_step}"])


@pytest.mark.parity
@pytest.mark.parametrize("windows_per_step", [1, 4])
def test_slide_equals_mmsegs_slide_inference(windows_per_step):
  torch = require("torch")
  require("mmseg.models")
  net = _torch_net(torch)
  model, variables = TinyNet(), _flax_variables(net)
  canvas = _images()
  expected = [_mmseg_slide(torch, net, canvas[i, :h, :w]) for i, (h, w) in enumerate(SIZES)]
  cfg = _cfg(windows_per_step)

  @jax.jit
  def ours(image_BHW3, size_B2):
    x, _ = inference.model_input(image_BHW3, size_B2, cfg.augment.mean, cfg.augment.std)
    head = lambda x, valid: inference.head_logits(model, variables, x, valid)
    logits = inference.slide_logits(head, x, size_B2, CROP, STRIDE, windows_per_step)
    return logits, inference.native_probs(model, variables, image_BHW3, size_B2, cfg)

  logits, probs = ours(jnp.asarray(canvas), jnp.asarray(SIZES))
  for i, (h, w) in enumerate(SIZES):
    np.testing.assert_allclose(logits[i, :h, :w], expected[i], atol=2e-5, err_msg=f"{h}x{w}")
    softmax = np.exp(expected[i]) / np.exp(expected[i]).sum(-1, keepdims=True)
    np.testing.assert_allclose(probs[i, :h, :w], softmax, atol=1e-5)
  # The windows overlap unevenly: a plain average of one pass would not match.
  whole = np.asarray(inference.head_logits(model, variables, jnp.asarray(
      (canvas[:1].astype(np.float32) - MEAN) / STD), None))
  assert np.abs(resize_bilinear(jnp.asarray(whole), CANVAS)[0] - expected[0]).max() > 1e-2


def test_window_grid_is_mmsegs_formula():
  sizes = jnp.asarray([64, 128, 50, 77, 20, 32, 33, 56, 57])
  expected = [max(n - 32 + 24 - 1, 0) // 24 + 1 for n in sizes.tolist()]
  assert inference._num_windows(sizes, 32, 24).tolist() == expected == [3, 5, 2, 3, 1, 1, 2, 2, 3]


def test_memory_does_not_grow_with_the_number_of_windows():
  """XLA's own memory analysis of the compiled eval function: 12x more windows (stride 8
  against 24), same temporary memory; 4 windows per step cost about 4 windows' activations."""
  model, cfg = TinyNet(), _cfg()
  variables = model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)), train=False)
  canvas = jax.ShapeDtypeStruct((len(SIZES), *CANVAS, 3), jnp.uint8)
  sizes = jax.ShapeDtypeStruct((len(SIZES), 2), jnp.int32)

  def temp_bytes(stride, windows_per_step=1):
    def run(image_BHW3, size_B2):
      x, _ = inference.model_input(image_BHW3, size_B2, cfg.augment.mean, cfg.augment.std)
      head = lambda x, valid: inference.head_logits(model, variables, x, valid)
      return inference.slide_logits(head, x, size_B2, CROP, stride, windows_per_step)
    memory = jax.jit(run).lower(canvas, sizes).compile().memory_analysis()
    # The result buffer holds one accumulator (XLA reuses it for the division).
    return memory.temp_size_in_bytes + memory.output_size_in_bytes

  few, many = temp_bytes((24, 24)), temp_bytes((8, 8))  # 15 against 189 windows.
  accumulators = len(SIZES) * CANVAS[0] * CANVAS[1] * (K + 1) * 4
  print(f"\nslide, 64x128 canvas x {len(SIZES)}: accumulators {accumulators:,} B; compiled "
        f"temp + output: 15 windows {few:,} B, 189 windows {many:,} B", end="")
  assert accumulators <= few and many <= few * 1.05, (few, many)
  chunked = temp_bytes((8, 8), windows_per_step=4)
  print(f", 189 windows 4 per step {chunked:,} B")
  assert few < chunked < accumulators + 5 * (few - accumulators), (few, chunked)


def test_out_of_memory_advice_names_windows_per_step():
  from jaxseg.runtime import failures

  assert failures.eval_keys(_cfg(4)) == (
      "lower eval.batch_size (now 40), eval.windows_per_step=1 (now 4), or a smaller "
      "eval.crop_size (now (32, 32))")
  assert "windows_per_step" not in failures.eval_keys(_cfg(1))

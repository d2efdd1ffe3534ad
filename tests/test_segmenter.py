"""The Python API (jaxseg.Segmenter): any size and kind of image, batches, probabilities,
errors, the lazy import, and a model built from an experiment and a weights file."""

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = ["model.width=4", "model.depth=2"]  # A tiny U-Net: cheap compiles.
# Images over 64x64 pixels are tiled (64x64 tiles every 48): one test covers stitching.
TILING = ["predict.max_pixels_per_device=4096", "predict.tile_size=(64,64)",
          "predict.tile_stride=(48,48)"]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
  """A workdir with step 2 of a freshly initialised tiny U-Net labelled with the demo's
  classes (declared by its builder; nothing prepared)."""
  import jax

  from jaxseg.config.resolve import build_config
  from jaxseg.data.datasets import declared_meta
  from jaxseg.runtime.build import build
  from jaxseg.runtime.checkpoint import Checkpointer
  from jaxseg.runtime.sharding import make_mesh

  workdir = str(tmp_path_factory.mktemp("api_run"))
  data_dir = str(tmp_path_factory.mktemp("no_data"))
  cfg = build_config("demo:smoke", [f"data.dir={data_dir}", *MODEL])
  meta = declared_meta(cfg.data)
  with jax.default_prng_impl("rbg"):  # Any random init will do; rbg's compiles faster.
    state = build(cfg, meta, make_mesh()).state
  ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), 1)
  ckpt.save(2, state, None, cfg.to_dict(), meta.to_json())
  ckpt.close()
  return workdir


@pytest.fixture(scope="module")
def seg(workdir):
  import jaxseg

  return jaxseg.Segmenter.from_checkpoint(workdir, overrides=TILING)


def _image(h, w, seed=0):
  return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _reference_labels(seg, image_HW3):
  """The model applied by hand (numpy normalisation, zero padding to the 64-bucket
  canvas, the valid mask), argmax cropped back: eval.mode='whole' without jaxseg.evaluation.inference."""
  import jax.numpy as jnp

  h, w, _ = image_HW3.shape
  H, W = -(-h // 64) * 64, -(-w // 64) * 64
  x = (image_HW3.astype(np.float32) - np.float32(seg.cfg.augment.mean)) / np.float32(
      seg.cfg.augment.std)
  canvas = np.zeros((1, H, W, 3), np.float32)
  canvas[0, :h, :w] = x
  valid = np.zeros((1, H, W), bool)
  valid[0, :h, :w] = True
  logits, _ = seg.model.apply(seg.variables, jnp.asarray(canvas), train=False,
                              valid_BHW=jnp.asarray(valid))
  return np.argmax(np.asarray(logits, np.float32)[0, :h, :w], -1)


def test_import_jaxseg_loads_no_jax_until_segmenter_is_used():
  code = ("import sys, jaxseg; heavy = [m for m in ('jax', 'flax', 'jaxseg.prediction.segmenter') "
          "if m in sys.modules]; assert not heavy, heavy; "
          "assert jaxseg.Segmenter.__module__ == 'jaxseg.prediction.segmenter' and 'jax' in sys.modules; "
          "assert 'Segmenter' in dir(jaxseg)")
  subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


def test_an_odd_sized_image_gives_the_models_labels_at_its_size(seg):
  image = _image(37, 53)
  mask = seg(image)
  assert mask.shape == (37, 53) and mask.dtype == np.int32
  reference = _reference_labels(seg, image)
  assert len(np.unique(reference)) > 1  # Not a constant model: the comparison means something.
  np.testing.assert_array_equal(mask, reference)
  assert seg.class_names[:2] == ("background", "disk_stripes") and seg.num_classes == 6
  assert seg.palette.shape == (6, 3) and seg.palette.dtype == np.uint8 and seg.step == 2


def test_grey_rgba_float_uint16_and_pil_inputs_are_the_same_image(seg):
  grey = _image(37, 53)[..., 0]
  rgb = np.repeat(grey[..., None], 3, axis=-1)
  rgba = np.concatenate([rgb, np.full((37, 53, 1), 7, np.uint8)], axis=-1)
  kinds = [grey, grey[..., None], rgba, rgb / 255.0, rgb.astype(np.float16) / 255,
           rgb.astype(np.uint16) << 8 | 0xFF, Image.fromarray(grey), Image.fromarray(rgba)]
  expected = seg(rgb)
  for k, mask in enumerate(seg.predict(kinds)):
    np.testing.assert_array_equal(mask, expected, err_msg=f"input kind {k}")


@pytest.mark.parametrize("bad, message", [
    (np.zeros((8, 8, 2), np.uint8), r"images\[1\]: shape \(8, 8, 2\); expected \(H, W\) grey"),
    (np.zeros((2, 8, 8, 3), np.uint8), r"shape \(2, 8, 8, 3\); expected"),
    (np.zeros((0, 8, 3), np.uint8), r"shape \(0, 8, 3\); expected .* H, W >= 1"),
    (np.zeros((8, 8, 3), np.int64), r"dtype int64; expected uint8 \(0-255\), uint16"),
    (np.full((8, 8, 3), 255.0), r"float values from 255.0 to 255.0; expected floats in \[0, 1\]"),
    (np.full((8, 8), np.nan), r"float values from nan to nan"),
])
def test_bad_images_are_refused_naming_what_is_expected(seg, bad, message):
  from jaxseg.prediction.segmenter import ImageError

  with pytest.raises(ImageError, match=message):
    seg.predict([_image(8, 8), bad])


def test_probabilities_sum_to_one_and_give_the_labels(seg):
  for h, w in ((37, 53), (100, 70)):  # Whole, and tiled (canvas over the pixel budget).
    image = _image(h, w, seed=h)
    probs = seg(image, probs=True)
    assert probs.shape == (h, w, seg.num_classes) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(np.argmax(probs, -1), seg(image))


def test_a_batch_of_mixed_sizes_equals_one_image_at_a_time(seg):
  images = [_image(37, 53, 1), _image(100, 70, 2), _image(16, 16, 3), _image(40, 60, 4)]
  batched = seg.predict(images)
  assert [m.shape for m in batched] == [(37, 53), (100, 70), (16, 16), (40, 60)]
  for image, mask in zip(images, batched):
    np.testing.assert_array_equal(mask, seg(image))
  assert seg.predict([]) == []


def test_a_named_step_is_restored_and_a_missing_one_named(workdir):
  from jaxseg import Segmenter

  assert Segmenter.from_checkpoint(workdir, step=2).step == 2
  with pytest.raises(FileNotFoundError, match=r"no checkpoint step 7 in .*steps there: \[2\]"):
    Segmenter.from_checkpoint(workdir, step=7)


def _torch_layout(seg, path, drop=0):
  """The Segmenter's variables saved as a torch state dict (.npz, torchvision's key names
  and OIHW kernels): what `model.weights` reads. `drop`: leave out that many tensors."""
  from jaxseg.models import convert

  state = {}
  for (collection, *var_path), value in convert.flat_variables(seg.variables).items():
    value = np.asarray(value)
    state[convert.torch_key(collection, tuple(var_path), {})] = (
        value.transpose(3, 2, 0, 1) if value.ndim == 4 else value)
  np.savez(path, **dict(sorted(state.items())[drop:]))
  return str(path)


def test_from_experiment_and_a_weights_file_predicts_as_the_checkpoint(seg, tmp_path):
  from jaxseg import Segmenter
  from jaxseg.errors import WeightsMismatchError

  weights = _torch_layout(seg, tmp_path / "unet.npz")
  data = f"data.dir={tmp_path / 'no_data'}"
  again = Segmenter.from_experiment("demo:smoke", weights, [data, *MODEL])
  assert again.class_names == seg.class_names and again.step is None
  image = _image(37, 53, seed=5)
  np.testing.assert_array_equal(again(image), seg(image))
  partial = _torch_layout(seg, tmp_path / "partial.npz", drop=1)
  with pytest.raises(WeightsMismatchError, match=r"partial.npz lacks 1 of the model's tensors"):
    Segmenter.from_experiment("demo:smoke", partial, [data, *MODEL])

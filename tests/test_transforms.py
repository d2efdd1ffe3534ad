"""Joint augmentation ops and presets: alignment, label values, padding, photometric numerics."""

import functools
import pickle

import numpy as np
import pytest

from experiments import _voc
from jaxseg.config.resolve import build_config
from jaxseg.data import augment as A
from jaxseg.data import transforms as T
from jaxseg.registry import UnknownNameError

H, W, BLOCK = 64, 80, 8


def _coord_example():
  """Image channels encode (row*3, col*3); the label is the 8x8 block index of (row, col)."""
  yy, xx = np.mgrid[0:H, 0:W]
  image = np.stack([yy * 3, xx * 3, np.full_like(yy, 128)], -1).astype(np.uint8)
  return {"image": image, "label": _label_of(yy, xx).astype(np.uint8)}


def _label_of(row, col):
  return (row // BLOCK) * 10 + col // BLOCK


def _assert_aligned(out, tolerance=2.0):
  """Decodes each pixel's source coordinates from the image; its label must match them.

  Bilinear resizing blends neighbours, so only pixels whose decoded coordinates
  lie more than `tolerance` source pixels inside a label block are checked.
  """
  row, col = out["image"][..., 0] / 3.0, out["image"][..., 1] / 3.0
  inside = ((row % BLOCK > tolerance) & (row % BLOCK < BLOCK - 1 - tolerance)
            & (col % BLOCK > tolerance) & (col % BLOCK < BLOCK - 1 - tolerance))
  check = inside & (out["label"] != 255)
  assert check.sum() > 20, "too few pixels to check alignment"
  expected = _label_of(np.round(row).astype(int), np.round(col).astype(int))
  np.testing.assert_array_equal(out["label"][check], expected[check])


def _augment_cfg(*overrides):
  return build_config("demo", ["augment.crop_size=(32,32)", *overrides]).augment


# Photometric distortion moves colours, so alignment runs with its identity settings
# (saturation still round-trips through 8-bit HSV, hence the tolerance).
NEUTRAL_PHOTO = ["augment.photometric.brightness_delta=0",
                 "augment.photometric.contrast_range=(1,1)",
                 "augment.photometric.saturation_range=(1,1)", "augment.photometric.hue_delta=0"]
PRESETS = {
    "none": [], "flip": [],
    "scale_crop_flip": ["augment.rescale.base_size=()", "augment.photometric.enabled=true",
                        *NEUTRAL_PHOTO],
    "voc": ["augment.rescale.base_size=(256,96)", "augment.crop.cat_max_ratio=0.75",
            "augment.crop.image_pad=mean", *NEUTRAL_PHOTO],
}
OPS = {
    "rescale_relative": functools.partial(T.random_rescale, ratio_range=(0.5, 2.0), base_size=()),
    "rescale_mmseg": functools.partial(T.random_rescale, ratio_range=(0.5, 2.0),
                                       base_size=(256, 96)),
    "crop_cat_max": functools.partial(T.random_crop, size_HW=(48, 48), ignore_index=255,
                                      cat_max_ratio=0.3),
    "crop_larger_than_image": functools.partial(T.random_crop, size_HW=(72, 72), ignore_index=255),
    "pad": functools.partial(T.pad, size_HW=(72, 90), ignore_index=255, image_value=(9, 9, 9)),
    "hflip": functools.partial(T.hflip, prob=1.0),
    "photometric_neutral": functools.partial(T.photometric, brightness_delta=0,
                                             contrast_range=(1, 1), saturation_range=(1, 1),
                                             hue_delta=0),
}


def test_every_preset_is_covered():
  assert set(PRESETS) == set(A.AUGMENTATIONS.names())


@pytest.mark.parametrize("name", sorted(OPS))
def test_every_op_keeps_image_and_label_aligned(name):
  rng = np.random.default_rng(0)
  for _ in range(10):
    _assert_aligned(OPS[name](_coord_example(), rng))


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_keeps_image_and_label_aligned(preset):
  aug = A.build_augment(_augment_cfg(f"augment.preset={preset}", *PRESETS[preset]), 255)
  rng = np.random.default_rng(1)
  for _ in range(10):
    out = aug(_coord_example(), rng)
    assert out["image"].shape == (32, 32, 3) and out["label"].shape == (32, 32)
    assert out["image"].dtype == np.uint8 and out["label"].dtype == np.uint8
    _assert_aligned(out)


def test_rescale_never_invents_label_values():
  rng = np.random.default_rng(2)
  label = rng.choice(np.array([0, 3, 7, 255], np.uint8), size=(37, 53))
  example = {"image": np.zeros((37, 53, 3), np.uint8), "label": label}
  for ratio in (0.3, 0.77, 1.0, 1.9, 2.7):
    out = T.resize(example, T.rescaled_size(37, 53, ratio, ()))
    assert set(np.unique(out["label"])) <= {0, 3, 7, 255}


def test_rescaled_size_relative_and_mmseg_style():
  assert T.rescaled_size(375, 500, 0.5, ()) == (188, 250)
  # mmseg: fit 500x375 inside (2048, 512) * ratio, aspect kept.
  assert T.rescaled_size(375, 500, 1.0, (2048, 512)) == (512, 683)
  assert T.rescaled_size(500, 375, 0.5, (2048, 512)) == (341, 256)
  assert T.rescaled_size(100, 2000, 1.0, (2048, 512)) == (102, 2048)  # long side binds


def test_crop_larger_than_the_image_keeps_it_whole_and_pad_comes_last():
  example = _coord_example()
  out = T.random_crop(example, np.random.default_rng(0), (72, 90), 255)
  assert out["label"].shape == (H, W)  # mmseg's RandomCrop: no padding inside the crop.
  for preset in ("none", "flip", "voc"):
    ops = A.build_augment(_augment_cfg(f"augment.preset={preset}"), 255).ops
    assert ops[-1].func is T.pad and all(op.func is not T.pad for op in ops[:-1])


def test_crop_pads_label_with_ignore_and_image_with_pad_value():
  example = {"image": np.full((20, 30, 3), 7, np.uint8), "label": np.ones((20, 30), np.uint8)}
  aug = A.build_augment(_augment_cfg("augment.preset=none", "augment.crop.image_pad=mean"),
                        255)
  out = aug(example, np.random.default_rng(0))
  assert out["label"].shape == (32, 32)
  np.testing.assert_array_equal(out["label"][20:], 255)
  np.testing.assert_array_equal(out["label"][:20, 30:], 255)
  np.testing.assert_array_equal(out["image"][20:], np.broadcast_to([124, 116, 104], (12, 32, 3)))
  assert (out["label"][:20, :30] == 1).all() and (out["image"][:20, :30] == 7).all()


def test_cat_max_ratio_makes_dominant_class_crops_rarer():
  label = np.zeros((100, 100), np.uint8)
  label[60:90, 60:90] = 5  # One object in a sea of background.
  label[:, :3] = 255
  example = {"image": np.zeros((100, 100, 3), np.uint8), "label": label}

  def dominated(cat_max_ratio):
    rng = np.random.default_rng(3)
    count = 0
    for _ in range(300):
      crop = T.random_crop(example, rng, (40, 40), 255, cat_max_ratio)["label"]
      counts = np.bincount(crop[crop != 255].ravel())
      count += counts.max() >= 0.75 * counts.sum()
    return count / 300

  off, on = dominated(1.0), dominated(0.75)
  assert off > 0.6 and on < 0.2, (off, on)


def test_photometric_formulas_and_ranges():
  rng = np.random.default_rng(4)
  image = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
  f = image.astype(np.float32)
  np.testing.assert_array_equal(T.adjust_brightness(image, 20.6),
                                np.clip(f + 20.6, 0, 255).astype(np.uint8))
  np.testing.assert_array_equal(T.adjust_brightness(image, -31.2),
                                np.clip(f - 31.2, 0, 255).astype(np.uint8))
  np.testing.assert_array_equal(T.adjust_contrast(image, 1.37),
                                np.clip(f * 1.37, 0, 255).astype(np.uint8))
  grey = np.repeat(image[..., :1], 3, -1)
  np.testing.assert_allclose(T.adjust_saturation(grey, 1.5), grey, atol=1)  # no chroma to scale
  red = np.zeros((2, 2, 3), np.uint8)
  red[..., 0] = 255
  yellow = T.adjust_hue(red, 30)  # 30 OpenCV units = 60 degrees: red -> yellow
  np.testing.assert_allclose(yellow, np.broadcast_to([255, 255, 0], (2, 2, 3)), atol=8)


def test_photometric_touches_only_the_image_and_stays_uint8():
  op = functools.partial(T.photometric, brightness_delta=32.0, contrast_range=(0.5, 1.5),
                         saturation_range=(0.5, 1.5), hue_delta=18)
  example = _coord_example()
  changed = 0
  for seed in range(64):
    out = op(example, np.random.default_rng(seed))
    assert out["label"] is example["label"]
    assert out["image"].dtype == np.uint8 and out["image"].shape == example["image"].shape
    changed += not np.array_equal(out["image"], example["image"])
  assert 48 < changed < 64  # Each part fires with p=0.5, so all four skip 1 time in 16.


def test_flip_preset_draws_like_the_original():
  """`flip` with default keys: crop offsets then one coin, as before the new keys."""
  example = _coord_example()
  aug = A.build_augment(_augment_cfg("augment.preset=flip"), 255)
  for seed in range(5):
    out = aug(example, np.random.default_rng(seed))
    rng = np.random.default_rng(seed)
    top, left = int(rng.integers(0, H - 31)), int(rng.integers(0, W - 31))
    label = example["label"][top:top + 32, left:left + 32]
    np.testing.assert_array_equal(out["label"], label[:, ::-1] if rng.random() < 0.5 else label)


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_presets_are_deterministic_per_seed_and_picklable(preset):
  photometric = ["augment.photometric.enabled=true"] if preset == "scale_crop_flip" else []
  cfg = _augment_cfg(f"augment.preset={preset}", *photometric)
  aug = A.build_augment(cfg, 255)
  clone = pickle.loads(pickle.dumps(aug))
  example = _coord_example()
  a = aug(example, np.random.default_rng(5))
  b = clone(example, np.random.default_rng(5))
  for key in ("image", "label"):
    np.testing.assert_array_equal(a[key], b[key])
  outs = [aug(example, np.random.default_rng(s))["image"] for s in range(6, 10)]
  assert any(not np.array_equal(outs[0], o) for o in outs[1:])


def test_mmseg_voc_values_fit_the_config():
  cfg = A.SECTION.config(**_voc.mmseg_voc_augment())
  out = A.build_augment(cfg, 255)({"image": np.zeros((375, 500, 3), np.uint8),
                                   "label": np.zeros((375, 500), np.uint8)},
                                  np.random.default_rng(0))
  assert out["image"].shape == (512, 512, 3)


def test_unknown_preset_names_the_closest():
  cfg = _augment_cfg()
  cfg.preset = "vocc"  # Set past config validation, which refuses both at load.
  with pytest.raises(UnknownNameError, match="did you mean 'voc'"):
    A.build_augment(cfg, 255)
  cfg.preset, cfg.crop.image_pad = "flip", "edge"
  with pytest.raises(ValueError, match="augment.crop.image_pad"):
    A.build_augment(cfg, 255)


def test_train_loader_with_workers_resumes_exactly(shapes_dir):
  """Augmentation in grain worker processes: same batches as in-process, exact resume."""
  from absl import flags

  from jaxseg.data import datasets, pipeline

  flags.FLAGS.mark_as_parsed()  # grain's workers read absl flags (outside absl.app).
  overrides = [f"data.dir={shapes_dir}", "train.batch_size=4", "augment.preset=scale_crop_flip",
               "augment.rescale.base_size=()", "augment.photometric.enabled=true",
               "augment.crop.cat_max_ratio=0.75"]

  def batches(workers, n, state=None):
    cfg = build_config("demo", [*overrides, f"data.worker_count={workers}"])
    source = datasets.prepare(cfg.data).as_data_source("train")
    it = iter(pipeline.train_loader(source, cfg, 255))
    if state is not None:
      it.set_state(state)
    # Copies: batches from workers live in shared memory that the pool reclaims.
    return [{k: np.array(v) for k, v in next(it).items()} for _ in range(n)], it.get_state()

  inline, _ = batches(0, 4)
  pooled, _ = batches(2, 4)
  _, state = batches(2, 2)
  resumed, _ = batches(2, 2, state)
  assert inline[0]["image"].shape == (4, 64, 64, 3)
  for a, b in zip(inline, pooled):
    np.testing.assert_array_equal(a["image"], b["image"])
    np.testing.assert_array_equal(a["label"], b["label"])
  for a, b in zip(inline[2:], resumed):
    np.testing.assert_array_equal(a["image"], b["image"])
    np.testing.assert_array_equal(a["label"], b["label"])

"""The shapes builder and the grain pipelines, through the real prepared files."""

import subprocess
import sys

import numpy as np

from jaxseg.config.resolve import build_config
from jaxseg.data import augment, datasets, pipeline
from jaxseg.data.builders import shapes_render


def _builder(shapes_dir):
  cfg = build_config("demo", [f"data.dir={shapes_dir}"])
  return cfg, datasets.prepare(cfg.data)


def test_scenes_are_deterministic_and_varied():
  a_img, a_lab = shapes_render.render_scene(7)
  b_img, b_lab = shapes_render.render_scene(7)
  np.testing.assert_array_equal(a_img, b_img)
  np.testing.assert_array_equal(a_lab, b_lab)
  assert not np.array_equal(shapes_render.render_scene(8)[0], a_img)


def test_shapes_dataset_has_all_classes_and_an_ignore_band(shapes_dir):
  cfg, builder = _builder(shapes_dir)
  meta = datasets.meta_of(builder)
  assert meta.num_classes == 6 and meta.ignore_index == 255
  source = builder.as_data_source("validation")
  labels = np.stack([source[i]["label"][..., 0] for i in range(100)])
  assert set(np.unique(labels)) == {0, 1, 2, 3, 4, 5, 255}
  # The ignore band sits exactly where neighbouring labels differ.
  lab = labels[0]
  inner = lab[1:-1, 1:-1]
  assert (inner == 255).any() and (inner != 255).any()
  # Colour says nothing: the mean colour of class 1 pixels varies across images.
  images = np.stack([source[i]["image"] for i in range(100)])
  means = [images[i][labels[i] == 1].mean(0) for i in range(100) if (labels[i] == 1).sum() > 50]
  assert np.std(np.array(means), axis=0).min() > 20


def test_reading_does_not_import_tensorflow(shapes_dir):
  code = ("import sys; from jaxseg.data.builders.shapes import Shapes; "
          f"src = Shapes(data_dir={shapes_dir!r}).as_data_source('train'); src[0]; "
          "assert 'tensorflow' not in sys.modules, 'TF was imported'")
  subprocess.run([sys.executable, "-c", code], check=True)


def test_eval_batches_cover_every_example_once(shapes_dir):
  cfg, builder = _builder(shapes_dir)
  meta = datasets.meta_of(builder)
  source = builder.as_data_source("validation")
  cfg = build_config("demo", [f"data.dir={shapes_dir}", "eval.batch_size=48"])
  batches = list(pipeline.eval_batches(source, cfg, meta.eval_canvas_HW, meta.ignore_index))
  assert len(batches) == int(np.ceil(len(source) / 48))
  assert all(b["image"].shape == (48, 64, 64, 3) for b in batches)
  masks = np.concatenate([b["example_mask"] for b in batches])
  assert masks.sum() == len(source) and masks[: len(source)].all()
  # Padding examples carry only ignore labels.
  assert (batches[-1]["label"][~batches[-1]["example_mask"]] == 255).all()
  np.testing.assert_array_equal(batches[0]["label"][3], source[3]["label"][..., 0])


def test_train_loader_is_deterministic_and_resumable(shapes_dir):
  cfg, builder = _builder(shapes_dir)
  source = builder.as_data_source("train")
  def batches(n, state=None):
    it = iter(pipeline.train_loader(source, cfg, 255))
    if state is not None:
      it.set_state(state)
    return [next(it) for _ in range(n)], it.get_state()
  first, _ = batches(4)
  again, _ = batches(4)
  for a, b in zip(first, again):
    np.testing.assert_array_equal(a["image"], b["image"])
  _, state_after_2 = batches(2)
  resumed, _ = batches(2, state_after_2)
  for a, b in zip(first[2:], resumed):
    np.testing.assert_array_equal(a["label"], b["label"])


def test_crop_pads_labels_with_ignore_and_keeps_alignment():
  rng = np.random.default_rng(0)
  yy, xx = np.mgrid[0:20, 0:30]
  # A coordinate-encoded example: image channels hold (y, x), label holds (y*30+x) % 250.
  image = np.stack([yy, xx, np.zeros_like(yy)], -1).astype(np.uint8)
  label = ((yy * 30 + xx) % 250).astype(np.uint8)
  cfg = build_config("demo", ["augment.preset=flip", "augment.crop_size=(24,24)"])
  aug = augment.build_augment(cfg.augment, 255)
  for _ in range(20):
    out = aug({"image": image, "label": label}, rng)
    assert out["image"].shape == (24, 24, 3) and out["label"].shape == (24, 24)
    real = out["label"] != 255
    y, x = out["image"][..., 0].astype(int), out["image"][..., 1].astype(int)
    np.testing.assert_array_equal(out["label"][real], ((y * 30 + x) % 250)[real])
    assert real.sum() == 20 * 24  # height padded 20 -> 24 with ignore only

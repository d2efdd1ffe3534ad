"""--mode predict: from the checkpoint alone (no dataset), any image size, never overwriting."""

import os

import numpy as np
import pytest
from PIL import Image

import run as cli

VOC_CLASSES = 21


def _voc_like_meta():
  from jaxseg.data.datasets import DatasetMeta

  palette = np.random.default_rng(1).integers(0, 256, (VOC_CLASSES, 3), dtype=np.uint8)
  return DatasetMeta(class_names=tuple(f"voc{k}" for k in range(VOC_CLASSES)),
                     palette_K3=palette, ignore_index=255, eval_canvas_HW=(512, 512))


@pytest.fixture(scope="module")
def voc_checkpoint(tmp_path_factory):
  """A workdir with a checkpoint of a (freshly initialised) model trained "on VOC": its
  config names voc_seg in an empty data dir, so predicting must not touch any data."""
  from jaxseg.config.resolve import build_config
  from jaxseg.runtime.build import build
  from jaxseg.runtime.checkpoint import Checkpointer
  from jaxseg.runtime.sharding import make_mesh

  workdir = str(tmp_path_factory.mktemp("voc_run"))
  data_dir = str(tmp_path_factory.mktemp("no_voc_here"))
  cfg = build_config("demo:smoke", ["data.name=voc_seg", f"data.dir={data_dir}",
                                    f"data.manual_dir={data_dir}", "model.width=4",
                                    "model.depth=2"])
  meta = _voc_like_meta()
  ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), 1)
  ckpt.save(1, build(cfg, meta, make_mesh()).state, None, cfg.to_dict(), meta.to_json())
  ckpt.close()
  return workdir, data_dir, meta


def _save(path, h, w, seed=0):
  image = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
  Image.fromarray(image).save(path)
  return image


def _predict(workdir, inputs, out, *overrides):
  """In-process run.py (the default --exp: the checkpoint's config is what counts)."""
  args = ["--mode", "predict", "--workdir", workdir, "--input", str(inputs), "--output", str(out)]
  return cli.main(args + [a for o in overrides for a in ("--set", o)])


def _tree(root):
  return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)


def test_voc_checkpoint_predicts_without_any_dataset(voc_checkpoint, tmp_path, capsys):
  workdir, data_dir, meta = voc_checkpoint
  inputs = tmp_path / "in"
  inputs.mkdir()
  # Three sizes in one 64x64 bucket (predict.bucket): one compile keeps the test quick.
  sizes = {"small.png": (17, 23), "wide.jpg": (40, 63), "tall.png": (61, 33)}
  for name, (h, w) in sizes.items():
    _save(inputs / name, h, w)
  (inputs / "notes.txt").write_text("not an image")
  out = tmp_path / "out"

  assert _predict(workdir, inputs, out) == 0
  assert "notes.txt" in capsys.readouterr().out  # Warned and skipped; the run succeeds.
  assert os.listdir(data_dir) == []  # No dataset prepared, downloaded or even looked up.
  assert _tree(out) == sorted([f"masks/{n}.png" for n in sizes] +
                              [f"overlays/{n}.png" for n in sizes])
  for name, (h, w) in sizes.items():
    mask = Image.open(out / "masks" / f"{name}.png")
    assert mask.mode == "P" and mask.size == (w, h)
    assert np.asarray(mask).max() < VOC_CLASSES
    # The checkpoint's palette, not the `--exp` default's dataset (shapes, 6 classes).
    np.testing.assert_array_equal(np.asarray(mask.getpalette()[:3 * VOC_CLASSES]).reshape(-1, 3),
                                  meta.palette_K3)
    assert Image.open(out / "overlays" / f"{name}.png").size == (w, h)


def test_same_stem_and_overlay_like_names_keep_their_own_outputs(voc_checkpoint, tmp_path,
                                                                 capsys):
  workdir, _, _ = voc_checkpoint
  inputs = tmp_path / "in"
  inputs.mkdir()
  # Before: a.jpg and a.png both wrote a.png; b_overlay.png's mask replaced b's overlay.
  sizes = {"a.jpg": (20, 30), "a.png": (31, 21), "b.png": (25, 25), "b_overlay.png": (18, 40)}
  for k, (name, (h, w)) in enumerate(sizes.items()):
    _save(inputs / name, h, w, seed=k)
  whole = (inputs / "a.png").read_bytes()
  (inputs / "cut.png").write_bytes(whole[:len(whole) // 2])  # Its header reads; its pixels do not.
  out = tmp_path / "out"
  assert _predict(workdir, inputs, out) == 0
  assert "skipping" in capsys.readouterr().out  # cut.png: warned, skipped, the run succeeds.
  for name, (h, w) in sizes.items():  # Each output has its own input's size: none replaced.
    assert Image.open(out / "masks" / f"{name}.png").size == (w, h)
    assert Image.open(out / "overlays" / f"{name}.png").size == (w, h)
  assert len(_tree(out)) == 2 * len(sizes)


@pytest.mark.parametrize("where", ["same", "inside"])
def test_output_in_the_input_folder_is_refused(voc_checkpoint, tmp_path, capsys, where):
  workdir, _, _ = voc_checkpoint
  inputs = tmp_path / "photos"
  inputs.mkdir()
  _save(inputs / "photo.png", 16, 16)
  before = (inputs / "photo.png").read_bytes()
  out = inputs if where == "same" else inputs / "pred"
  assert _predict(workdir, inputs, out) == 2
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1 and "the input folder" in err and "--output" in err
  assert _tree(inputs) == ["photo.png"] and (inputs / "photo.png").read_bytes() == before
  # Before: --output equal to --input replaced photo.png with its mask. Now run.py's
  # writable-output check refuses a file there (status 1, one line naming it).
  assert _predict(workdir, inputs / "photo.png", inputs / "photo.png") == 1
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1 and "not a directory" in err
  assert _tree(inputs) == ["photo.png"] and (inputs / "photo.png").read_bytes() == before


def test_existing_outputs_are_refused_and_left_alone(voc_checkpoint, tmp_path, capsys):
  workdir, _, _ = voc_checkpoint
  inputs = tmp_path / "in"
  inputs.mkdir()
  _save(inputs / "a.png", 16, 16)
  _save(inputs / "b.png", 16, 16)
  out = tmp_path / "out"
  (out / "masks").mkdir(parents=True)
  (out / "masks" / "b.png.png").write_bytes(b"the user's own file")
  assert _predict(workdir, inputs, out) == 2
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1 and "b.png.png" in err and "already holds 1" in err
  assert (out / "masks" / "b.png.png").read_bytes() == b"the user's own file"
  assert _tree(out) == ["masks/b.png.png"]  # Refused before writing anything.


def test_checkpoint_config_wins_and_only_inference_keys_may_be_set(voc_checkpoint, tmp_path,
                                                                   capsys):
  workdir, _, _ = voc_checkpoint
  image = tmp_path / "x.png"
  _save(image, 16, 16)
  assert _predict(workdir, image, tmp_path / "o1", "model.width=8") == 2
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1 and "--set model.width" in err and "model.width=4" in err
  # The checkpoint's own value, and predict/eval keys, are accepted.
  assert _predict(workdir, image, tmp_path / "o2", "model.width=4", "predict.batch_size=16",
                  "eval.mode=slide", "eval.crop_size=(8,8)", "eval.stride=(8,8)") == 0
  assert _tree(tmp_path / "o2") == ["masks/x.png.png", "overlays/x.png.png"]


def _record_calls(monkeypatch, fake=None):
  """Wraps the jitted predict functions (the Segmenter's, which --mode predict uses) to
  record each call's batch shape (B, H, W)."""
  from jaxseg.prediction import segmenter

  calls, real = [], segmenter.make_predict_fns

  def make(model, cfg, variables, mesh):
    fns = fake(cfg) if fake else real(model, cfg, variables, mesh)

    def recorded(fn, kind):
      def call(variables, images_BHW3, size_B2):
        calls.append((kind, images_BHW3.shape[:3]))
        return fn(variables, images_BHW3, size_B2)
      return call

    return recorded(fns[0], "whole"), recorded(fns[1], "tiles")

  monkeypatch.setattr(segmenter, "make_predict_fns", make)
  return calls


def test_large_images_stay_within_the_pixel_budget(voc_checkpoint, tmp_path, monkeypatch):
  """A small stand-in for the 4000x3000 photo that aborted (std::bad_alloc) at batch 8."""
  workdir, _, _ = voc_checkpoint
  inputs = tmp_path / "in"
  inputs.mkdir()
  _save(inputs / "big.png", 200, 150)  # Canvas 256x192: over the budget, so tiled.
  for k in range(3):
    _save(inputs / f"small{k}.png", 40, 30)  # Canvas 64x64: whole, two per device.
  calls = _record_calls(monkeypatch)
  budget = 2 * 64 * 64
  assert _predict(workdir, inputs, tmp_path / "out", "predict.batch_size=32",
                  f"predict.max_pixels_per_device={budget}", "predict.tile_size=(64,64)",
                  "predict.tile_stride=(48,48)") == 0
  assert {kind for kind, _ in calls} == {"whole", "tiles"}
  for _, (B, H, W) in calls:
    assert B // 8 * H * W <= budget  # 8 devices share each call.
  # Tiles: 4 rows (200 = 48*3 + 56) x 3 columns = 12, in batches of 16 (2 per device).
  assert [shape for kind, shape in calls if kind == "tiles"] == [(16, 64, 64)]
  assert Image.open(tmp_path / "out" / "masks" / "big.png.png").size == (150, 200)


def test_tiles_stitch_back_in_place(voc_checkpoint, tmp_path, monkeypatch):
  """With a pointwise stand-in model (class = red value mod K), a tiled image must come
  out exactly as predicted whole: every tile lands where it was cut from."""
  import jax
  import jax.numpy as jnp

  workdir, _, _ = voc_checkpoint

  def pointwise(cfg):
    labels = lambda variables, x, size: jnp.asarray(x)[..., 0].astype(jnp.int32) % VOC_CLASSES
    probs = lambda variables, x, size: jax.nn.one_hot(labels(variables, x, size), VOC_CLASSES)
    return labels, probs

  calls = _record_calls(monkeypatch, fake=pointwise)
  image = _save(tmp_path / "big.png", 150, 130)
  assert _predict(workdir, tmp_path / "big.png", tmp_path / "out",
                  f"predict.max_pixels_per_device={64 * 64}", "predict.tile_size=(64,64)",
                  "predict.tile_stride=(40,50)") == 0
  assert {kind for kind, _ in calls} == {"tiles"}
  mask = np.asarray(Image.open(tmp_path / "out" / "masks" / "big.png.png"))
  np.testing.assert_array_equal(mask, image[..., 0] % VOC_CLASSES)


def test_predict_without_checkpoint_fails_clearly(tmp_path, capsys):
  _save(tmp_path / "a.png", 8, 8)
  assert _predict(str(tmp_path / "none"), tmp_path / "a.png", tmp_path / "o") == 1
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1 and "no checkpoint in" in err


def test_images_are_decoded_as_training_decodes_them(voc_checkpoint, tmp_path):
  """EXIF-rotated JPEGs give masks of the displayed size (the overlay shows the rotated
  image), and 16-bit grey PNGs are scaled, not clipped to white, as in the folder data."""
  workdir, _, _ = voc_checkpoint
  inputs = tmp_path / "in"
  inputs.mkdir()
  # A smooth gradient (JPEG keeps it) that tells the rotations apart.
  y, x = np.mgrid[:20, :36]
  stored = np.stack([x * 7, y * 12, np.full_like(x, 128)], axis=-1).astype(np.uint8)
  exif = Image.Exif()
  exif[0x0112] = 6  # Rotate 90 degrees clockwise to display.
  Image.fromarray(stored).save(inputs / "phone.jpg", exif=exif.tobytes(), quality=95)
  grey16 = np.full((24, 24), 40000, np.uint16)
  Image.fromarray(grey16).save(inputs / "deep.png")
  out = tmp_path / "out"
  assert _predict(workdir, inputs, out, "predict.overlay_alpha=0.0") == 0
  assert Image.open(out / "masks" / "phone.jpg.png").size == (20, 36)  # (W, H) displayed.
  overlay = np.asarray(Image.open(out / "overlays" / "phone.jpg.png").convert("RGB"))
  rotated = np.rot90(stored, k=-1)  # What a viewer shows, up to JPEG noise.
  assert np.abs(overlay.astype(int) - rotated.astype(int)).mean() < 4
  deep = np.asarray(Image.open(out / "overlays" / "deep.png.png").convert("RGB"))
  np.testing.assert_array_equal(deep, np.full((24, 24, 3), 40000 >> 8, np.uint8))

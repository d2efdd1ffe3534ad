"""Images in, class masks and overlays out: `python run.py --mode predict --input PATH --output DIR`.

Images of any size: each is padded bottom/right to a canvas whose sides are
rounded up to `predict.bucket` (so a folder of varied sizes compiles once per
bucket, not once per size), inferred under `eval.mode` exactly like
evaluation, and cropped back to its original size. Writes `<name>.png` (class
indices, P mode with the dataset palette) and `<name>_overlay.png`.
"""

from __future__ import annotations

import collections
import os

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image, UnidentifiedImageError

from jaxseg import inference, report
from jaxseg.checks import Checker
from jaxseg.sharding import batch_sharded
from jaxseg.state import state_shardings
from jaxseg.steps import normalize


def validate_config(predict_cfg) -> None:
  """Fails at config load (not mid-run) on a bad `predict` section."""
  c = Checker(predict_cfg, "predict")
  c.count("batch_size")
  c.count("bucket")
  c.number("overlay_alpha", min=0, max=1)


def list_inputs(path: str) -> list[str]:
  """The file itself, or every file directly in the folder (sorted)."""
  if os.path.isfile(path):
    return [path]
  if not os.path.isdir(path):
    raise FileNotFoundError(f"--input {path} is neither a file nor a folder")
  return sorted(os.path.join(path, n) for n in os.listdir(path)
                if os.path.isfile(os.path.join(path, n)))


def load_image(path: str) -> np.ndarray | None:
  """RGB uint8 (H, W, 3), or None (with a warning) for a file PIL cannot read."""
  try:
    with Image.open(path) as img:
      return np.asarray(img.convert("RGB"))
  except (UnidentifiedImageError, OSError) as e:
    print(f"warning: skipping {path}: not a readable image ({type(e).__name__})", flush=True)
    return None


def make_predict_fn(model, cfg, state, mesh):
  """jitted (state, images_BHW3 uint8, size_B2) -> prediction_BHW int32, sharded over data."""

  def predict(state, images_BHW3, size_B2):
    x = normalize(images_BHW3, cfg.augment.mean, cfg.augment.std)
    apply_fn = lambda v, valid: model.apply(state.variables(), v, train=False, valid_BHW=valid)[0]
    probs_BHWK = inference.predict_probs(apply_fn, x, size_B2, cfg.eval)
    return jnp.argmax(probs_BHWK, axis=-1).astype(jnp.int32)

  data = batch_sharded(mesh)
  return jax.jit(predict, in_shardings=(state_shardings(state), data, data),
                 out_shardings=data)


def write_outputs(out_dir: str, name: str, image_HW3, mask_HW, palette_K3, alpha: float):
  mask = Image.fromarray(mask_HW.astype(np.uint8), mode="P")
  flat = np.zeros((256, 3), np.uint8)
  flat[:len(palette_K3)] = palette_K3
  mask.putpalette(flat.ravel().tolist())
  mask.save(os.path.join(out_dir, f"{name}.png"))
  blended = report.overlay(image_HW3, mask_HW, palette_K3, alpha)
  Image.fromarray(blended).save(os.path.join(out_dir, f"{name}_overlay.png"))


def predict_paths(run, state, paths: list[str], out_dir: str) -> dict[str, tuple[int, int]]:
  """Predicts every readable image of `paths`; returns {name: (H, W)} of those written."""
  cfg, mesh = run.cfg, run.mesh
  os.makedirs(out_dir, exist_ok=True)
  state = state.for_eval()
  fn = make_predict_fn(run.model, cfg, state, mesh)
  batch = cfg.predict.batch_size
  if batch < 1 or batch % mesh.size or cfg.predict.bucket < 1:
    raise ValueError(f"predict.batch_size={batch} must be a positive multiple of the "
                     f"{mesh.size} devices and predict.bucket={cfg.predict.bucket} positive")
  # Group by canvas bucket: one compile per bucket, batches of the same static shape.
  buckets: dict[tuple, list] = collections.defaultdict(list)
  for path in paths:
    image = load_image(path)
    if image is not None:
      H, W = image.shape[:2]
      canvas = tuple(inference.round_up(n, cfg.predict.bucket) for n in (H, W))
      buckets[canvas].append((os.path.splitext(os.path.basename(path))[0], image))
  written = {}
  for (CH, CW), items in buckets.items():
    for start in range(0, len(items), batch):
      chunk = items[start:start + batch]
      images = np.zeros((batch, CH, CW, 3), np.uint8)
      sizes = np.tile(np.array([CH, CW], np.int32), (batch, 1))  # Filler rows: whole canvas.
      for i, (_, image) in enumerate(chunk):
        H, W = image.shape[:2]
        images[i, :H, :W], sizes[i] = image, (H, W)
      pred = np.asarray(jax.device_get(fn(state, images, sizes)))
      for i, (name, image) in enumerate(chunk):
        H, W = image.shape[:2]
        write_outputs(out_dir, name, image, pred[i, :H, :W], run.meta.palette_K3,
                      cfg.predict.overlay_alpha)
        written[name] = (H, W)
  return written


def predict(cfg, workdir: str, input_path: str, out_dir: str) -> dict[str, tuple[int, int]]:
  """Restores the checkpoint `eval.checkpoint` names and predicts `input_path`."""
  from jaxseg.assemble import assemble
  from jaxseg.evaluate import restore_for_eval

  if jax.process_count() > 1:
    raise ValueError("--mode predict runs on a single process")
  paths = list_inputs(input_path)  # Before building anything: a wrong path fails fast.
  run = assemble(cfg, pretrained_backbone=False)  # The checkpoint holds the weights.
  state, step = restore_for_eval(cfg, workdir, run.state)
  written = predict_paths(run, state, paths, out_dir)
  print(f"checkpoint step {step}: wrote {len(written)} masks and overlays to {out_dir} "
        f"({len(paths) - len(written)} files skipped)")
  return written

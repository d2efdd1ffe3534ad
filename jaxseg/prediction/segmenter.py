"""The Python API: a trained model as a function of images.

    import jaxseg
    seg = jaxseg.Segmenter.from_checkpoint("runs/demo")
    mask_HW = seg(image)  # np.int32 (H, W) class indices, at the image's own size

Any size (each image is padded to a bucketed canvas inside, never resized) and
uint8 / uint16 / float-in-[0, 1] grey, RGB or RGBA arrays, or PIL images.
`--mode predict` computes every mask through `Segmenter.stream`, so the CLI and
the API cannot disagree; both use the function evaluation scores
(`inference.native_labels`: the checkpoint's `eval.mode`, each image at its own
size), so neither can disagree with `--mode eval` on the same pixels.
"""

from __future__ import annotations

from typing import Callable, Hashable, Iterator, Sequence

import jax
import ml_collections
import numpy as np
from PIL import Image

from jaxseg.config.resolve import validate_batch_sizes
from jaxseg.data.builders import imagefiles
from jaxseg.data.datasets import DatasetMeta
from jaxseg.errors import ConfigError, WeightsMismatchError
from jaxseg.evaluation import inference
from jaxseg.prediction import plan
from jaxseg.runtime.sharding import batch_sharded, make_mesh, replicated


class ImageError(ValueError):
  """An input the Segmenter cannot read as an image; the message names what it expects."""


_SHAPES = "(H, W) grey, (H, W, 1), (H, W, 3) RGB or (H, W, 4) RGBA with H, W >= 1"


def as_rgb(image, where: str = "image") -> np.ndarray:
  """(H, W, 3) uint8 of an array or PIL image: grey repeated, alpha dropped (as PIL's
  convert('RGB'), which training's decoding uses), uint16 scaled to its high byte (as
  16-bit files are), floats in [0, 1] times 255 rounded. ImageError otherwise."""
  if isinstance(image, Image.Image):
    return imagefiles.displayed_rgb(image, where)
  array = np.asarray(image)
  if array.ndim == 2:
    array = array[..., None]
  if array.ndim != 3 or array.shape[-1] not in (1, 3, 4) or 0 in array.shape:
    raise ImageError(f"{where}: shape {array.shape}; expected {_SHAPES}")
  if array.dtype == np.uint8:
    pass
  elif array.dtype == np.uint16:
    array = (array >> 8).astype(np.uint8)
  elif np.issubdtype(array.dtype, np.floating):
    low, high = float(np.min(array)), float(np.max(array))
    if not (0.0 <= low and high <= 1.0):  # NaN fails too.
      raise ImageError(f"{where}: float values from {low} to {high}; expected floats in "
                       "[0, 1] (or uint8 in 0-255)")
    array = np.rint(array.astype(np.float32) * 255.0).astype(np.uint8)
  else:
    raise ImageError(f"{where}: dtype {array.dtype}; expected uint8 (0-255), uint16 "
                     "(0-65535) or float in [0, 1]")
  return np.repeat(array, 3, axis=-1) if array.shape[-1] == 1 else array[..., :3]


def make_predict_fns(model, cfg: ml_collections.ConfigDict, variables, mesh):
  """(labels, probs): jitted (variables, images_BHW3 uint8, size_B2) -> labels_BHW int32
  or probs_BHWK float32, sharded over data."""
  data = batch_sharded(mesh)
  shardings = (replicated(mesh), data, data)

  # Each image at its own size (eval.protocol='native', whatever the checkpoint's eval
  # used): the function the eval step runs under that protocol.
  def labels(variables, images_BHW3, size_B2):
    return inference.native_labels(model, variables, images_BHW3, size_B2, cfg)

  def probs(variables, images_BHW3, size_B2):
    return inference.native_probs(model, variables, images_BHW3, size_B2, cfg)

  return (jax.jit(labels, in_shardings=shardings, out_shardings=data),
          jax.jit(probs, in_shardings=shardings, out_shardings=data))


class Segmenter:
  """A model with its weights, classes and compiled predict functions.

  Build one with `from_checkpoint` or `from_experiment`; call it on an image, or
  `predict` on a list. Each (bucketed canvas, batch) shape compiles once per
  Segmenter (and once per machine with the persistent compilation cache).
  """

  def __init__(self, model, variables, cfg: ml_collections.ConfigDict, meta: DatasetMeta,
               mesh: jax.sharding.Mesh | None = None, step: int | None = None):
    """`variables`: {'params', 'batch_stats'} of `model` (EMA ones already chosen);
    `cfg`: the run's config (its `eval` and `predict` sections say how to infer)."""
    if jax.process_count() > 1:
      raise ConfigError("jaxseg.Segmenter runs on a single process (as --mode predict)")
    self.mesh = mesh or make_mesh()
    validate_batch_sizes(cfg, "predict", self.mesh.size, jax.process_count())
    self.model, self.cfg, self.meta, self.step = model, cfg, meta, step
    self.variables = jax.device_put(variables, replicated(self.mesh))
    self._fns = make_predict_fns(model, cfg, self.variables, self.mesh)

  @classmethod
  def from_checkpoint(cls, workdir: str, step: int | str | None = None,
                      overrides: Sequence[str] = ()) -> "Segmenter":
    """The model of a training run's checkpoint, as `--mode predict` restores it.

    workdir: the run's --workdir (a local path or gs://...). step: a step number,
      'best', or a checkpoint path (`eval.checkpoint`); None: the newest intact one.
    overrides: `--set` strings of eval.* / predict.* keys, e.g. ["eval.mode=slide"];
      the model itself always comes from the checkpoint's stored config.
    """
    from jaxseg.config.resolve import apply_overrides
    from jaxseg.config.run_sections import get_base_config
    from jaxseg.runtime import compile_cache

    compile_cache.enable()
    overrides = [*overrides, *([] if step is None else [f"eval.checkpoint={step}"])]
    # Only eval.checkpoint is read before the checkpoint's own config takes over, and no
    # experiment ('') is compared with the checkpoint's: the run-level defaults suffice.
    cfg = get_base_config()
    apply_overrides(cfg, [o for o in overrides if o.partition("=")[0].strip() == "eval.checkpoint"])
    return cls.from_config(cfg, workdir, overrides)

  @classmethod
  def from_config(cls, cfg: ml_collections.ConfigDict, workdir: str,
                  overrides: Sequence[str] = ()) -> "Segmenter":
    """`--mode predict`'s restore: the checkpoint `cfg.eval.checkpoint` names in
    `workdir`, rebuilt from its own config with `overrides` (build_from_checkpoint)."""
    from jaxseg.runtime.build import build_from_checkpoint

    run, state, step, _ = build_from_checkpoint(cfg, workdir, overrides)
    return cls(run.model, state.for_eval().variables(), run.cfg, run.meta, run.mesh, step)

  @classmethod
  def from_experiment(cls, experiment: str, weights: str, overrides: Sequence[str] = ()
                      ) -> "Segmenter":
    """The model of an experiment (e.g. 'voc_fcn', 'demo:seed') with every variable from
    `weights`: a whole segmentation checkpoint file (`model.weights`: torchvision or
    mmsegmentation .pth, .safetensors, .npz). Classes and palette are the ones the
    experiment's dataset declares (nothing is prepared or read). A file that lacks any
    of the model's tensors is refused (WeightsMismatchError), never filled at random.
    """
    from jaxseg.config.resolve import build_config
    from jaxseg.data.datasets import declared_meta
    from jaxseg.models import build_model, pretrained
    from jaxseg.runtime import compile_cache

    compile_cache.enable()
    cfg = build_config(experiment, [*overrides, f"model.weights={weights}"])
    meta = declared_meta(cfg.data)
    abstract = pretrained.abstract_variables(cfg.model, meta.num_classes,
                                             (*cfg.augment.crop_size, 3))
    variables, report = pretrained.load_pretrained_state(
        abstract, pretrained.read_pretrained(cfg.model))
    if report.missing:
      raise WeightsMismatchError(
          f"{weights} lacks {len(report.missing)} of the model's tensors (e.g. "
          f"{', '.join(report.missing[:3])}); a Segmenter takes every one from the file")
    return cls(build_model(cfg.model, meta.num_classes), variables, cfg, meta)

  @property
  def class_names(self) -> tuple[str, ...]:
    return self.meta.class_names

  @property
  def palette(self) -> np.ndarray:
    """(K, 3) uint8: the colour of each class, as `--mode predict` paints masks."""
    return self.meta.palette_K3

  @property
  def num_classes(self) -> int:
    return self.meta.num_classes

  def __call__(self, image, probs: bool = False) -> np.ndarray:
    """Class indices (H, W) int32 of one image at its own size; with `probs`, the
    (H, W, K) float32 softmax probabilities (averaged as `eval.mode` says)."""
    return self.predict([image], probs=probs)[0]

  def predict(self, images: Sequence, probs: bool = False) -> list[np.ndarray]:
    """`__call__` on each of `images` (any mix of sizes and kinds), batched: images of
    one size bucket share device calls, large ones are tiled (prediction/plan.py)."""
    rgb = [as_rgb(image, f"images[{i}]") for i, image in enumerate(images)]
    out: list = [None] * len(rgb)
    for i, _, result in self.stream({i: a.shape[:2] for i, a in enumerate(rgb)},
                                    rgb.__getitem__, probs):
      out[i] = result
    return out

  def stream(self, sizes: dict[Hashable, tuple[int, int]],
             load: Callable[[Hashable], np.ndarray | None], probs: bool = False
             ) -> Iterator[tuple[Hashable, np.ndarray, np.ndarray]]:
    """(key, image_HW3, labels_HW or probs_HWK) of each image of `sizes` ({key: (H, W)}),
    in no set order, loading each with `load(key)` (uint8 (H, W, 3), or None to skip it)
    only while its batch needs it, so memory holds one batch of images."""
    labels_fn, probs_fn = self._fns
    predict_cfg = self.cfg.predict
    groups = plan.plan(sizes, predict_cfg)
    tiles_left = {}  # Tiled images: tiles not yet predicted.
    for pieces in groups.values():
      for piece in pieces:
        tiles_left[piece.key] = tiles_left.get(piece.key, 0) + piece.tiled
    loaded: dict = {}  # The images of the current batch only.
    sums: dict = {}  # Tiled images: (probability sums (H, W, K), tile counts (H, W, 1)).
    for ((CH, CW), tiled), pieces in groups.items():
      batch = plan.batch_size((CH, CW), predict_cfg, self.mesh.size)
      for start in range(0, len(pieces), batch):
        chunk = pieces[start:start + batch]
        images = np.zeros((batch, CH, CW, 3), np.uint8)
        size_B2 = np.tile(np.array([CH, CW], np.int32), (batch, 1))  # Filler rows: whole canvas.
        # A tiled image's pieces are consecutive: it stays loaded across batches while needed.
        loaded = {p.key: loaded[p.key] if p.key in loaded else load(p.key) for p in chunk}
        for i, piece in enumerate(chunk):
          top, left, h, w = piece.box
          if loaded[piece.key] is not None:
            images[i, :h, :w] = loaded[piece.key][top:top + h, left:left + w]
          size_B2[i] = (h, w)
        fn = probs_fn if tiled or probs else labels_fn
        out = np.asarray(jax.device_get(fn(self.variables, images, size_B2)))
        for i, piece in enumerate(chunk):
          top, left, h, w = piece.box
          image = loaded[piece.key]
          if image is None:  # The loader said why; nothing comes out for it.
            continue
          if not tiled:
            yield piece.key, image, out[i, :h, :w].copy()  # Not a view holding the batch.
            continue
          if piece.key not in sums:
            H, W = sizes[piece.key]
            sums[piece.key] = (np.zeros((H, W, out.shape[-1]), np.float32),
                               np.zeros((H, W, 1), np.float32))
          total, count = sums[piece.key]
          total[top:top + h, left:left + w] += out[i, :h, :w]
          count[top:top + h, left:left + w] += 1
          tiles_left[piece.key] -= 1
          if tiles_left[piece.key] == 0:
            total, count = sums.pop(piece.key)
            # Mean probabilities over overlapping tiles; labels: the argmax of their sum.
            yield piece.key, image, (total / count if probs else
                                     np.argmax(total, axis=-1).astype(np.int32))

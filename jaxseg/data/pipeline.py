"""grain input pipelines over prepared tfds ArrayRecord files (no TensorFlow here).

For training, each process reads its slice of every global batch from one
global shuffled order (`_SliceOfGlobalBatch`); for evaluation, its own shard
(grain's ShardByJaxProcess). Each yields its slice of the global batch as
numpy; `sharding.global_batch` assembles the global jax.Array.
"""

from __future__ import annotations

import math

import grain
import jax
import ml_collections
import numpy as np

from jaxseg.data import transforms
from jaxseg.data.augment import Compose, build_augment


class _Decode(grain.transforms.Map):
  """tfds example -> {'image' HxWx3 uint8, 'label' HxW uint8} (drops the string id)."""

  def map(self, example):
    return {"image": example["image"], "label": example["label"][..., 0]}


class _Augment(grain.transforms.RandomMap):
  def __init__(self, augment: Compose):
    self.augment = augment

  def random_map(self, example, rng: np.random.Generator):
    return self.augment(example, rng)


def _per_process(global_batch: int, what: str) -> int:
  if global_batch % jax.process_count():
    raise ValueError(f"{what}={global_batch} must be divisible by the number of "
                     f"processes ({jax.process_count()})")
  return global_batch // jax.process_count()


class _SliceOfGlobalBatch:
  """A grain sampler: this process's slice of each global batch of one global order.

  Every process walks the same shuffled order (seeded once); process p of P
  takes records [p*b, (p+1)*b) of each global batch of P*b. So the global batch,
  and each record's augmentation seed, are the same for any number of
  processes: a 2-process run sees exactly what a 1-process run sees.

  With W grain workers, worker w reads sampler indices w, w+W, ... and batches
  them itself, and the loader yields the workers' batches round robin; the
  index map undoes that striding, so the k-th batch yielded is global batch k
  for any worker count too.
  """

  def __init__(self, num_records: int, seed: int, per_process: int, worker_count: int):
    self.order = grain.samplers.IndexSampler(num_records=num_records, shuffle=True,
                                             num_epochs=None, seed=seed)
    self.per_process = per_process
    self.workers = max(worker_count, 1)
    self.process_index, self.process_count = jax.process_index(), jax.process_count()

  def __len__(self) -> int:
    return len(self.order)

  def __repr__(self) -> str:  # grain compares it with the checkpoint's on restore.
    return (f"_SliceOfGlobalBatch({self.order!r}, per_process={self.per_process}, "
            f"process={self.process_index}/{self.process_count})")

  def __getitem__(self, index: int) -> grain.RecordMetadata:
    worker, index_in_worker = index % self.workers, index // self.workers
    batch_in_worker, offset = divmod(index_in_worker, self.per_process)
    batch = batch_in_worker * self.workers + worker
    position = (batch * self.process_count + self.process_index) * self.per_process + offset
    chosen = self.order[position]
    return grain.RecordMetadata(index=index, record_key=chosen.record_key, rng=chosen.rng)


def train_loader(source, cfg: ml_collections.ConfigDict, ignore_index: int) -> grain.DataLoader:
  """An endless, shuffled, augmented loader; its iterator state is checkpointable."""
  per_process = _per_process(cfg.train.batch_size, "train.batch_size")
  sampler = _SliceOfGlobalBatch(len(source), cfg.data.shuffle_seed, per_process,
                                cfg.data.worker_count)
  ops = [_Decode(), _Augment(build_augment(cfg.augment, ignore_index)),
         grain.transforms.Batch(per_process, drop_remainder=True)]
  # The sampler already does the per-process split, so the loader must not shard again.
  return grain.DataLoader(data_source=source, sampler=sampler, operations=ops,
                          worker_count=cfg.data.worker_count,
                          shard_options=grain.sharding.NoSharding())


def mean_colour(cfg: ml_collections.ConfigDict) -> tuple[int, int, int]:
  """Eval padding colour: the mean (the device then sets padding to exactly 0, mmseg's value)."""
  return tuple(int(round(m)) for m in cfg.augment.mean)


class _PadToCanvas(grain.transforms.Map):
  """Pads to the fixed eval canvas so every batch has one static shape."""

  def __init__(self, canvas_HW: tuple[int, int], ignore_index: int, pad_colour):
    self.canvas_HW, self.ignore_index = tuple(canvas_HW), ignore_index
    self.pad_colour = tuple(pad_colour)

  def map(self, example):
    H, W = example["label"].shape
    if H > self.canvas_HW[0] or W > self.canvas_HW[1]:
      raise ValueError(f"eval image of {H}x{W} exceeds the eval canvas {self.canvas_HW}; "
                       "the dataset's metadata `eval_canvas` must cover every image")
    example = transforms.pad_to(example, self.canvas_HW, self.ignore_index, self.pad_colour)
    # The true size lets slide/flip inference keep to the image, not its padding.
    return dict(example, example_mask=np.bool_(True), size_HW=np.array([H, W], np.int32))


class _ResizeForEval(grain.transforms.Map):
  """mmseg's test Resize: the image keep-ratio within `scale` (cv2 bilinear); the label stays.

  The label is padded to the fixed canvas at its original size; the resized
  image, whose size varies, waits for `_on_canvas` to pad its batch.
  """

  def __init__(self, canvas_HW, ignore_index: int, scale: tuple[int, int]):
    self.canvas_HW, self.ignore_index, self.scale = tuple(canvas_HW), ignore_index, tuple(scale)

  def map(self, example):
    H, W = example["label"].shape
    if H > self.canvas_HW[0] or W > self.canvas_HW[1]:
      raise ValueError(f"eval label of {H}x{W} exceeds the eval canvas {self.canvas_HW}; "
                       "the dataset's metadata `eval_canvas` must cover every image")
    hw = transforms.rescaled_size(H, W, 1.0, self.scale)
    label = np.pad(example["label"], ((0, self.canvas_HW[0] - H), (0, self.canvas_HW[1] - W)),
                   constant_values=self.ignore_index)
    return {"image": transforms.resize_image(example["image"], hw), "label": label,
            "example_mask": np.bool_(True), "size_HW": np.array([H, W], np.int32),
            "resized_HW": np.array(hw, np.int32)}


def _groups(examples, n: int):
  """Lists of n consecutive examples, the last one shorter (itertools.batched, Python 3.12)."""
  group = []
  for example in examples:
    group.append(example)
    if len(group) == n:
      yield group
      group = []
  if group:
    yield group


def _on_canvas(group: list, bucket: int, pad_colour, empty) -> dict:
  """One batch of resized examples (fewer = masked filler) on the smallest canvas with sides
  multiples of `bucket` that covers them: one compile per distinct canvas.

  On several hosts every process takes the largest canvas any of them needs,
  so the global batch has one shape.
  """
  sizes = np.array([e["resized_HW"] for e in group] or [[1, 1]])
  canvas = np.array([math.ceil(n / bucket) * bucket for n in sizes.max(0)])
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # Multi-host only.
    canvas = np.asarray(multihost_utils.process_allgather(canvas)).max(0)
  per_process = empty["label"].shape[0]
  images = np.empty((per_process, *canvas, 3), np.uint8)
  images[...] = np.asarray(pad_colour, np.uint8)
  for i, e in enumerate(group):
    h, w = e["resized_HW"]
    images[i, :h, :w] = e["image"]
  batch = {k: np.concatenate([np.stack([e[k] for e in group]), v[len(group):]]) if group else v
           for k, v in empty.items() if k != "image"}
  return dict(batch, image=images)


def eval_batches(source, cfg: ml_collections.ConfigDict, canvas_HW, ignore_index: int):
  """Yields per-process batches covering the split exactly once.

  The last batch is padded with masked examples (`example_mask` False) rather
  than dropped, and every process yields the same number of batches so the
  sharded eval step runs in lockstep across hosts. `eval.protocol='resize'`
  adds `resized_HW` and puts the resized images on a per-batch canvas.
  """
  per_process = _per_process(cfg.eval.batch_size, "eval.batch_size")
  shard = grain.sharding.ShardByJaxProcess(drop_remainder=False)
  sampler = grain.samplers.IndexSampler(
      num_records=len(source), shard_options=shard, shuffle=False, num_epochs=1)
  colour = mean_colour(cfg)
  resize = cfg.eval.protocol == "resize"
  if resize:  # Batched here, not by grain: each batch gets its own canvas.
    ops = [_Decode(), _ResizeForEval(canvas_HW, ignore_index, cfg.eval.resize_scale)]
  else:
    ops = [_Decode(), _PadToCanvas(canvas_HW, ignore_index, colour),
           grain.transforms.Batch(per_process, drop_remainder=False)]
  loader = grain.DataLoader(data_source=source, sampler=sampler, operations=ops,
                            worker_count=cfg.data.worker_count)
  # The largest shard has ceil(N / P) records; every process matches its batch count.
  num_batches = math.ceil(math.ceil(len(source) / jax.process_count()) / per_process)
  H, W = canvas_HW
  empty = {"image": np.zeros((per_process, H, W, 3), np.uint8),
           "label": np.full((per_process, H, W), ignore_index, np.uint8),
           "example_mask": np.zeros((per_process,), bool),
           "size_HW": np.tile(np.array([H, W], np.int32), (per_process, 1))}
  if resize:
    empty["resized_HW"] = np.ones((per_process, 2), np.int32)
    pack = lambda group: _on_canvas(group, cfg.eval.resize_bucket, colour, empty)
    batches = map(pack, _groups(loader, per_process))
  else:
    pack = lambda group: empty
    batches = (_pad_batch(batch, empty) for batch in loader)
  produced = 0
  for batch in batches:
    yield batch
    produced += 1
  for _ in range(num_batches - produced):
    yield pack([])


def _pad_batch(batch, empty):
  n = batch["label"].shape[0]
  if n == empty["label"].shape[0]:
    return batch
  return {k: np.concatenate([batch[k], empty[k][n:]]) for k in empty}


def eval_example(batch: dict, i: int) -> tuple[np.ndarray, np.ndarray]:
  """(image HxWx3 uint8, label HxW) of example i of an `eval_batches` batch, without its
  canvas padding; under eval.protocol=resize the image is resized back to the label's size."""
  H, W = batch["size_HW"][i]
  image = batch["image"][i, :H, :W]
  if "resized_HW" in batch:
    h, w = batch["resized_HW"][i]
    image = transforms.resize_image(batch["image"][i, :h, :w], (H, W))
  return image, batch["label"][i, :H, :W]

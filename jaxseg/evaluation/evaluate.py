"""Evaluation over an entire split: the jitted eval step (whole / slide / aug = multi-scale+flip),
one confusion matrix summed over every batch, metrics, and a few sample predictions."""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from jaxseg.data import pipeline
from jaxseg.evaluation import inference, metrics
from jaxseg.runtime import failures, runlog
from jaxseg.runtime.sharding import batch_sharded, global_batch, replicated
from jaxseg.training.state import state_shardings


def make_eval_step(model, cfg, num_classes: int, ignore_index: int):
  """step(state, batch) -> (confusion matrix of valid pixels, prediction_BHW int32).

  batch = {'image', 'label', 'example_mask', 'size_HW'} on the padded eval canvas
  (+ 'resized_HW' under eval.protocol='resize', the image then on its own canvas).
  """

  def step(state, batch):
    pred_BHW = inference.predict_labels(model, state.variables(), batch, cfg)
    labels_BHW = batch["label"].astype(jnp.int32)
    # Masked (padding) examples, padding pixels and ignore pixels count nowhere.
    valid_BHW = (labels_BHW != ignore_index) & batch["example_mask"][:, None, None]
    return metrics.confusion_matrix(pred_BHW, labels_BHW, valid_BHW, num_classes), pred_BHW

  return step


def jit_eval_step(step, state, mesh):
  # Predictions stay batch-sharded on device; only the report's few are fetched.
  return jax.jit(step, in_shardings=(state_shardings(state), batch_sharded(mesh)),
                 out_shardings=(replicated(mesh), batch_sharded(mesh)))


@dataclasses.dataclass
class EvalResult:
  summary: dict
  confusion: np.ndarray  # [K, K] int64, rows = ground truth.
  # The first `eval.report_images` examples of process 0 (which writes the reports):
  # image (uint8), label, prediction, each cropped to its true size. Empty elsewhere.
  samples: list[dict]


def evaluate_split(eval_step, state, source, cfg, meta, mesh) -> EvalResult:
  per_process = cfg.eval.batch_size // jax.process_count()
  total = math.ceil(math.ceil(len(source) / jax.process_count()) / per_process)
  want = cfg.eval.report_images if jax.process_index() == 0 else 0
  batch_confs, kept = [], []
  bar = runlog.progress_bar(
      iterable=pipeline.eval_batches(source, cfg, meta.eval_canvas_HW, meta.ignore_index),
      total=total, desc="eval", leave=False)
  # Dispatch is asynchronous: an out-of-memory error may surface at the fetch.
  with failures.memory_hint("in evaluation", failures.eval_keys(cfg, meta.eval_canvas_HW)):
    for batch in bar:
      # Keep every batch in flight, fetch once at the end.
      conf, pred = eval_step(state, global_batch(mesh, batch))
      batch_confs.append(conf)
      if sum(int(b["example_mask"].sum()) for b, _ in kept) < want:
        kept.append((batch, pred))
    # Sum on host in int64: a large split overflows int32 pixel counts.
    conf = np.zeros((meta.num_classes, meta.num_classes), np.int64)
    for c in batch_confs:
      conf += np.asarray(c, np.int64)
  return EvalResult(metrics.summarize(conf), conf, _samples(kept, want))


def local_rows(array_B) -> np.ndarray:
  """This process's rows of a batch-sharded global array, in its local batch's order
  (`global_batch` put them so); the whole array on one process. Only local shards are
  read: the other processes' rows are not addressable here."""
  shards = {s.index[0].start or 0: s for s in array_B.addressable_shards}  # One per slice.
  return np.concatenate([np.asarray(shards[start].data) for start in sorted(shards)])


def _samples(kept, want: int) -> list[dict]:
  samples = []
  for batch, pred in kept:
    pred = local_rows(pred)
    for i in np.flatnonzero(batch["example_mask"])[:want - len(samples)]:
      image, label = pipeline.eval_example(batch, i)
      H, W = label.shape
      samples.append({"image": image, "label": label, "pred": pred[i, :H, :W].astype(np.uint8)})
  return samples


def evaluate(eval_step, state, source, cfg, meta, mesh) -> tuple[dict, np.ndarray]:
  """Returns (summary metrics, confusion matrix int64) over every example of `source`."""
  result = evaluate_split(eval_step, state, source, cfg, meta, mesh)
  return result.summary, result.confusion

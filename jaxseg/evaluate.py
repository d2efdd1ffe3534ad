"""Whole-image evaluation over an entire split: one confusion matrix, then metrics."""

from __future__ import annotations

import math

import jax
import numpy as np
import tqdm

from jaxseg import metrics
from jaxseg.data import pipeline
from jaxseg.sharding import global_batch


def evaluate(eval_step, state, source, cfg, meta, mesh) -> tuple[dict, np.ndarray]:
  """Returns (summary metrics, confusion matrix int64) over every example of `source`."""
  per_process = cfg.eval.batch_size // jax.process_count()
  total = math.ceil(math.ceil(len(source) / jax.process_count()) / per_process)
  batch_confs = []
  bar = tqdm.tqdm(pipeline.eval_batches(source, cfg, meta.eval_canvas_HW, meta.ignore_index),
                  total=total, desc="eval", leave=False, disable=jax.process_index() != 0)
  for batch in bar:
    # Dispatch is asynchronous: keep every batch in flight, fetch once at the end.
    batch_confs.append(eval_step(state, global_batch(mesh, batch)))
  # Sum on host in int64: a large split overflows int32 pixel counts.
  conf = np.zeros((meta.num_classes, meta.num_classes), np.int64)
  for c in batch_confs:
    conf += np.asarray(c, np.int64)
  return metrics.summarize(conf), conf

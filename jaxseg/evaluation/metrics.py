"""Confusion matrix over a whole split, and the metrics derived from it.

Metrics come from one confusion matrix summed over every pixel of the split;
averaging per-batch mIoU would weight batches, not pixels, and is wrong.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def confusion_matrix(pred_BHW, labels_BHW, valid_BHW, num_classes: int) -> jax.Array:
  """[num_classes, num_classes] int32 counts; rows = ground truth, cols = prediction."""
  valid = valid_BHW & (labels_BHW < num_classes)
  index = jnp.where(valid, labels_BHW.astype(jnp.int32) * num_classes + pred_BHW, 0)
  counts = jnp.bincount(index.ravel(), weights=valid.ravel().astype(jnp.int32),
                        length=num_classes * num_classes)
  return counts.reshape(num_classes, num_classes).astype(jnp.int32)


def _divide(num, den):
  with np.errstate(divide="ignore", invalid="ignore"):
    return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def _nanmean(values: np.ndarray) -> float:
  return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")


def summarize(conf_KK: np.ndarray) -> dict:
  """Overall and per-class metrics (float64) from a confusion matrix (rows = truth).

  Undefined ratios are NaN and left out of the means (mmseg's convention):
  IoU and Dice of a class absent from both ground truth and prediction,
  recall (`acc`) of a class absent from the ground truth, precision of a class
  never predicted. Frequency-weighted IoU weights each class's IoU by its
  share of ground-truth pixels.
  """
  conf = np.asarray(conf_KK, np.float64)
  tp = np.diag(conf)
  gt = conf.sum(axis=1)
  pred = conf.sum(axis=0)
  total = conf.sum()
  iou = _divide(tp, gt + pred - tp)
  recall = _divide(tp, gt)
  precision = _divide(tp, pred)
  dice = _divide(2 * tp, gt + pred)
  freq = gt / total if total else np.zeros_like(gt)
  return {
      "pixel_acc": float(tp.sum() / total) if total else float("nan"),
      "mean_acc": _nanmean(recall),
      "mean_precision": _nanmean(precision),
      "miou": _nanmean(iou),
      "fwiou": float(np.sum(freq[gt > 0] * iou[gt > 0])) if total else float("nan"),
      "mean_dice": _nanmean(dice),
      "per_class_iou": iou.tolist(),
      "per_class_acc": recall.tolist(),
      "per_class_precision": precision.tolist(),
      "per_class_dice": dice.tolist(),
  }

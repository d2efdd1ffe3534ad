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


def summarize(conf_KK: np.ndarray) -> dict:
  """Pixel accuracy, mean class accuracy, mIoU and per-class IoU (float64).

  A class absent from both ground truth and prediction has IoU NaN and is left
  out of the means; a class absent from the ground truth has recall NaN.
  """
  conf = np.asarray(conf_KK, np.float64)
  tp = np.diag(conf)
  gt = conf.sum(axis=1)
  pred = conf.sum(axis=0)
  iou = _divide(tp, gt + pred - tp)
  recall = _divide(tp, gt)
  total = conf.sum()
  return {
      "pixel_acc": float(tp.sum() / total) if total else float("nan"),
      "mean_acc": float(np.nanmean(recall)) if np.isfinite(recall).any() else float("nan"),
      "miou": float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan"),
      "per_class_iou": iou.tolist(),
      "per_class_acc": recall.tolist(),
  }

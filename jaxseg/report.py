"""Human-readable results: the eval summary table printed at the end of a run."""

from __future__ import annotations

import math


def _pct(value: float) -> str:
  return "   n/a" if value is None or math.isnan(value) else f"{100 * value:6.2f}"


def summary_table(summary: dict, class_names) -> str:
  """A fixed-width table: overall metrics, then IoU and accuracy per class."""
  width = max(12, *(len(n) for n in class_names))
  lines = [f"{'metric':<{width}}  value",
           f"{'mIoU':<{width}}  {_pct(summary['miou'])}",
           f"{'pixel acc':<{width}}  {_pct(summary['pixel_acc'])}",
           f"{'mean acc':<{width}}  {_pct(summary['mean_acc'])}",
           "",
           f"{'class':<{width}}    IoU    acc"]
  for name, iou, acc in zip(class_names, summary["per_class_iou"], summary["per_class_acc"]):
    lines.append(f"{name:<{width}} {_pct(iou)} {_pct(acc)}")
  lines.append("(n/a: class absent from ground truth and prediction; excluded from means)")
  return "\n".join(lines)

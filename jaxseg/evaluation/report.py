"""Human-readable results: the summary table printed at the end of a run, and the
`reports/` folder written to the workdir after every evaluation.

reports/ (training's evaluations; each overwrites the last, the step is inside the
JSON/markdown). A separate `--mode eval` writes the same files to its own
reports/eval_<mode>_step<N>/ instead (a new `_2`, `_3`... if that exists), so it never
overwrites the training's reports or an earlier evaluation's:
  per_class.json / per_class.md   IoU, precision, recall, Dice per class (NaN -> null / n/a)
  confusion.png                   row-normalised confusion matrix (rows = ground truth)
  curves.png                      train loss, learning rate and val mIoU from metrics.jsonl
  predictions.png                 image | ground truth | prediction for the first N val images

The three figures are drawn by jaxseg/evaluation/figures.py (matplotlib); with TensorBoard on
they are also logged as images under `reports/confusion`, `reports/curves` and
`reports/predictions`.
"""

from __future__ import annotations

import json
import math
import os

from jaxseg import paths
from jaxseg.evaluation import figures
from jaxseg.runtime.writer import MetricsWriter, read_records

NA_NOTE = "(n/a: class absent from ground truth and prediction; excluded from means)"
_OVERALL = (("mIoU", "miou"), ("fwIoU", "fwiou"), ("pixel acc", "pixel_acc"),
            ("mean acc", "mean_acc"), ("mean precision", "mean_precision"),
            ("mean Dice", "mean_dice"))
_PER_CLASS = (("IoU", "per_class_iou"), ("precision", "per_class_precision"),
              ("recall", "per_class_acc"), ("dice", "per_class_dice"))


def _pct(value: float) -> str:
  return "   n/a" if value is None or math.isnan(value) else f"{100 * value:6.2f}"


def summary_table(summary: dict, class_names) -> str:
  """A fixed-width table: overall metrics, then IoU and accuracy per class."""
  width = max(14, *(len(n) for n in class_names))
  lines = [f"{'metric':<{width}}  value"]
  lines += [f"{title:<{width}}  {_pct(summary[key])}" for title, key in _OVERALL]
  lines += ["", f"{'class':<{width}}    IoU    acc"]
  for name, iou, acc in zip(class_names, summary["per_class_iou"], summary["per_class_acc"]):
    lines.append(f"{name:<{width}} {_pct(iou)} {_pct(acc)}")
  lines.append(NA_NOTE)
  return "\n".join(lines)


def _finite_or_none(value):
  return None if value is None or not math.isfinite(value) else float(value)


def per_class_json(summary: dict, class_names, step: int) -> dict:
  classes = [{"class": name, **{title: _finite_or_none(summary[key][i])
                                for title, key in _PER_CLASS}}
             for i, name in enumerate(class_names)]
  return {"step": int(step), **{key: _finite_or_none(summary[key]) for _, key in _OVERALL},
          "classes": classes, "note": "null = undefined (class absent); excluded from means"}


def per_class_markdown(summary: dict, class_names, step: int) -> str:
  lines = [f"# Evaluation at step {step}", "",
           " | ".join(f"{title} {_pct(summary[key]).strip()}" for title, key in _OVERALL), "",
           "| class | IoU | precision | recall | Dice |", "|---|---:|---:|---:|---:|"]
  for i, name in enumerate(class_names):
    cells = " | ".join(_pct(summary[key][i]).strip() for _, key in _PER_CLASS)
    lines.append(f"| {name} | {cells} |")
  lines += ["", NA_NOTE.strip("()").capitalize() + "."]
  return "\n".join(lines) + "\n"


def eval_reports_dir(workdir: str, mode: str, step: int) -> str:
  """A new folder under reports/ for a separate evaluation (never an existing one)."""
  base = os.path.join(workdir, "reports", f"eval_{mode}_step{step}")
  out, n = base, 1
  while paths.resolve(out).exists():
    n += 1
    out = f"{base}_{n}"
  return out


def report_figures(workdir: str, conf_KK, samples, meta, alpha: float = 0.5) -> dict:
  """{name: matplotlib Figure} of the three figures (curves from workdir's metrics.jsonl)."""
  names = list(meta.class_names)
  return {
      "confusion": figures.confusion_figure(conf_KK, names),
      "curves": figures.curves_figure(read_records(os.path.join(workdir, "metrics.jsonl"))),
      "predictions": figures.predictions_figure(samples, meta.palette_K3, names, alpha),
  }


def write_reports(workdir: str, step: int, summary: dict, conf_KK, samples, meta,
                  alpha: float = 0.5, out: str | None = None,
                  writer: MetricsWriter | None = None) -> str:
  """Writes `out` (default reports/; see the module docstring) and returns its path; the
  figures also go to `writer`'s TensorBoard, if it has one. Process 0 only. Each file is
  replaced atomically (never left half-written)."""
  out = out or os.path.join(workdir, "reports")
  names = list(meta.class_names)
  drawn = report_figures(workdir, conf_KK, samples, meta, alpha)
  files = {
      "per_class.json": json.dumps(per_class_json(summary, names, step), indent=2),
      "per_class.md": per_class_markdown(summary, names, step),
      **{f"{name}.png": figures.png(fig) for name, fig in drawn.items()},
  }
  for name, data in files.items():
    paths.write_bytes(os.path.join(out, name), data)
  if writer is not None and writer.tb is not None:
    writer.write_images(step, {f"reports/{name}": figures.decode_png(files[f"{name}.png"])
                               for name in drawn})
  return out

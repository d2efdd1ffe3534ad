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

Figures are drawn with PIL and numpy alone, so no plotting library is needed.
"""

from __future__ import annotations

import io
import json
import math
import os

import numpy as np
from PIL import Image, ImageDraw

from jaxseg import paths
from jaxseg.runtime.writer import read_records

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


def confusion_image(conf_KK: np.ndarray, class_names, cell: int = 24) -> Image.Image:
  """Row-normalised heat map (white 0 -> dark blue 1) with class names on both axes."""
  conf = np.asarray(conf_KK, np.float64)
  rows = conf.sum(axis=1, keepdims=True)
  norm = np.divide(conf, rows, out=np.zeros_like(conf), where=rows > 0)
  K = len(class_names)
  margin, top = 8 + 6 * max(len(n) for n in class_names), 34
  img = Image.new("RGB", (margin + K * cell + 4, top + K * cell + 4), "white")
  draw = ImageDraw.Draw(img)
  for t in range(K):
    for p in range(K):
      v = norm[t, p]
      colour = tuple(int(255 - v * (255 - c)) for c in (8, 48, 107))
      x, y = margin + p * cell, top + t * cell
      draw.rectangle([x, y, x + cell - 1, y + cell - 1], fill=colour, outline=(200, 200, 200))
      if cell >= 20 and conf[t].sum():
        draw.text((x + 2, y + cell // 3), f"{int(round(100 * v))}",
                  fill="white" if v > 0.5 else "black")
    draw.text((2, top + t * cell + cell // 3), class_names[t][:margin // 6], fill="black")
  for p in range(K):  # Column labels: first letters, rows spell them out.
    draw.text((margin + p * cell + 2, top - 14), class_names[p][:3], fill="black")
  draw.text((2, 2), "rows: truth, cols: prediction (%)", fill="black")
  return img


def _panel(title: str, points, size=(320, 200)) -> Image.Image:
  """One line plot: axes, min/max labels, the series as a polyline."""
  W, H = size
  img = Image.new("RGB", size, "white")
  draw = ImageDraw.Draw(img)
  draw.text((6, 4), title, fill="black")
  left, top, right, bottom = 44, 20, W - 8, H - 18
  draw.rectangle([left, top, right, bottom], outline="black")
  points = [(x, y) for x, y in points if y is not None and math.isfinite(y)]
  if not points:
    draw.text((left + 8, top + 8), "no data", fill="gray")
    return img
  xs, ys = np.array([p[0] for p in points], float), np.array([p[1] for p in points], float)
  x0, x1 = xs.min(), max(xs.max(), xs.min() + 1)
  y0, y1 = ys.min(), ys.max() if ys.max() > ys.min() else ys.min() + 1e-9
  px = left + (xs - x0) / (x1 - x0) * (right - left)
  py = bottom - (ys - y0) / (y1 - y0) * (bottom - top)
  if len(px) > 1:
    draw.line(list(zip(px.tolist(), py.tolist())), fill=(31, 119, 180), width=2)
  for x, y in zip(px, py):
    draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=(31, 119, 180))
  draw.text((2, top), f"{y1:.3g}", fill="black")
  draw.text((2, bottom - 10), f"{y0:.3g}", fill="black")
  draw.text((left, bottom + 3), f"{int(x0)}", fill="black")
  draw.text((right - 30, bottom + 3), f"{int(x1)}", fill="black")
  return img


def curves_image(records: list[dict]) -> Image.Image:
  """Train loss, learning rate and val mIoU against the step, side by side. The
  mIoU is the training's own evaluations: a separate `--mode eval` (another
  mode or checkpoint) is not a point of that curve."""
  records = [r for r in records if r.get("eval/run") != "eval"]
  panels = [_panel(title, [(r["step"], r.get(key)) for r in records if key in r])
            for title, key in (("train loss", "loss"), ("learning rate", "lr"),
                               ("val mIoU", "eval/miou"))]
  img = Image.new("RGB", (sum(p.width for p in panels), panels[0].height), "white")
  for i, panel in enumerate(panels):
    img.paste(panel, (i * panel.width, 0))
  return img


def colorize(mask_HW: np.ndarray, palette_K3: np.ndarray) -> np.ndarray:
  """Class indices -> RGB; indices outside the palette (ignore) are white."""
  table = np.full((256, 3), 255, np.uint8)
  table[:len(palette_K3)] = palette_K3
  return table[mask_HW.astype(np.uint8)]


def overlay(image_HW3: np.ndarray, mask_HW: np.ndarray, palette_K3, alpha: float) -> np.ndarray:
  colours = colorize(mask_HW, palette_K3).astype(np.float32)
  return ((1 - alpha) * image_HW3.astype(np.float32) + alpha * colours).round().astype(np.uint8)


def predictions_grid(samples: list[dict], palette_K3, alpha: float = 0.5) -> Image.Image:
  """One row per sample: image | ground-truth overlay | prediction overlay."""
  if not samples:
    return Image.new("RGB", (64, 16), "white")
  cell_h = max(s["image"].shape[0] for s in samples)
  cell_w = max(s["image"].shape[1] for s in samples)
  grid = Image.new("RGB", (3 * cell_w, 14 + len(samples) * cell_h), "white")
  draw = ImageDraw.Draw(grid)
  for i, title in enumerate(("image", "ground truth", "prediction")):
    draw.text((i * cell_w + 2, 1), title, fill="black")
  for row, s in enumerate(samples):
    views = (s["image"], overlay(s["image"], s["label"], palette_K3, alpha),
             overlay(s["image"], s["pred"], palette_K3, alpha))
    for col, view in enumerate(views):
      grid.paste(Image.fromarray(view), (col * cell_w, 14 + row * cell_h))
  return grid


def eval_reports_dir(workdir: str, mode: str, step: int) -> str:
  """A new folder under reports/ for a separate evaluation (never an existing one)."""
  base = os.path.join(workdir, "reports", f"eval_{mode}_step{step}")
  out, n = base, 1
  while paths.resolve(out).exists():
    n += 1
    out = f"{base}_{n}"
  return out


def _png(image: Image.Image) -> bytes:
  buffer = io.BytesIO()
  image.save(buffer, format="PNG")
  return buffer.getvalue()


def write_reports(workdir: str, step: int, summary: dict, conf_KK, samples, meta,
                  alpha: float = 0.5, out: str | None = None) -> str:
  """Writes `out` (default reports/; see the module docstring) and returns its path.
  Process 0 only. Each file is replaced atomically (never left half-written)."""
  out = out or os.path.join(workdir, "reports")
  names = list(meta.class_names)
  files = {
      "per_class.json": json.dumps(per_class_json(summary, names, step), indent=2),
      "per_class.md": per_class_markdown(summary, names, step),
      "confusion.png": _png(confusion_image(conf_KK, names)),
      "curves.png": _png(curves_image(read_records(os.path.join(workdir, "metrics.jsonl")))),
      "predictions.png": _png(predictions_grid(samples, meta.palette_K3, alpha)),
  }
  for name, data in files.items():
    paths.write_bytes(os.path.join(out, name), data)
  return out

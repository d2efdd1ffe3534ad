"""The figures of a run, drawn with matplotlib: training curves, the confusion matrix,
and a grid of images with their labels and predictions.

Each builder returns a `matplotlib.figure.Figure` (its axes, labels and legends can be
read back), and `png` renders one. No pyplot: each figure has its own Agg canvas,
so no global state is touched and drawing is safe in any thread or process.
"""

from __future__ import annotations

import io
import math

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator
from PIL import Image

DPI = 100
# No side over this many inches (2,400 px at DPI), even for ADE20K's 150 classes.
MAX_SIDE_IN = 24.0
# Percentages are written in the confusion matrix's cells up to this many classes
# (VOC's 21, Cityscapes' 19); beyond it the cells are too small to read.
ANNOTATE_MAX_CLASSES = 25
IGNORE_RGB = (255, 255, 255)  # Pixels outside the palette: the ignore index.


def png(fig: Figure) -> bytes:
  """The figure as PNG bytes."""
  buffer = io.BytesIO()
  FigureCanvasAgg(fig).print_png(buffer)
  return buffer.getvalue()


def decode_png(data: bytes) -> np.ndarray:
  """PNG bytes (e.g. `png(fig)`) -> (H, W, 3) uint8, as TensorBoard takes an image."""
  return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def _finite_points(records, key, scale=1.0):
  points = [(r["step"], r[key] * scale) for r in records
            if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])]
  return [p[0] for p in points], [p[1] for p in points]


def curves_figure(records: list[dict]) -> Figure:
  """Train loss (the total and each term), learning rate and val mIoU against the step.
  The mIoU is the training's own evaluations: a separate `--mode eval` (another mode or
  checkpoint) is not a point of that curve."""
  records = [r for r in records if r.get("eval/run") != "eval"]
  terms = sorted({k for r in records for k in r if k.startswith("loss/")})
  fig = Figure(figsize=(15, 4), dpi=DPI, layout="constrained")
  # One term is the total itself: named in the total's label, not drawn twice.
  names = [t.removeprefix("loss/") for t in terms]
  losses = ([("total", "loss", 1.0)] + [(n, t, 1.0) for n, t in zip(names, terms)]
            if len(terms) > 1 else [(f"total ({names[0]})" if names else "total", "loss", 1.0)])
  panels = (("train loss", "loss", losses),
            ("learning rate", "learning rate", [("lr", "lr", 1.0)]),
            ("validation mIoU", "mIoU (%)", [("val mIoU", "eval/miou", 100.0)]))
  for ax, (title, ylabel, series) in zip(fig.subplots(1, 3), panels):
    ax.set_title(title)
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # Steps are whole.
    drawn = 0
    for i, (label, key, scale) in enumerate(series):
      xs, ys = _finite_points(records, key, scale)
      if xs:
        # Few points (evaluations) get markers; loss terms are dashed under the total.
        ax.plot(xs, ys, label=label, marker="o" if len(xs) < 30 else None, markersize=4,
                linestyle="--" if i else "-", linewidth=1.0 if i else 1.5)
        drawn += 1
    if drawn:
      ax.legend(loc="best", fontsize=8)
    else:
      ax.text(0.5, 0.5, "no data yet", transform=ax.transAxes, ha="center", color="gray")
    if title == "learning rate":
      ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
  return fig


def _row_normalised(conf_KK: np.ndarray) -> np.ndarray:
  """Percent of each true class's pixels; NaN for a class absent from the ground truth."""
  conf = np.asarray(conf_KK, np.float64)
  rows = conf.sum(axis=1, keepdims=True)
  return np.divide(100 * conf, rows, out=np.full_like(conf, np.nan), where=rows > 0)


def confusion_figure(conf_KK: np.ndarray, class_names) -> Figure:
  """Row-normalised confusion matrix (rows = ground truth) with every class name on both
  axes and a colour bar; its size and fonts scale with the class count, within bounds."""
  names = [str(n) for n in class_names]
  K = len(names)
  norm = _row_normalised(conf_KK)
  font = float(np.clip(200 / K, 5, 10))  # Points: 10 for VOC, 5 for ADE20K.
  cell_in = max(1.4 * font / 72, min(0.45, 14 / K))  # A cell holds a line of its labels.
  label_in = 0.6 * font / 72 * max(len(n) for n in names) + 0.5
  width = min(MAX_SIDE_IN, max(5.0, label_in + K * cell_in + 1.6))  # + colour bar
  height = min(MAX_SIDE_IN, max(4.0, label_in + K * cell_in + 0.8))  # + title
  fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
  ax = fig.subplots()
  cmap = colormaps["Blues"].with_extremes(bad="lightgrey")  # Grey: an absent class's row.
  image = ax.imshow(np.ma.masked_invalid(norm), cmap=cmap, vmin=0, vmax=100,
                    interpolation="nearest")
  fig.colorbar(image, ax=ax, label="% of the true class's pixels", shrink=0.8)
  ax.set_xticks(range(K), labels=names, rotation=90, fontsize=font)
  ax.set_yticks(range(K), labels=names, fontsize=font)
  ax.set_xlabel("prediction")
  ax.set_ylabel("ground truth")
  absent = np.isnan(norm[:, 0]).any()
  ax.set_title("confusion matrix, rows normalised" + (" (grey: class absent)" if absent else ""))
  if K <= ANNOTATE_MAX_CLASSES:
    cell_font = min(font, 8)
    for t, p in zip(*np.nonzero(np.isfinite(norm))):
      v = norm[t, p]
      ax.text(p, t, f"{v:.0f}", ha="center", va="center", fontsize=cell_font,
              color="white" if v > 50 else "black")
  return fig


def colorize(mask_HW: np.ndarray, palette_K3: np.ndarray) -> np.ndarray:
  """Class indices -> RGB; indices outside the palette (ignore) are IGNORE_RGB."""
  table = np.full((256, 3), IGNORE_RGB, np.uint8)
  table[:len(palette_K3)] = palette_K3
  return table[mask_HW.astype(np.uint8)]


def overlay(image_HW3: np.ndarray, mask_HW: np.ndarray, palette_K3, alpha: float) -> np.ndarray:
  colours = colorize(mask_HW, palette_K3).astype(np.float32)
  return ((1 - alpha) * image_HW3.astype(np.float32) + alpha * colours).round().astype(np.uint8)


def legend_handles(masks, palette_K3, class_names) -> list[Patch]:
  """One patch per class present in `masks`, then 'ignore' if any pixel is outside them."""
  palette = np.asarray(palette_K3)
  present = np.unique(np.concatenate([np.asarray(m).ravel() for m in masks]))
  handles = [Patch(facecolor=palette[k] / 255, edgecolor="black", linewidth=0.5,
                   label=class_names[k]) for k in present if k < len(class_names)]
  if (present >= len(class_names)).any():
    handles.append(Patch(facecolor=np.asarray(IGNORE_RGB) / 255, edgecolor="black",
                         linewidth=0.5, label="ignore"))
  return handles


def image_grid(rows: list[list[np.ndarray]], titles, handles, cell_in: float = 2.5,
               title: str = "") -> Figure:
  """A grid of RGB images (one list per row, columns titled once), a legend below, and
  an optional figure title."""
  n_rows, n_cols = max(1, len(rows)), len(titles)
  # Cells shaped like the largest image (height / width), the grid within MAX_SIDE_IN.
  aspect = (max(v.shape[0] for r in rows for v in r) / max(v.shape[1] for r in rows for v in r)
            if rows else 1.0)
  extra_in = 0.3 * math.ceil(len(handles) / 4) + 0.7 + 0.4 * bool(title)  # Legend, titles.
  cell_in = min(cell_in, (MAX_SIDE_IN - extra_in) / (n_rows * aspect))
  fig = Figure(figsize=(n_cols * cell_in + 0.3, n_rows * cell_in * aspect + extra_in),
               dpi=DPI, layout="constrained")
  if title:
    fig.suptitle(title)
  axes = fig.subplots(n_rows, n_cols, squeeze=False)
  for col, heading in enumerate(titles):
    axes[0, col].set_title(heading)
  for r, views in enumerate(rows):
    for c, view in enumerate(views):
      axes[r, c].imshow(view, interpolation="nearest")
  for ax in axes.ravel():
    ax.set_axis_off()
  if not rows:
    axes[0, 0].text(0, 0.5, "no samples (eval.report_images=0)", color="gray")
  if handles:
    fig.legend(handles=handles, loc="outside lower center", ncol=min(4, len(handles)),
               fontsize=8, frameon=False)
  return fig


def predictions_figure(samples: list[dict], palette_K3, class_names,
                       alpha: float = 0.5) -> Figure:
  """One row per sample: image | ground-truth overlay | prediction overlay, with a legend of
  the classes present (and 'ignore')."""
  rows = [[s["image"], overlay(s["image"], s["label"], palette_K3, alpha),
           overlay(s["image"], s["pred"], palette_K3, alpha)] for s in samples]
  masks = [s[k] for s in samples for k in ("label", "pred")]
  handles = legend_handles(masks, palette_K3, class_names) if masks else []
  return image_grid(rows, ("image", "ground truth", "prediction"), handles)

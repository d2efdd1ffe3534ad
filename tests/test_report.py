"""reports/ after an evaluation: files exist, the JSON equals the logged metrics, the
figures have titled axes, full class names, colour bar and legends (read back from the
matplotlib figures), and the PNGs and TensorBoard images are real pictures."""

import glob
import io
import json
import math
import os

import numpy as np
from PIL import Image
from tensorboardX.proto import event_pb2

from jaxseg.config.resolve import build_config
from jaxseg.data.builders import ade20k_classes
from jaxseg.evaluation import figures, report
from tests.test_writer_resume import _records


def _not_blank(png_path_or_bytes, min_size=(200, 150)) -> np.ndarray:
  """The decoded RGB picture; fails if it is small or of (almost) one colour."""
  source = io.BytesIO(png_path_or_bytes) if isinstance(png_path_or_bytes, bytes) else \
      png_path_or_bytes
  rgb_HW3 = np.asarray(Image.open(source).convert("RGB"))
  assert rgb_HW3.shape[1] >= min_size[0] and rgb_HW3.shape[0] >= min_size[1], rgb_HW3.shape
  colours = np.unique(rgb_HW3.astype(np.uint32) @ np.array([1 << 16, 1 << 8, 1], np.uint32))
  assert len(colours) > 20, len(colours)
  return rgb_HW3


def _tensorboard_images(logdir: str) -> dict:
  """{tag: (step, decoded RGB)} of the image summaries in logdir's event files."""
  images = {}
  for path in sorted(glob.glob(os.path.join(logdir, "events.out.tfevents.*"))):
    for payload in _records(path):
      event = event_pb2.Event.FromString(payload)
      for value in event.summary.value:
        if value.HasField("image"):
          png = value.image.encoded_image_string
          images[value.tag] = (event.step, np.asarray(Image.open(io.BytesIO(png)).convert("RGB")))
  return images


def test_training_writes_reports_that_match_the_metrics(shapes_dir, tmp_path):
  from jaxseg.training import train

  cfg = build_config("demo:smoke", [f"data.dir={shapes_dir}", "model.width=4",
                                    "train.steps=2", "train.log_every=1",
                                    "train.checkpoint_every=2", "eval.report_images=3"])
  summary = train.train_and_evaluate(cfg, str(tmp_path))
  out = tmp_path / "reports"
  for name in ("per_class.json", "per_class.md", "confusion.png", "curves.png",
               "predictions.png"):
    assert (out / name).stat().st_size > 0, name
  with open(out / "per_class.json") as f:
    table = json.load(f)
  with open(tmp_path / "metrics.jsonl") as f:
    logged = [json.loads(line) for line in f if "eval/miou" in line][-1]
  assert table["step"] == logged["step"] == 2
  assert table["miou"] == logged["eval/miou"] == summary["miou"]
  for i, row in enumerate(table["classes"]):
    for title, key in (("IoU", "per_class_iou"), ("precision", "per_class_precision"),
                       ("recall", "per_class_acc"), ("dice", "per_class_dice")):
      assert row[title] == logged[f"eval/{key}"][i]  # Both null for NaN.
  pictures = {name: _not_blank(out / f"{name}.png")
              for name in ("confusion", "curves", "predictions")}
  # The same figures, as images, in TensorBoard (train.tensorboard is on in demo:smoke).
  logged_images = _tensorboard_images(str(tmp_path / "tensorboard"))
  assert sorted(logged_images) == ["reports/confusion", "reports/curves", "reports/predictions"]
  for name, picture in pictures.items():
    step, image = logged_images[f"reports/{name}"]
    assert step == 2 and np.array_equal(image, picture), name


def test_nan_classes_are_marked_in_json_and_markdown(tmp_path):
  from jaxseg.data.datasets import DatasetMeta

  conf = np.array([[5, 1, 0], [2, 3, 0], [0, 0, 0]])  # Class 2 absent everywhere.
  from jaxseg.evaluation import metrics

  summary = metrics.summarize(conf)
  meta = DatasetMeta(("a", "b", "c"), np.array([[0, 0, 0], [255, 0, 0], [0, 255, 0]], np.uint8),
                     255, (8, 8))
  with open(tmp_path / "metrics.jsonl", "w") as f:
    f.write(json.dumps({"step": 1, "loss": 1.0, "lr": 0.1}) + "\n")
  samples = [{"image": np.zeros((8, 6, 3), np.uint8), "label": np.full((8, 6), 255, np.uint8),
              "pred": np.ones((8, 6), np.uint8)}]
  out = report.write_reports(str(tmp_path), 1, summary, conf, samples, meta)
  table = json.load(open(os.path.join(out, "per_class.json")))
  assert table["classes"][2]["IoU"] is None and table["classes"][0]["IoU"] == 5 / 8
  assert math.isclose(table["miou"], (5 / 8 + 3 / 6) / 2)
  md = open(os.path.join(out, "per_class.md")).read()
  assert "| c | n/a | n/a | n/a | n/a |" in md and "excluded from means" in md
  assert "excluded from means" in report.summary_table(summary, meta.class_names)
  _not_blank(os.path.join(out, "confusion.png"))
  _not_blank(os.path.join(out, "predictions.png"))
  _not_blank(os.path.join(out, "curves.png"))


def _texts(artists) -> list[str]:
  return [a.get_text() for a in artists]


def test_curves_have_titled_axes_legends_and_every_loss_term():
  records = [{"step": s, "loss": 2.0 / s, "loss/cross_entropy": 1.5 / s, "loss/dice": 0.5 / s,
              "lr": 0.01 * (1 - s / 10)} for s in range(1, 11)]
  records += [{"step": 5, "eval/miou": 0.4, "eval/run": "train"},
              {"step": 10, "eval/miou": 0.6, "eval/run": "train"},
              {"step": 10, "eval/miou": 0.9, "eval/run": "eval"},  # Not a point of the curve.
              {"step": 11, "loss": None}]  # A NaN loss (null) is skipped, not drawn.
  loss_ax, lr_ax, miou_ax = figures.curves_figure(records).axes
  assert [ax.get_title() for ax in (loss_ax, lr_ax, miou_ax)] == [
      "train loss", "learning rate", "validation mIoU"]
  assert {ax.get_xlabel() for ax in (loss_ax, lr_ax, miou_ax)} == {"step"}
  assert (loss_ax.get_ylabel(), lr_ax.get_ylabel(), miou_ax.get_ylabel()) == (
      "loss", "learning rate", "mIoU (%)")
  assert _texts(loss_ax.get_legend().get_texts()) == ["total", "cross_entropy", "dice"]
  assert _texts(miou_ax.get_legend().get_texts()) == ["val mIoU"]
  total, _, dice = loss_ax.get_lines()
  assert list(total.get_xdata()) == list(range(1, 11))
  np.testing.assert_allclose(dice.get_ydata(), [0.5 / s for s in range(1, 11)])
  (miou,) = miou_ax.get_lines()
  assert list(miou.get_xdata()) == [5, 10] and list(miou.get_ydata()) == [40.0, 60.0]
  # Real ticks: more than the two ends, labelled.
  assert len([t for t in loss_ax.get_xticklabels() if t.get_text()]) > 2
  assert all(float(t).is_integer() for t in loss_ax.get_xticks())  # Steps are whole.
  _not_blank(figures.png(figures.curves_figure(records)))
  one_term = [{"step": 1, "loss": 1.0, "loss/dice": 1.0}, {"step": 2, "loss": 0.5, "loss/dice": 0.5}]
  legend = figures.curves_figure(one_term).axes[0].get_legend()
  assert _texts(legend.get_texts()) == ["total (dice)"]  # The one term is the total.
  empty = figures.curves_figure([])  # Before the first log: axes, no legend, "no data yet".
  assert empty.axes[0].get_legend() is None and "no data yet" in _texts(empty.axes[0].texts)


def test_confusion_matrix_full_names_colour_bar_and_cell_percentages():
  names = ["background", "pottedplant", "diningtable", "absent class"]
  conf = np.array([[8, 2, 0, 0], [1, 3, 0, 0], [0, 0, 5, 0], [0, 0, 0, 0]])
  fig = figures.confusion_figure(conf, names)
  ax, colour_bar = fig.axes  # The matrix and its colour bar.
  assert _texts(ax.get_xticklabels()) == names and _texts(ax.get_yticklabels()) == names
  assert all(t.get_rotation() == 90 for t in ax.get_xticklabels())
  assert (ax.get_xlabel(), ax.get_ylabel()) == ("prediction", "ground truth")
  assert colour_bar.get_ylabel() == "% of the true class's pixels"
  assert ax.images[0].colorbar is not None
  # Row-normalised percentages; an absent class's row is empty (NaN), not 0 %.
  assert sorted(_texts(ax.texts)) == sorted(["80", "20", "0", "0", "25", "75", "0", "0",
                                             "0", "0", "100", "0"])
  np.testing.assert_allclose(ax.images[0].get_array().filled(-1)[:2],
                             [[80, 20, 0, 0], [25, 75, 0, 0]])
  assert ax.images[0].get_array().mask[3].all()


def test_confusion_matrix_of_ade20k_stays_legible_and_bounded():
  names = list(ade20k_classes.CLASS_NAMES)
  K = len(names)
  conf = np.eye(K, dtype=np.int64) * 100 + 1
  fig = figures.confusion_figure(conf, names)
  ax = fig.axes[0]
  assert _texts(ax.get_yticklabels()) == names  # Full names, every class.
  assert not ax.texts  # No cell percentages at 150 classes.
  assert min(t.get_fontsize() for t in ax.get_xticklabels()) >= 5
  picture = _not_blank(figures.png(fig))
  limit = figures.MAX_SIDE_IN * figures.DPI
  assert max(picture.shape[:2]) <= limit and min(picture.shape[:2]) > 1000


def test_prediction_grid_legend_names_the_classes_present_and_ignore():
  palette = np.array([[0, 0, 0], [200, 0, 0], [0, 200, 0], [0, 0, 200]], np.uint8)
  names = ["background", "square", "disc", "triangle"]
  label = np.zeros((20, 30), np.uint8)
  label[:5] = 255  # Ignore pixels.
  label[10:, 10:] = 1
  pred = np.full((20, 30), 2, np.uint8)
  image = np.random.default_rng(0).integers(0, 255, (20, 30, 3), dtype=np.uint8)
  fig = figures.predictions_figure([{"image": image, "label": label, "pred": pred}] * 2,
                                   palette, names, alpha=0.5)
  assert [ax.get_title() for ax in fig.axes[:3]] == ["image", "ground truth", "prediction"]
  (legend,) = fig.legends
  assert _texts(legend.get_texts()) == ["background", "square", "disc", "ignore"]
  colours = [tuple(np.round(np.asarray(p.get_facecolor()[:3]) * 255)) for p in legend.get_patches()]
  assert colours == [(0, 0, 0), (200, 0, 0), (0, 200, 0), figures.IGNORE_RGB]
  assert len(fig.axes) == 6
  np.testing.assert_array_equal(fig.axes[0].images[0].get_array(), image)
  np.testing.assert_array_equal(fig.axes[2].images[0].get_array(),
                                figures.overlay(image, pred, palette, 0.5))
  _not_blank(figures.png(fig))

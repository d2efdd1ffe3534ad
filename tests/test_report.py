"""reports/ after an evaluation: files exist and the JSON equals the logged metrics."""

import json
import math
import os

import numpy as np
from PIL import Image

from jaxseg.config.resolve import build_config
from jaxseg.evaluation import report


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
  grid = Image.open(out / "predictions.png")
  assert grid.size == (3 * 64, 14 + 3 * 64)  # 3 views x first 3 val images (64 x 64).


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
  confusion = np.asarray(Image.open(os.path.join(out, "confusion.png")).convert("RGB"))
  assert confusion.std() > 0

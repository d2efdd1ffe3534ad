"""jaxseg's confusion-matrix metrics equal mmseg's IoUMetric (process + compute_metrics).

Images of different sizes with ignore pixels, a class in neither ground truth
nor prediction (NaN, left out of the means), a class only predicted (IoU 0,
recall NaN) and an all-ignore image.
"""

import jax.numpy as jnp
import numpy as np
import pytest

from jaxseg.evaluation import metrics
from tests.mmseg_oracle import require

pytestmark = pytest.mark.parity

K = 6  # Class 5 appears nowhere; class 4 only in predictions.


def _cases():
  rng = np.random.default_rng(0)
  cases = []
  for h, w in [(37, 50), (64, 31), (20, 20), (45, 45)]:
    label = rng.choice(np.array([0, 1, 2, 3, 255], np.uint8), size=(h, w), p=[.4, .2, .2, .1, .1])
    pred = np.where(rng.random((h, w)) < 0.6, label, rng.integers(0, 5, (h, w))).astype(np.uint8)
    pred[pred == 255] = 4
    cases.append((pred, label))
  cases.append((rng.integers(0, 5, (16, 24)).astype(np.uint8), np.full((16, 24), 255, np.uint8)))
  return cases


@pytest.fixture(scope="module")
def mmseg_result():
  torch = require("torch")
  require("mmseg")
  from mmseg.evaluation import IoUMetric

  metric = IoUMetric(iou_metrics=["mIoU", "mDice"])
  metric.dataset_meta = {"classes": [f"c{k}" for k in range(K)]}
  for pred, label in _cases():
    sample = {"pred_sem_seg": {"data": torch.from_numpy(pred.astype(np.int64))[None]},
              "gt_sem_seg": {"data": torch.from_numpy(label.astype(np.int64))[None]}}
    metric.process({}, [sample])
  per_class = IoUMetric.total_area_to_metrics(
      *[sum(r[i] for r in metric.results) for i in range(4)], ["mIoU", "mDice"])
  areas = [sum(r[i] for r in metric.results).numpy() for i in range(4)]
  return metric.compute_metrics(metric.results), per_class, areas


def _ours():
  conf = np.zeros((K, K), np.int64)
  for pred, label in _cases():
    conf += np.asarray(metrics.confusion_matrix(jnp.asarray(pred, jnp.int32), jnp.asarray(label),
                                                jnp.ones(label.shape, bool), K))
  return conf, metrics.summarize(conf)


def test_areas_equal_mmseg_intersect_and_union(mmseg_result):
  _, _, (intersect, union, pred_area, label_area) = mmseg_result
  conf, _ = _ours()
  np.testing.assert_array_equal(np.diag(conf), intersect)
  np.testing.assert_array_equal(conf.sum(0), pred_area)
  np.testing.assert_array_equal(conf.sum(1), label_area)
  np.testing.assert_array_equal(conf.sum(0) + conf.sum(1) - np.diag(conf), union)


def test_metrics_equal_mmseg_iou_metric(mmseg_result):
  summary_theirs, per_class, _ = mmseg_result
  _, ours = _ours()
  for their_key, our_key in [("aAcc", "pixel_acc"), ("mIoU", "miou"), ("mAcc", "mean_acc"),
                             ("mDice", "mean_dice")]:
    # mmseg reports percent rounded to 2 decimals, computed in float32.
    assert np.float32(np.round(ours[our_key] * 100, 2)) == summary_theirs[their_key], their_key
  for their_key, our_key in [("IoU", "per_class_iou"), ("Acc", "per_class_acc"),
                             ("Dice", "per_class_dice")]:
    theirs = np.asarray(per_class[their_key])
    np.testing.assert_array_equal(np.isnan(theirs), np.isnan(ours[our_key]), err_msg=their_key)
    np.testing.assert_allclose(np.asarray(ours[our_key]), theirs, rtol=1e-6, err_msg=their_key)
  # The cases reach what they are meant to: an absent class, a never-true class.
  assert np.isnan(ours["per_class_iou"][5]) and ours["per_class_iou"][4] == 0
  assert np.isnan(ours["per_class_acc"][4])

import jax.numpy as jnp
import numpy as np

from jaxseg.evaluation import metrics


def _reference_confusion(pred, label, valid, k):
  """Independent reference: an explicit loop over pixels."""
  conf = np.zeros((k, k), np.int64)
  for p, t, v in zip(pred.ravel(), label.ravel(), valid.ravel()):
    if v and t < k:
      conf[t, p] += 1
  return conf


def test_confusion_matrix_matches_reference_with_ignore():
  rng = np.random.default_rng(0)
  k = 5
  label = rng.integers(0, k, (3, 17, 13))
  label[rng.random(label.shape) < 0.2] = 255
  pred = rng.integers(0, k, label.shape)
  valid = label != 255
  got = metrics.confusion_matrix(jnp.asarray(pred), jnp.asarray(label), jnp.asarray(valid), k)
  np.testing.assert_array_equal(np.asarray(got), _reference_confusion(pred, label, valid, k))


def test_summary_formulas_and_absent_classes():
  # Rows: ground truth, cols: prediction. Class 3 is absent from both; class 2 is
  # predicted but never in the ground truth (IoU 0, recall undefined).
  conf = np.array([[5, 1, 0, 0],
                   [2, 3, 1, 0],
                   [0, 0, 0, 0],
                   [0, 0, 0, 0]])
  s = metrics.summarize(conf)
  iou0 = 5 / (6 + 7 - 5)
  iou1 = 3 / (6 + 4 - 3)
  iou2 = 0 / (0 + 1 - 0)
  assert np.isclose(s["per_class_iou"][0], iou0)
  assert np.isclose(s["per_class_iou"][1], iou1)
  assert s["per_class_iou"][2] == 0.0
  assert np.isnan(s["per_class_iou"][3])
  assert np.isclose(s["miou"], (iou0 + iou1 + iou2) / 3)
  assert np.isclose(s["pixel_acc"], 8 / 12)
  assert np.isnan(s["per_class_acc"][2]) and np.isnan(s["per_class_acc"][3])
  assert np.isclose(s["mean_acc"], (5 / 6 + 3 / 6) / 2)


def test_empty_confusion_gives_nan_not_crash():
  s = metrics.summarize(np.zeros((3, 3)))
  assert np.isnan(s["miou"]) and np.isnan(s["pixel_acc"]) and np.isnan(s["mean_acc"])


def test_dataset_miou_is_not_the_mean_of_batch_mious():
  """Why we sum: a small batch that misses one class would count as much as a big one."""
  k = 2
  # Batch A: 100 pixels, all class 0 and predicted right.
  a_label = np.zeros(100, int)
  a_pred = np.zeros(100, int)
  # Batch B: 4 pixels of class 1, half predicted as 0.
  b_label = np.ones(4, int)
  b_pred = np.array([1, 1, 0, 0])
  conf_a = _reference_confusion(a_pred, a_label, np.ones(100, bool), k)
  conf_b = _reference_confusion(b_pred, b_label, np.ones(4, bool), k)
  per_batch = np.mean([metrics.summarize(conf_a)["miou"], metrics.summarize(conf_b)["miou"]])
  dataset = metrics.summarize(conf_a + conf_b)["miou"]
  # Written out: class 0 IoU = 100/102, class 1 IoU = 2/4.
  assert np.isclose(dataset, (100 / 102 + 2 / 4) / 2)
  # Batch A's mIoU is 1.0 (class 1 absent), batch B's is 0.25: the mean is 0.625.
  assert np.isclose(per_batch, (1.0 + (0 + 0.5) / 2) / 2)
  assert not np.isclose(per_batch, dataset)


def _reference_summary(conf):
  """Loop-per-class reference of every metric (the textbook definitions)."""
  k = len(conf)
  total = conf.sum()
  rows = {"iou": [], "acc": [], "precision": [], "dice": []}
  fw = 0.0
  for c in range(k):
    tp = conf[c, c]
    fn = conf[c].sum() - tp
    fp = conf[:, c].sum() - tp
    rows["iou"].append(tp / (tp + fp + fn) if tp + fp + fn else np.nan)
    rows["acc"].append(tp / (tp + fn) if tp + fn else np.nan)
    rows["precision"].append(tp / (tp + fp) if tp + fp else np.nan)
    rows["dice"].append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else np.nan)
    if tp + fn:
      fw += (tp + fn) / total * rows["iou"][-1]
  mean = lambda v: np.mean([x for x in v if not np.isnan(x)])
  return {"pixel_acc": np.trace(conf) / total, "miou": mean(rows["iou"]),
          "mean_acc": mean(rows["acc"]), "mean_precision": mean(rows["precision"]),
          "mean_dice": mean(rows["dice"]), "fwiou": fw,
          **{f"per_class_{name}": values for name, values in rows.items()}}


def test_every_metric_matches_reference_from_predictions_with_ignore():
  rng = np.random.default_rng(3)
  k = 6
  label = rng.integers(0, k - 2, (4, 9, 11))  # classes 4, 5 absent from the ground truth
  label[rng.random(label.shape) < 0.2] = 255
  pred = rng.integers(0, k - 1, label.shape)  # class 5 never predicted either
  pred[label == 2] = 2  # class 2 perfect recall
  valid = label != 255
  conf = np.asarray(metrics.confusion_matrix(jnp.asarray(pred), jnp.asarray(label),
                                             jnp.asarray(valid), k), np.int64)
  got = metrics.summarize(conf)
  want = _reference_summary(_reference_confusion(pred, label, valid, k))
  assert set(want) <= set(got)
  for key, value in want.items():
    np.testing.assert_allclose(got[key], value, rtol=1e-12, equal_nan=True, err_msg=key)
  assert np.isnan(got["per_class_iou"][5]) and got["per_class_iou"][4] == 0.0
  assert np.isnan(got["per_class_acc"][4]) and np.isnan(got["per_class_precision"][5])

"""What a run prints and measures, through run.py with its output redirected (as a cluster
job's): log lines, the cost line, evaluation tables, metrics.jsonl keys, a profile, the
persistent compilation cache, the aug record, and --list's variants. One tiny training
run serves most of them."""

import glob
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 4


def _run(args, env=None):
  proc = subprocess.run([sys.executable, os.path.join(ROOT, "run.py"), *args], cwd=ROOT,
                        capture_output=True, text=True, env=env, timeout=600)
  assert proc.returncode == 0, f"run.py {args} failed ({proc.returncode}):\n{proc.stderr[-3000:]}"
  return proc


def _records(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


@pytest.fixture(scope="module")
def tiny_run(shapes_dir, tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("outputs") / "run")
  common = ["--exp", "demo:smoke", "--workdir", workdir, "--set", f"data.dir={shapes_dir}"]
  # Its evaluations run aug (one exact scale, with flip), to check what their records say.
  proc = _run([*common, "--set", f"train.steps={STEPS}", "--set", "train.log_every=2",
               "--set", "train.eval_every=2", "--set", "train.profile_steps=(2,4)",
               "--set", "model.width=4", "--set", "train.tensorboard=false",
               "--set", "eval.mode=aug", "--set", "eval.scales=(0.75,)"])
  return workdir, common, proc


@pytest.mark.slow
def test_log_lines_without_a_progress_bar(tiny_run):
  workdir, _, proc = tiny_run
  # Redirected: no bar, hence no carriage-return refreshes at all.
  assert "\r" not in proc.stdout + proc.stderr and "it/s" not in proc.stderr
  lines = proc.stdout.splitlines()
  cost = next(line for line in lines if line.startswith("cost: "))
  assert re.fullmatch(r"cost: params 0\.\d+M, GFLOP/image [\d.e-]+ \(train step, XLA\), "
                      r"batch/device 2, no MFU \(no peak FLOP/s known for 'cpu' in float32\)",
                      cost), cost
  logged = [line for line in lines if line.startswith("step ") and "loss" in line]
  assert [line.split()[1] for line in logged] == ["2/4", "4/4"]
  for line in logged:  # CPU: no memory statistics and no MFU, so neither is printed.
    assert re.fullmatch(r"step \d/4  loss \d\.\d{4} \(cross_entropy \d\.\d{4}\)  lr \S+  "
                        r"grad_norm \S+  img/s \S+  step \S+s  data \S+s  eta \d+:\d\d:\d\d  "
                        r"\S+ TFLOP/s/device", line), line
  # The evaluation at step 2 prints the per-class table, as the end does.
  at_2 = lines.index("step 2: evaluation")
  assert lines[at_2 + 1].startswith("metric") and any(
      line.startswith("ring_checker") for line in lines[at_2:at_2 + 20])

  records = [r for r in _records(workdir) if "loss" in r]
  for r in records:
    for key in ("loss/cross_entropy", "lr", "grad_norm", "img_per_s", "step_time_s",
                "data_time_s", "eta_s", "tflops_per_device"):
      assert key in r, key
    assert 0 <= r["data_time_s"] <= r["step_time_s"] and "mfu" not in r
    assert "device_memory_in_use_bytes" not in r
  # TFLOP/s x step time is the step's FLOPs on one device: the cost line's per image x 2.
  gflop_per_image = float(re.search(r"GFLOP/image (\S+)", cost).group(1))
  last = records[-1]
  measured = last["tflops_per_device"] * 1e3 * last["step_time_s"] / 2
  assert measured == pytest.approx(gflop_per_image, rel=0.01)


@pytest.mark.slow
def test_profile_steps_write_a_trace(tiny_run):
  workdir, _, _ = tiny_run
  runs = glob.glob(os.path.join(workdir, "profile", "plugins", "profile", "*"))
  assert len(runs) == 1
  files = os.listdir(runs[0])
  assert any(f.endswith(".xplane.pb") for f in files) and "perfetto_trace.json.gz" in files
  assert all(os.path.getsize(os.path.join(runs[0], f)) > 0 for f in files)


@pytest.mark.slow
def test_eval_records_name_their_scales_and_flip(tiny_run):
  workdir, _, _ = tiny_run
  evals = [r for r in _records(workdir) if "eval/miou" in r]
  assert [r["step"] for r in evals] == [2, 4]
  for r in evals:
    assert r["eval/mode"] == "aug" and r["eval/scales"] == [0.75] and r["eval/flip"] is True


def test_whole_and_slide_record_one_scale_and_no_flip():
  from jaxseg.config.resolve import build_config
  from jaxseg.evaluation.inference import averaged_views

  for mode in ("whole", "slide"):
    assert averaged_views(build_config("demo", [f"eval.mode={mode}"]).eval) == ((1.0,), False)
  # The demo trains at one scale: its test-time augmentation is flip alone.
  assert averaged_views(build_config("demo", ["eval.mode=aug"]).eval) == ((1.0,), True)
  assert averaged_views(build_config("voc_fcn", ["eval.mode=aug"]).eval) == (
      (0.5, 0.75, 1.0, 1.25, 1.5, 1.75), True)


@pytest.mark.slow
def test_second_predict_loads_its_program_from_the_cache(tiny_run, tmp_path):
  workdir, common, _ = tiny_run
  rng = np.random.default_rng(0)
  (tmp_path / "in").mkdir()
  for i in range(3):
    Image.fromarray(rng.integers(0, 256, (48, 40, 3), np.uint8)).save(tmp_path / "in" / f"{i}.png")
  # The default place, under a fresh user cache dir (not the suite's shared cache).
  env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
  env.update(XDG_CACHE_HOME=str(tmp_path / "cache"), JAX_LOG_COMPILES="1")
  predict = [*common, "--mode", "predict", "--input", str(tmp_path / "in"), "--output"]
  first = _run([*predict, str(tmp_path / "out1")], env=env)
  entries = os.listdir(tmp_path / "cache" / "jaxseg" / "xla")
  assert any(e.startswith("jit_labels-") for e in entries)
  assert "cache hit for 'jit_labels'" not in first.stderr
  second = _run([*predict, str(tmp_path / "out2")], env=env)
  assert "Persistent compilation cache hit for 'jit_labels'" in second.stderr
  assert sorted(os.listdir(tmp_path / "cache" / "jaxseg" / "xla")) == sorted(entries)


def test_list_shows_each_experiments_variants(capsys):
  import run

  assert run.main(["--list"]) == 0
  out = capsys.readouterr().out
  assert "  demo: seed, smoke, loss=LOSS" in out
  assert "  voc_fcn: smoke, tv, loss=LOSS" in out and "  voc_fcn8s: smoke, loss=LOSS" in out


def test_every_experiment_accepts_the_variants_it_declares():
  import importlib

  from jaxseg.config.loading import experiment_names
  from jaxseg.config.resolve import build_config

  for name in experiment_names():
    module = importlib.import_module(f"experiments.{name}")
    for flag in module.VARIANT_FLAGS:
      build_config(f"{name}:{flag}")
    for option, allowed in module.VARIANT_OPTIONS.items():
      build_config(f"{name}:{option}={sorted(allowed)[0]}")


@pytest.mark.slow
def test_python_api_predict_and_eval_give_the_same_predictions(tiny_run, shapes_dir, tmp_path):
  """On the trained demo: jaxseg.Segmenter's masks == --mode predict's PNGs, and scored
  against the labels they give exactly the per-class metrics the run's eval recorded (its
  aug mode included: scale 0.75 and flip)."""
  import run as cli
  import jaxseg
  from jaxseg.config.resolve import build_config
  from jaxseg.data import datasets

  workdir, _, _ = tiny_run
  cfg = build_config("demo:smoke", [f"data.dir={shapes_dir}"])
  source = datasets.prepare(cfg.data).as_data_source(cfg.data.eval_split)
  records = [source[i] for i in range(len(source))]
  images = [r["image"] for r in records]
  (tmp_path / "in").mkdir()
  for k, image in enumerate(images):
    Image.fromarray(image).save(tmp_path / "in" / f"{k:04d}.png")

  seg = jaxseg.Segmenter.from_checkpoint(workdir)
  masks = seg.predict(images)
  assert cli.main(["--mode", "predict", "--workdir", workdir, "--input", str(tmp_path / "in"),
                   "--output", str(tmp_path / "out")]) == 0
  for k, mask in enumerate(masks):
    np.testing.assert_array_equal(
        np.asarray(Image.open(tmp_path / "out" / "masks" / f"{k:04d}.png.png")), mask)

  # The confusion matrix of the API's masks, by bincount (rows = ground truth).
  K = seg.num_classes
  conf = np.zeros((K, K), np.int64)
  for record, mask in zip(records, masks):
    label = record["label"][..., 0].astype(np.int64)
    keep = label != 255
    conf += np.bincount(label[keep] * K + mask[keep], minlength=K * K).reshape(K, K)
  tp, gt, pred = np.diag(conf), conf.sum(1), conf.sum(0)
  with np.errstate(invalid="ignore", divide="ignore"):
    mine = {"per_class_iou": tp / (gt + pred - tp), "per_class_acc": tp / gt,
            "per_class_precision": tp / pred, "pixel_acc": tp.sum() / conf.sum()}
  evaluated = [r for r in _records(workdir) if "eval/miou" in r][-1]
  assert evaluated["step"] == seg.step == STEPS and evaluated["eval/mode"] == "aug"
  assert 0 < evaluated["eval/miou"] < 1 and len(np.unique(np.concatenate(
      [m.ravel() for m in masks]))) > 1  # A model that predicts more than one class.
  for key, value in mine.items():
    recorded = np.asarray(evaluated[f"eval/{key}"], np.float64)  # null (NaN) -> nan.
    np.testing.assert_allclose(recorded, value, rtol=1e-12, err_msg=key)

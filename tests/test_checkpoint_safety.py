"""Checkpoints and workdirs that fail safe: a damaged checkpoint is skipped (named) for
the newest intact one, `train.steps` below the checkpoint is refused, metrics are
never repeated on resume, one run per workdir, and a separate eval overwrites
nothing. Each case through run.py's main(): its status, its one line, and that
nothing was overwritten or lost."""

import glob
import json
import os
import shutil
import subprocess
import sys

import grain
import jax.numpy as jnp
import numpy as np
import pytest

import run
from jaxseg.evaluation import eval_mode
from jaxseg.runtime.checkpoint import CheckpointError, Checkpointer
from jaxseg.runtime.workdir import WorkdirBusyError, WorkdirLock
from jaxseg.runtime.writer import MetricsWriter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _truncate(path):
  with open(path, "r+b") as f:
    f.truncate(os.path.getsize(path) // 2)


def _garble(path):  # Same size, other bytes: what a bad disk or a stray write gives.
  with open(path, "r+b") as f:
    f.write(b"\x00garbage" * (os.path.getsize(path) // 8))


def _largest_array_file(step_dir):
  """The biggest ocdbt data file of the state: the one holding the array bytes."""
  files = glob.glob(os.path.join(step_dir, "state", "**", "d", "*"), recursive=True)
  return max(files, key=os.path.getsize)


# What orbax and grain write per step, as found on disk: the state's array data
# (ocdbt), its tree metadata and manifest, the data iterator's json, the config json.
DAMAGE = {
    "state array data": lambda d: _largest_array_file(d),
    "state _METADATA": lambda d: os.path.join(d, "state", "_METADATA"),
    "state manifest": lambda d: os.path.join(d, "state", "manifest.ocdbt"),
    "data iterator json": lambda d: os.path.join(d, "data", "process_0-of-1.json"),
    "config json": lambda d: os.path.join(d, "config", "metadata"),
}


@pytest.fixture
def two_checkpoints(tmp_path):
  """Steps 2 and 4 of a small state (one array big enough for its own data file)."""
  state = {"w": jnp.arange(64 * 64, dtype=jnp.float32).reshape(64, 64), "b": jnp.zeros(3)}
  ckpt = Checkpointer(str(tmp_path / "checkpoints"), keep=3)
  it = iter(grain.MapDataset.range(100).shuffle(seed=0).to_iter_dataset())
  for step in (2, 4):
    next(it)
    ckpt.save(step, {k: v + step for k, v in state.items()}, it, {"step": step})
  ckpt.close()
  return str(tmp_path / "checkpoints"), state


@pytest.mark.parametrize("damage", [_truncate, _garble], ids=["truncated", "garbled"])
@pytest.mark.parametrize("kind", list(DAMAGE))
def test_restore_skips_a_damaged_checkpoint_naming_the_file(two_checkpoints, kind, damage):
  directory, state = two_checkpoints
  bad = DAMAGE[kind](os.path.join(directory, "4"))
  damage(bad)
  ckpt = Checkpointer(directory, keep=3)
  it = iter(grain.MapDataset.range(100).shuffle(seed=0).to_iter_dataset())
  try:
    restored, step, skipped, _ = ckpt.restore_newest_intact(state, it)
  finally:
    ckpt.close()
  assert step == 2 and [s.step for s in skipped] == [4]
  message = str(skipped[0])
  if kind == "state array data" and damage is _garble:
    # Same size, bad bytes: only the ocdbt database and the array can be told.
    assert skipped[0].path == os.path.join(directory, "4", "state") + "/", message
    assert "array w: ZSTD" in message
  else:
    assert skipped[0].path == bad, message
  assert "\n" not in message and skipped[0].path in message
  np.testing.assert_array_equal(restored["w"], state["w"] + 2)
  assert os.path.exists(bad)  # Nothing deleted: skipping is not repairing.


def test_no_intact_checkpoint_is_one_line_naming_each(two_checkpoints):
  directory, state = two_checkpoints
  _truncate(DAMAGE["config json"](os.path.join(directory, "2")))
  _truncate(DAMAGE["state _METADATA"](os.path.join(directory, "4")))
  ckpt = Checkpointer(directory, keep=3)
  with pytest.raises(CheckpointError) as e:
    ckpt.restore_newest_intact(state)
  ckpt.close()
  message = str(e.value)
  assert "\n" not in message and "no intact checkpoint" in message
  assert os.path.join(directory, "4", "state", "_METADATA") in message
  assert os.path.join(directory, "2", "config", "metadata") in message


def test_metrics_after_the_resumed_step_are_dropped_atomically(tmp_path):
  records = [{"step": s, "loss": 1.0 / s} for s in range(1, 7)]
  records.insert(4, {"step": 4, "eval/miou": 0.5})  # An eval before the resume step stays.
  with open(tmp_path / "metrics.jsonl", "w") as f:
    f.writelines(json.dumps(r) + "\n" for r in records)
    f.write('{"step": 7, "lo')  # A line cut short by kill -9.
  writer = MetricsWriter(str(tmp_path))  # Opening sets the torn line aside (writer.py).
  assert writer.drop_after(4) == 2
  with open(tmp_path / "metrics.jsonl") as f:
    kept = [json.loads(line) for line in f]
  assert kept == records[:5]
  # No temp file left behind; the torn line kept aside.
  assert sorted(os.listdir(tmp_path)) == ["metrics.jsonl", "metrics.jsonl.torn-1"]
  assert writer.drop_after(4) == 0


HOLD_LOCK = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
os.write(fd, f"pid {os.getpid()} on testhost".encode())
print("held", flush=True)
time.sleep(600)
"""


def test_second_run_on_a_workdir_is_refused_and_a_killed_holder_frees_it(tmp_path, capsys):
  workdir = str(tmp_path / "w")
  os.makedirs(workdir)
  holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, os.path.join(workdir, ".lock")],
                            stdout=subprocess.PIPE, text=True)
  try:
    assert holder.stdout.readline().strip() == "held"
    rc = run.main(["--exp", "demo:smoke", "--workdir", workdir,
                   "--set", f"data.dir={tmp_path / 'tfds'}"])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and len(err.splitlines()) == 1, err
    assert os.path.abspath(workdir) in err and f"pid {holder.pid}" in err
    assert sorted(os.listdir(workdir)) == [".lock"]  # Refused before writing anything.
  finally:
    holder.kill()  # SIGKILL: no chance to unlock; the kernel drops the flock.
    holder.wait()
  with WorkdirLock(workdir):  # The stale file does not block the next run...
    with pytest.raises(WorkdirBusyError):  # ... and the lock still excludes.
      WorkdirLock(workdir).__enter__()
  with open(os.path.join(workdir, ".lock")) as f:
    assert f.read().startswith(f"pid {os.getpid()} ")


def _args(workdir, shapes_dir, *extra):
  # Checkpoints at 2 and 4, an evaluation at 2 inside the loop and one at the end.
  return ["--exp", "demo:smoke", "--workdir", workdir, "--set", f"data.dir={shapes_dir}",
          "--set", "model.width=4", "--set", "model.depth=2", "--set", "train.steps=4",
          "--set", "train.checkpoint_every=2", "--set", "train.eval_every=2",
          "--set", "train.log_every=1", "--set", "train.tensorboard=false",
          "--set", "eval.batch_size=304", "--set", "eval.report_images=2", *extra]


def _records(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


def _read(path):
  with open(path, "rb") as f:
    return f.read()


@pytest.fixture(scope="module")
def finished_run(shapes_dir, tmp_path_factory):
  """A run whose final evaluation failed: its final checkpoint must be complete."""
  workdir = str(tmp_path_factory.mktemp("finished") / "w")
  calls = []
  real = eval_mode.evaluate_split

  def fail_at_the_end(*args):
    calls.append(1)
    if len(calls) == 2:
      raise RuntimeError("final eval failed")
    return real(*args)

  eval_mode.evaluate_split = fail_at_the_end
  try:
    with pytest.raises(RuntimeError, match="final eval failed"):
      run.main(_args(workdir, shapes_dir))
  finally:
    eval_mode.evaluate_split = real
  ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), keep=3)
  assert list(ckpt.manager.all_steps()) == [2, 4]  # Saved whole before the error left.
  ckpt.close()
  assert not glob.glob(os.path.join(workdir, "checkpoints", "*tmp*"))
  return workdir


def _copy(workdir, tmp_path):
  shutil.copytree(workdir, tmp_path / "w")
  return str(tmp_path / "w")


def test_resume_skips_a_damaged_latest_checkpoint_and_never_repeats_a_step(
    finished_run, shapes_dir, tmp_path, capsys):
  workdir = _copy(finished_run, tmp_path)
  bad = os.path.join(workdir, "checkpoints", "4", "config", "metadata")
  _truncate(bad)
  damaged = _read(bad)
  # As after kill -9 mid-way: records for steps the next checkpoint did not reach.
  assert [r["step"] for r in _records(workdir)] == [1, 2, 2, 3, 4]
  assert run.main(_args(workdir, shapes_dir)) == 0
  out, err = capsys.readouterr()
  warnings = [line for line in err.splitlines() if "warning" in line]
  assert len(warnings) == 1 and f"skipped checkpoint 4 in {workdir}" in warnings[0]
  # json's own reason follows; its wording depends on where the cut lands in the
  # config, which holds the (test-specific) workdir path.
  assert f"{bad} is damaged (" in warnings[0]
  assert "resuming from step 2" in out
  # The damaged checkpoint is kept aside, not deleted; step 4 is trained again.
  moved = os.path.join(workdir, "checkpoints_damaged", "4", "config", "metadata")
  assert _read(moved) == damaged
  records = _records(workdir)
  train_steps = [r["step"] for r in records if "loss" in r]
  assert train_steps == [1, 2, 3, 4]  # Each step once.
  evals = [(r["step"], r["eval/mode"], r["eval/run"]) for r in records if "eval/miou" in r]
  assert evals == [(2, "whole", "train"), (4, "whole", "train")]  # The one at 2 was kept.


def _files(workdir):
  return {p: _read(p) for p in glob.glob(os.path.join(workdir, "**"), recursive=True)
          if os.path.isfile(p) and not p.endswith(".lock")}


def test_lower_train_steps_than_the_checkpoint_is_refused(finished_run, shapes_dir, tmp_path,
                                                         capsys):
  workdir = _copy(finished_run, tmp_path)
  before = _files(workdir)
  assert run.main(_args(workdir, shapes_dir, "--set", "train.steps=3")) == 2
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1, err
  assert "checkpoint is at step 4" in err and "train.steps=3" in err
  assert _files(workdir) == before  # Nothing written, nothing moved.


def test_separate_eval_names_mode_and_checkpoint_and_keeps_the_reports(
    finished_run, shapes_dir, tmp_path, capsys):
  workdir = _copy(finished_run, tmp_path)
  training_reports = {n: _read(os.path.join(workdir, "reports", n))
                      for n in os.listdir(os.path.join(workdir, "reports"))}
  _truncate(os.path.join(workdir, "checkpoints", "4", "state", "manifest.ocdbt"))
  slide = ("--mode", "eval", "--set", "eval.mode=slide", "--set", "eval.crop_size=(48,48)",
           "--set", "eval.stride=(32,32)")
  os.makedirs(os.path.join(workdir, "reports", "eval_slide_step2"))  # An earlier one's.
  assert run.main(_args(workdir, shapes_dir, *slide)) == 0
  err = capsys.readouterr().err
  assert err.count("warning: skipped checkpoint 4") == 1
  records = [r for r in _records(workdir) if r.get("eval/run") == "eval"]
  assert [(r["step"], r["eval/mode"], r["eval/protocol"]) for r in records] == [
      (2, "slide", "native")]
  assert records[0]["eval/checkpoint"] == os.path.join(workdir, "checkpoints", "2")
  folder = os.path.join(workdir, "reports", "eval_slide_step2_2")  # Never an existing one.
  assert records[0]["eval/reports"] == folder
  assert os.listdir(os.path.join(workdir, "reports", "eval_slide_step2")) == []
  with open(os.path.join(folder, "per_class.json")) as f:
    assert json.load(f)["miou"] == records[0]["eval/miou"]
  assert {n: _read(os.path.join(workdir, "reports", n)) for n in training_reports} == \
      training_reports
  # Eval reads checkpoints only: the damaged one stays where it was.
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["2", "4"]


def test_no_intact_checkpoint_stops_resume_with_one_line(finished_run, shapes_dir, tmp_path,
                                                        capsys):
  workdir = _copy(finished_run, tmp_path)
  # Configs damaged: said before anything is built (a bad state is found at restore,
  # test_no_intact_checkpoint_is_one_line_naming_each).
  for step in ("2", "4"):
    _truncate(os.path.join(workdir, "checkpoints", step, "config", "metadata"))
  metrics = _read(os.path.join(workdir, "metrics.jsonl"))
  assert run.main(_args(workdir, shapes_dir)) == 1
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1 and err.startswith("error: no intact checkpoint"), err
  for step in ("2", "4"):
    assert os.path.join(workdir, "checkpoints", step, "config", "metadata") in err
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["2", "4"]
  assert not os.path.exists(os.path.join(workdir, "checkpoints_damaged"))
  assert _read(os.path.join(workdir, "metrics.jsonl")) == metrics

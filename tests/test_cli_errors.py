"""run.py on errors a user can fix: one line on stderr and the documented exit status,
before any data is prepared where the config alone is at fault (--debug: traceback)."""

import errno
import os
import subprocess
import sys

import jax
import pytest

import run
from jaxseg.config.resolve import build_config, validate_batch_sizes
from jaxseg.data import datasets
from jaxseg.errors import ConfigError
from jaxseg.runtime import writer
from jaxseg.training import train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# A seed CNN at 32x32 crops: one compile of a tiny train step.
TINY = ["--exp", "demo:smoke,seed", "--set", "model.width=4", "--set", "augment.crop_size=(32,32)",
        "--set", "train.batch_size=8", "--set", "eval.batch_size=8", "--set", "train.steps=1",
        "--set", "train.log_every=1", "--set", "train.tensorboard=false"]


def _main(args, capsys) -> tuple[int, list[str]]:
  status = run.main(args)
  return status, capsys.readouterr().err.strip().splitlines()


@pytest.fixture
def no_preparation(monkeypatch):
  def refuse(*_):
    raise AssertionError("the dataset was prepared before the config error")

  monkeypatch.setattr(datasets, "prepare", refuse)
  monkeypatch.setattr(train, "prepare", refuse, raising=False)  # Its own imported name.


@pytest.mark.parametrize("override, message", [
    ("model.name=unett", "model.name='unett': unknown model 'unett'; did you mean 'unet'"),
    ("data.name=shapez", "data.name='shapez': unknown dataset 'shapez'; did you mean 'shapes'"),
    ("optim.name=adamx", "unknown optimizer 'adamx'; did you mean 'adam', 'adamw'"),
    ("optim.schedule=cosin", "unknown schedule 'cosin'; did you mean 'cosine'"),
    ("augment.preset=flipp", "unknown augmentation preset 'flipp'; did you mean 'flip'"),
    ("loss.terms=dicee", "unknown loss 'dicee'; did you mean 'dice'"),
    ("augment.crop_size=64", "augment.crop_size=(64,): expected two positive ints (H, W)"),
    ("train.batch_size=0", "train.batch_size=0: expected an int >= 1"),
    ("train.steps=-5", "train.steps=-5: expected an int >= 1"),
    ("model.dtype=bf16", "model.dtype='bf16': expected one of ['auto', 'float32', 'bfloat16', "
     "'float16'] (did you mean 'bfloat16'?)"),
    ("eval.mode=slid", "did you mean 'slide'"),
    ("train.batch_size=12", "train.batch_size=12 must be divisible by the 8 devices (1 process)"),
    ("eval.batch_size=12", "eval.batch_size=12 must be divisible by the 8 devices"),
])
def test_bad_config_is_one_line_exit_2_before_any_preparation(override, message, tmp_path,
                                                             capsys, no_preparation):
  workdir = tmp_path / "w"
  status, err = _main(["--exp", "demo:smoke", "--workdir", str(workdir),
                       "--set", f"data.dir={tmp_path / 'tfds'}", "--set", override], capsys)
  assert status == 2 and len(err) == 1, err
  assert err[0].startswith("error: ") and message in err[0]
  assert not workdir.exists() and not (tmp_path / "tfds").exists()


def test_grad_accum_times_devices_must_divide_the_batch(tmp_path, capsys, no_preparation):
  status, err = _main(["--exp", "demo:smoke", "--workdir", str(tmp_path / "w"),
                       "--set", "train.batch_size=16", "--set", "train.grad_accum_steps=4"],
                      capsys)
  assert status == 2 and err == ["error: train.batch_size=16 must be divisible by "
                                 "train.grad_accum_steps=4 x 8 devices (1 process) = 32"]


def test_batch_sizes_are_checked_against_devices_and_processes():
  cfg = build_config("demo", ["train.batch_size=18", "eval.batch_size=18",
                              "predict.batch_size=5"])
  validate_batch_sizes(cfg, "train", 6, 3)  # 18 splits over 6 devices and 3 processes.
  with pytest.raises(ConfigError, match=r"train.batch_size=18 .* 6 devices \(4 processes\)"):
    validate_batch_sizes(cfg, "train", 6, 4)
  with pytest.raises(ConfigError, match=r"predict.batch_size=5 .* 2 devices"):
    validate_batch_sizes(cfg, "predict", 2, 1)
  validate_batch_sizes(cfg, "eval", 2, 1)  # Each mode checks only the batches it uses.


def _under_a_file(tmp_path) -> str:
  """A path that cannot be created even by root (chmod does not stop root)."""
  (tmp_path / "file").write_text("")
  return str(tmp_path / "file" / "sub")


@pytest.mark.parametrize("which", ["workdir", "data.dir"])
def test_unwritable_directory_is_one_line_naming_it(which, tmp_path, capsys, no_preparation):
  bad = _under_a_file(tmp_path)
  workdir, data_dir = (bad, str(tmp_path / "d")) if which == "workdir" else (
      str(tmp_path / "w"), bad)
  status, err = _main(["--exp", "demo:smoke", "--workdir", workdir,
                       "--set", f"data.dir={data_dir}"], capsys)
  flag = "--workdir" if which == "workdir" else "data.dir"
  assert status == 1 and err == [
      f"error: cannot write to {flag} {bad}: {tmp_path / 'file'} is not a directory; "
      f"pass a writable one ({'--workdir DIR' if which == 'workdir' else '--set data.dir=DIR'})"]


def test_read_only_workdir_is_one_line(tmp_path, capsys, monkeypatch, no_preparation):
  locked = tmp_path / "locked"
  locked.mkdir(mode=0o500)
  if os.geteuid() == 0:  # Root may write anyway: report the directory as a user sees it.
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: real_access(path, mode)
                        and str(path) != str(locked))
  status, err = _main(["--exp", "demo:smoke", "--workdir", str(locked / "w")], capsys)
  assert status == 1 and err == [f"error: cannot write to --workdir {locked / 'w'}: {locked} "
                                 "is not writable; pass a writable one (--workdir DIR)"]
  run._check_writable(str(locked), "data.dir", read_only_ok=True)  # May hold prepared data.
  with pytest.raises(run.NotWritableError, match="data.dir .* is not writable"):
    run._check_writable(str(locked / "tfds"), "data.dir", read_only_ok=True)


def test_metrics_write_on_a_full_disk_is_one_line(shapes_dir, tmp_path, capsys, monkeypatch):
  def full(*_):  # What a write() on a full disk raises: no file name.
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

  monkeypatch.setattr(writer.MetricsWriter, "write", full)
  workdir = tmp_path / "w"
  status, err = _main([*TINY, "--workdir", str(workdir), "--set", f"data.dir={shapes_dir}"],
                      capsys)
  assert status == 1
  assert err[-1] == (f"error: disk full; free space on --workdir {workdir} or data.dir "
                     f"{shapes_dir}, or choose another")
  assert "Traceback" not in "\n".join(err)


def test_checkpoint_on_a_full_disk_names_the_file_and_the_flag(tmp_path):
  workdir = str(tmp_path / "w")
  target = f"{workdir}/checkpoints/6.orbax-checkpoint-tmp/state.orbax-checkpoint-tmp/d/98d5"
  # tensorstore's (orbax's writer's) own words on a real full disk, seen on a tmpfs.
  full = ValueError(f'RESOURCE_EXHAUSTED: Error writing "params.Conv_0.kernel/0" in OCDBT '
                    f'database at local file "{target}": Failed to write 299039 bytes to '
                    "file 8: No space left on device [os_error_code='28']")
  paths = {"--workdir": workdir, "data.dir": str(tmp_path / "tfds")}
  args, cfg = run._parse_args([]), build_config("demo")
  assert run._user_error(full, args, cfg, paths) == (
      1, f"error: disk full writing {target}; free space on --workdir {workdir}, "
         "or choose another")
  try:  # Wrapped by a library: still found through the exception chain.
    raise RuntimeError("save failed") from full
  except RuntimeError as wrapped:
    assert run._user_error(wrapped, args, cfg, paths)[0] == 1


def test_out_of_memory_in_evaluation_names_the_eval_keys(shapes_dir, tmp_path, capsys,
                                                         monkeypatch):
  from jaxseg.evaluation import evaluate

  def oom(*_):  # What XLA raises when a batch does not fit on the device.
    raise jax.errors.JaxRuntimeError(
        "RESOURCE_EXHAUSTED: Out of memory while trying to allocate 68719476736 bytes.")

  monkeypatch.setattr(evaluate, "global_batch", oom)
  status, err = _main([*TINY, "--workdir", str(tmp_path / "w"),
                       "--set", f"data.dir={shapes_dir}"], capsys)
  assert status == 1
  assert err[-1] == ("error: out of memory in evaluation; lower eval.batch_size (now 8), or "
                     "--set eval.mode=slide with eval.crop_size below the 64x64 canvas")


def test_out_of_memory_elsewhere_names_the_modes_keys():
  cfg = build_config("demo")
  args = run._parse_args(["--mode", "train"])
  oom = jax.errors.JaxRuntimeError("RESOURCE_EXHAUSTED: Out of memory allocating 1 bytes")
  status, line = run._user_error(oom, args, cfg, {})
  assert status == 1 and line.startswith("error: out of memory in --mode train; lower "
                                         "train.batch_size (now 16), raise train.grad_accum")
  assert run._user_error(MemoryError(), run._parse_args(["--mode", "predict"]), cfg, {})[1] \
      .startswith("error: out of memory in --mode predict; lower predict.batch_size (now 8)")
  assert run._user_error(oom, run._parse_args(["--mode", "eval"]), cfg, {})[1] == (
      "error: out of memory in --mode eval; lower eval.batch_size (now 64), or --set "
      "eval.mode=slide with eval.crop_size below the eval canvas")
  assert run._user_error(RuntimeError("a bug"), args, cfg, {}) is None  # Bugs keep tracebacks.


def test_debug_shows_the_traceback(tmp_path, capsys, no_preparation):
  status, err = _main(["--debug", "--exp", "demo:smoke", "--workdir", str(tmp_path / "w"),
                       "--set", "train.batch_size=0"], capsys)
  assert status == 2 and err[0] == "Traceback (most recent call last):"
  assert err[-1] == "error: train.batch_size=0: expected an int >= 1"


def test_command_line_error_is_one_line_in_a_real_process(tmp_path):
  proc = subprocess.run([sys.executable, os.path.join(ROOT, "run.py"), "--exp", "demo:smoke",
                         "--workdir", str(tmp_path / "w"), "--set", "model.name=unett"],
                        cwd=ROOT, capture_output=True, text=True,
                        env={**os.environ, "HOME": str(tmp_path)})
  assert proc.returncode == 2
  lines = [line for line in proc.stderr.splitlines() if line.strip()]
  assert len(lines) == 1 and "did you mean 'unet'" in lines[0], proc.stderr

"""A run never destroys or corrupts what it finds: a workdir is jaxseg's or empty, every
file written there is atomic, metrics.jsonl survives torn and repeated lines, and predict
on a full disk leaves no partial file (issue 23, file safety)."""

import contextlib
import errno
import hashlib
import io
import json
import os

import pytest

import run as cli
from jaxseg import paths
from jaxseg.runtime.workdir import MARKER
from jaxseg.runtime.writer import MetricsWriter, read_records
from tests.test_predict import _save

TORN = b'{"step": 13, "loss": 1.7'  # What kill -9 or a full disk leaves at the end.


def _snapshot(root) -> dict[str, str]:
  """{relative path: sha256} of every file under `root`."""
  out = {}
  for folder, _, names in os.walk(root):
    for name in names:
      path = os.path.join(folder, name)
      with open(path, "rb") as f:
        out[os.path.relpath(path, root)] = hashlib.sha256(f.read()).hexdigest()
  return out


def _main(capsys, *args):
  status = cli.main(list(args))
  captured = capsys.readouterr()
  return status, captured.out, captured.err.strip().splitlines()


def _tiny(workdir, shapes_dir, steps, *extra):
  return ["--exp", "demo:smoke", "--workdir", str(workdir), "--set", f"data.dir={shapes_dir}",
          "--set", "model.width=4", "--set", "model.depth=2", "--set", f"train.steps={steps}",
          "--set", "train.checkpoint_every=2", "--set", "train.log_every=1",
          "--set", "train.tensorboard=false", "--set", "eval.batch_size=304", *extra]


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("own", [("notes.txt", b"my notes\n"), None])
def test_a_folder_of_the_users_files_is_refused_and_left_byte_identical(tmp_path, capsys,
                                                                         mode, own):
  folder = tmp_path / "project"
  (folder / "reports").mkdir(parents=True)
  (folder / "config.json").write_bytes(b'{"mine": true}\n')
  (folder / "metrics.jsonl").write_bytes(b"not json at all\n")
  (folder / "reports" / "per_class.md").write_bytes(b"# my table\n")
  if own is not None:
    (folder / own[0]).write_bytes(own[1])
  before = _snapshot(folder)
  status, _, err = _main(capsys, "--exp", "demo:smoke", "--mode", mode, "--workdir",
                         str(folder), "--set", f"data.dir={tmp_path / 'tfds'}")
  named = own[0] if own else "config.json"  # Every name is one jaxseg writes: the first.
  assert status == 2
  assert err == [f"error: --workdir {folder} is not a jaxseg workdir: it holds {named}, which "
                 f"jaxseg did not write (no {MARKER}); nothing written: use a new or empty "
                 "--workdir"]
  assert _snapshot(folder) == before  # Nothing replaced, nothing added.


def test_metrics_torn_tail_and_foreign_lines_are_set_aside_and_appends_start_fresh(tmp_path,
                                                                                  capsys):
  path = tmp_path / "metrics.jsonl"
  good = [json.dumps({"step": s, "loss": 1.0}) + "\n" for s in (1, 2)]
  path.write_bytes("".join(good).encode() + b"garbage line\n" + TORN)
  writer = MetricsWriter(str(tmp_path))  # A separate evaluation: nothing dropped by step.
  err = capsys.readouterr().err.strip().splitlines()
  assert err == [f"warning: {path}: set aside 2 unreadable line(s) (e.g. "
                 f"{TORN.decode()!r}, torn by a kill or a full disk, or not jaxseg's) in "
                 f"{path}.torn-1"]
  assert (tmp_path / "metrics.jsonl.torn-1").read_bytes() == b"garbage line\n" + TORN
  assert path.read_text() == "".join(good)
  writer.write(2, {"eval/miou": 0.5})
  path.write_bytes(path.read_bytes() + TORN)  # Torn again, while this writer is open:
  writer.write(3, {"loss": 0.5})  # the append still starts on its own line.
  assert path.read_bytes().endswith(TORN + b'\n{"step": 3, "loss": 0.5}\n')
  assert [r["step"] for r in read_records(path)] == [1, 2, 2, 3]  # Readers skip the torn one.


def test_a_fresh_start_drops_what_a_killed_first_attempt_logged(tmp_path, capsys):
  path = tmp_path / "metrics.jsonl"
  path.write_text("".join(json.dumps({"step": s, "loss": 1.0}) + "\n" for s in range(1, 6)))
  writer = MetricsWriter(str(tmp_path), resume_step=0)  # No checkpoint: a fresh start.
  assert writer.dropped == 5 and path.read_bytes() == b""
  assert capsys.readouterr().err == ""


def test_write_bytes_on_a_full_disk_leaves_the_old_file_and_no_temp(tmp_path, monkeypatch):
  target = tmp_path / "config.json"
  target.write_bytes(b"old")
  real_write = os.write
  calls = []

  def full_after_half(fd, data):  # A real full disk: a short write, then ENOSPC.
    calls.append(len(data))
    if len(calls) == 1:
      return real_write(fd, bytes(data[:len(data) // 2]))
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

  monkeypatch.setattr(os, "write", full_after_half)
  with pytest.raises(OSError) as e:
    paths.write_bytes(target, b"new contents" * 100)
  assert e.value.errno == errno.ENOSPC and e.value.filename == str(target)
  assert os.listdir(tmp_path) == ["config.json"] and target.read_bytes() == b"old"


def _run_quietly(*args) -> tuple[int, str, list[str]]:
  out, err = io.StringIO(), io.StringIO()
  with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
    status = cli.main(list(args))
  return status, out.getvalue(), err.getvalue().strip().splitlines()


@pytest.fixture(scope="module")
def two_runs(shapes_dir, tmp_path_factory):
  """A workdir as today's code left it after kill -9 before its first checkpoint (no
  marker, its lock file, its config, steps 1..5 and a torn line), trained again to step 2
  (checkpoint 2); then, its marker removed (a workdir from before markers) and a torn
  tail added, resumed to step 3. Returns (workdir, (status, out, err) of each run)."""
  workdir = tmp_path_factory.mktemp("legacy") / "run"
  workdir.mkdir()
  (workdir / ".lock").write_text("pid 123 on somehost\n")
  (workdir / "config.json").write_text("{}")
  (workdir / "metrics.jsonl").write_bytes(
      "".join(json.dumps({"step": s, "loss": 9.0}) + "\n" for s in range(1, 6)).encode() + TORN)
  first = _run_quietly(*_tiny(workdir, shapes_dir, 2))
  marked = (workdir / MARKER).is_file()
  after_first = read_records(workdir / "metrics.jsonl")
  (workdir / MARKER).unlink()
  with open(workdir / "metrics.jsonl", "ab") as f:
    f.write(TORN)
  second = _run_quietly(*_tiny(workdir, shapes_dir, 3))
  return workdir, first, marked, after_first, second


def _torn_warning(workdir, n):
  path = workdir / "metrics.jsonl"
  return (f"warning: {path}: set aside 1 unreadable line(s) (e.g. {TORN.decode()!r}, torn by a "
          f"kill or a full disk, or not jaxseg's) in {path}.torn-{n}")


@pytest.mark.slow  # Trains demo:smoke (the shared two_runs fixture).
def test_a_fresh_start_after_kill_logs_each_step_once(two_runs):
  workdir, (status, out, err), marked, records, _ = two_runs
  assert status == 0, err
  assert "dropped 5 metrics.jsonl records after step 0 (trained again)" in out
  assert [line for line in err if "warning" in line] == [_torn_warning(workdir, 1)]
  assert (workdir / "metrics.jsonl.torn-1").read_bytes() == TORN
  assert marked  # Claimed: a workdir from before markers is jaxseg's.
  assert [r["step"] for r in records if "loss" in r] == [1, 2]


@pytest.mark.slow  # Trains demo:smoke (the shared two_runs fixture).
def test_a_workdir_from_before_markers_resumes(two_runs):
  workdir, _, _, _, (status, out, err) = two_runs
  assert status == 0, err
  assert "resuming from step 2" in out
  assert [line for line in err if "warning" in line] == [_torn_warning(workdir, 2)]
  assert (workdir / "metrics.jsonl.torn-2").read_bytes() == TORN
  assert (workdir / MARKER).is_file()
  logged = [r["step"] for r in read_records(workdir / "metrics.jsonl") if "loss" in r]
  assert logged == [1, 2, 3]


@pytest.mark.slow  # Trains demo:smoke (the shared two_runs fixture).
def test_eval_after_a_torn_tail_appends_a_whole_record_and_whole_reports(two_runs):
  workdir = two_runs[0]
  with open(workdir / "metrics.jsonl", "ab") as f:
    f.write(TORN)
  status, out, err = _run_quietly("--mode", "eval", "--exp", "demo:smoke", "--workdir",
                                  str(workdir))
  assert status == 0, err
  assert [line for line in err if "warning" in line] == [_torn_warning(workdir, 3)]
  records = read_records(workdir / "metrics.jsonl")
  assert records[-1]["eval/run"] == "eval" and records[-1]["step"] == 3
  with open(workdir / "metrics.jsonl") as f:
    assert all(json.loads(line) for line in f)  # Every line whole and readable.
  assert sorted(os.listdir(records[-1]["eval/reports"])) == [
      "confusion.png", "curves.png", "per_class.json", "per_class.md", "predictions.png"]


@pytest.mark.slow  # Trains demo:smoke (the shared two_runs fixture).
def test_predict_on_a_full_disk_leaves_no_partial_file_and_names_output(two_runs, tmp_path,
                                                                       monkeypatch):
  inputs, out = tmp_path / "in", tmp_path / "out"
  inputs.mkdir()
  _save(inputs / "a.png", 40, 48)
  before = _snapshot(inputs)
  real_write, calls = os.write, []

  def full_after_half(fd, data):
    calls.append(len(data))
    if len(calls) == 1:  # The first mask: half of it reaches the disk, then the disk is full.
      return real_write(fd, bytes(data[:len(data) // 2]))
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

  monkeypatch.setattr(paths.os, "write", full_after_half)
  status, _, err = _run_quietly("--mode", "predict", "--workdir", str(two_runs[0]),
                                "--input", str(inputs), "--output", str(out))
  assert status == 1
  assert err[-1] == (f"error: disk full writing {out / 'masks' / 'a.png.png'}; free space on "
                     f"--output {out}, or choose another")
  assert "Traceback" not in "\n".join(err)
  assert _snapshot(out) == {}  # No partial PNG, no temp file.
  assert _snapshot(inputs) == before

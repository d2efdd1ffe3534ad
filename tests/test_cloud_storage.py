"""gs:// for --workdir, data.dir, --input and --output, against a real GCS server on
localhost (gcp-storage-emulator, started here): nothing becomes a local `./gs:/...`
folder, a missing bucket or missing credentials is one line, and demo:smoke trains on
the bucket, stops on SIGTERM, resumes, evaluates and predicts from it."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

import run as cli
from jaxseg import paths
from jaxseg.data import remote

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUCKET = "jaxseg-test"


def _send_generations():
  """The emulator leaves out the x-goog-generation header of object reads, which real GCS
  sends and tensorstore (orbax's array store) requires: added to its object GETs."""
  from gcp_storage_emulator import server
  from gcp_storage_emulator.handlers import objects

  def with_generation(handler):
    def wrapped(request, response, storage, *args, **kwargs):
      handler(request, response, storage, *args, **kwargs)
      try:
        obj = storage.get_file_obj(request.params["bucket_name"], request.params["object_id"])
      except Exception:  # noqa: BLE001  (not found: the handler said so)
        return
      response["x-goog-generation"] = str(obj["generation"])
      response["x-goog-metageneration"] = str(obj["metageneration"])

    wrapped.sends_generation = True
    return wrapped

  for _, methods in server.HANDLERS:
    for method, handler in methods.items():
      if handler in (objects.get, objects.download):  # Wrapped handlers are not: once.
        methods[method] = with_generation(handler)


@pytest.fixture(scope="module")
def gcs(tmp_path_factory):
  """Environment of a GCS emulator on a free localhost port, for gcsfs and
  google-cloud-storage (STORAGE_EMULATOR_HOST) and tensorstore, orbax's array writer
  (TENSORSTORE_GCS_HTTP_URL, and a token it sends unchecked)."""
  from gcp_storage_emulator.server import create_server

  _send_generations()
  with socket.socket() as s:
    s.bind(("localhost", 0))
    port = s.getsockname()[1]
  server = create_server("localhost", port, in_memory=True, default_bucket=BUCKET)
  server.start()
  url = f"http://localhost:{port}"
  env = {"STORAGE_EMULATOR_HOST": url, "TENSORSTORE_GCS_HTTP_URL": url,
         "GOOGLE_AUTH_TOKEN_FOR_TESTING": "emulator",
         "JAXSEG_CACHE": str(tmp_path_factory.mktemp("jaxseg-cache"))}
  saved = {k: os.environ.get(k) for k in env}
  os.environ.update(env)
  yield env
  for k, v in saved.items():
    if v is None:
      os.environ.pop(k, None)
    else:
      os.environ[k] = v
  server.stop()


def _lines(capsys):
  return capsys.readouterr().err.strip().splitlines()


def test_urls_are_never_local_folders_and_bad_ones_are_one_line(gcs, tmp_path, capsys,
                                                               monkeypatch):
  monkeypatch.chdir(tmp_path)
  assert paths.text_of("gs://b/run") == "gs://b/run"
  assert os.fspath(paths.resolve("gs://b/run") / "checkpoints") == "gs://b/run/checkpoints"
  common = ["--exp", "demo:smoke", "--set", f"data.dir={tmp_path / 'tfds'}"]
  status = cli.main([*common, "--workdir", "gs://no-such-bucket/run"])
  assert status == 1 and _lines(capsys) == [
      "error: cannot use --workdir gs://no-such-bucket/run: bucket gs://no-such-bucket does "
      "not exist (or this account cannot see it); create it, or pass another"]
  status = cli.main([*common, "--workdir", "ftp://host/run"])
  assert status == 2 and _lines(capsys) == [
      "error: --workdir ftp://host/run: unsupported URL scheme ftp://; use a local path or "
      "one of gs://, s3://, az://"]
  # No emulator and no credentials: what a machine without `gcloud auth` sees.
  monkeypatch.delenv("STORAGE_EMULATOR_HOST")
  monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "no-key.json"))
  status = cli.main(["--exp", "demo:smoke", "--workdir", str(tmp_path / "w"),
                     "--set", f"data.dir=gs://{BUCKET}/tfds"])
  err = _lines(capsys)
  assert status == 1 and err == [
      f"error: cannot use data.dir gs://{BUCKET}/tfds: no Google Cloud credentials found; run "
      "`gcloud auth application-default login` or set GOOGLE_APPLICATION_CREDENTIALS (on a "
      "Cloud VM: its service account)"]
  assert os.listdir(tmp_path) == []  # No ./gs:/..., no workdir, nothing.


def test_a_bucket_copy_that_does_not_match_its_manifest_is_refused(gcs, tmp_path):
  version = tmp_path / "local" / "1.0.0"
  version.mkdir(parents=True)
  (version / "data.array_record-00000-of-00001").write_bytes(b"records" * 100)
  (version / "dataset_info.json").write_text("{}")
  bucket_copy = paths.resolve(f"gs://{BUCKET}/manifest-test/1.0.0")
  remote.upload(str(version), bucket_copy)
  assert remote.is_complete(bucket_copy)
  assert remote.download(bucket_copy, str(tmp_path / "copy"))
  assert not remote.download(bucket_copy, str(tmp_path / "copy"))  # Matches: nothing copied.
  assert (tmp_path / "copy" / "data.array_record-00000-of-00001").read_bytes() == b"records" * 100
  (bucket_copy / "data.array_record-00000-of-00001").write_bytes(b"recor")  # Truncated.
  with pytest.raises(remote.DatasetError, match="the bucket's copy is damaged"):
    remote.download(bucket_copy, str(tmp_path / "other"))
  assert not (tmp_path / "other").exists()


def _run(args, env, **kw):
  command = [sys.executable, os.path.join(ROOT, "run.py"), *args]
  return subprocess.Popen(command, cwd=kw.pop("cwd"), env={**os.environ, **env},
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def _loss_steps(workdir):
  from jaxseg.runtime.writer import read_records

  return [r["step"] for r in read_records(f"{workdir}/metrics.jsonl") if "loss" in r]


@pytest.mark.slow
def test_demo_smoke_trains_resumes_evaluates_and_predicts_on_a_bucket(gcs, shapes_dir,
                                                                      tmp_path):
  workdir, data_dir = f"gs://{BUCKET}/run", f"gs://{BUCKET}/tfds"
  cwd = tmp_path / "cwd"
  cwd.mkdir()
  # This host already prepared the dataset (the session's copy): it is uploaded, not made again.
  shutil.copytree(shapes_dir, remote.cache_dir(data_dir))
  steps = 12
  train = ["--exp", "demo:smoke", "--workdir", workdir, "--set", f"data.dir={data_dir}",
           "--set", "model.width=4", "--set", "model.depth=2", "--set", f"train.steps={steps}",
           "--set", "train.log_every=1", "--set", "train.checkpoint_every=100",
           "--set", "eval.batch_size=304"]
  proc = _run(train, gcs, cwd=cwd)
  deadline = time.time() + 300
  while len(_loss_steps(workdir)) < 3 and proc.poll() is None and time.time() < deadline:
    time.sleep(0.5)
  proc.send_signal(signal.SIGTERM)
  out, err = proc.communicate(timeout=300)
  assert proc.returncode == 3, err[-3000:]
  reached = _loss_steps(workdir)[-1]
  assert f"uploaded the prepared shapes to {data_dir}/shapes" in out
  assert f"checkpoint at step {reached} in {workdir}/checkpoints" in err

  # Another host (an empty cache) resumes: the dataset comes from the bucket, checked.
  env = {**gcs, "JAXSEG_CACHE": str(tmp_path / "host2-cache")}
  proc = _run(train, env, cwd=cwd)
  out, err = proc.communicate(timeout=600)
  assert proc.returncode == 0, err[-3000:]
  assert f"resuming from step {reached} in {workdir}/checkpoints" in out
  assert f"copied the prepared shapes from {data_dir}/shapes" in out
  assert _loss_steps(workdir) == list(range(1, steps + 1))
  run_dir = paths.resolve(workdir)
  assert (run_dir / ".jaxseg-workdir").exists() and (run_dir / "config.json").exists()
  assert list((run_dir / "tensorboard").iterdir())
  assert not (run_dir / ".lock").exists()  # The holder object goes when the run ends.

  proc = _run(["--mode", "eval", "--exp", "demo:smoke", "--workdir", workdir], env, cwd=cwd)
  out, err = proc.communicate(timeout=600)
  assert proc.returncode == 0, err[-3000:]
  assert f"checkpoint step {steps}" in out
  reports = paths.resolve(f"{workdir}/reports/eval_whole_step{steps}")
  assert json.loads((reports / "per_class.json").read_text())["step"] == steps

  inputs = paths.resolve(f"gs://{BUCKET}/images")
  image = np.random.default_rng(0).integers(0, 256, (40, 48, 3), dtype=np.uint8)
  local = tmp_path / "a.png"
  Image.fromarray(image).save(local)
  paths.write_bytes(inputs / "a.png", local.read_bytes())
  output = f"gs://{BUCKET}/predicted"
  proc = _run(["--mode", "predict", "--workdir", workdir, "--input", os.fspath(inputs),
               "--output", output], env, cwd=cwd)
  out, err = proc.communicate(timeout=600)
  assert proc.returncode == 0, err[-3000:]
  for sub in ("masks", "overlays"):
    with paths.resolve(f"{output}/{sub}/a.png.png").open("rb") as f:
      assert Image.open(f).size == (48, 40)
  assert os.listdir(cwd) == []  # Never a local ./gs:/... folder.

"""Named backbone weights: one download into the cache (served here by a loopback
http.server), checksums, atomic writes, the offline message, and the recipes' refusal."""

import hashlib
import http.server
import io
import json
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from jaxseg.config.resolve import build_config
from jaxseg.errors import ConfigError
from jaxseg.models import SECTION, download, pretrained, segformer_weights, weights
from tests.loopback import LoopbackServer, drop_proxies

NAME = "open-mmlab://resnet50_v1c"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_checkpoint() -> bytes:
  """A real .npz state dict (torch layout) for one conv: `conv1.weight` (O, I, kH, kW)."""
  buffer = io.BytesIO()
  np.savez(buffer, **{"conv1.weight": np.arange(4 * 3 * 3 * 3, dtype=np.float32).reshape(
      4, 3, 3, 3)})
  return buffer.getvalue()


class Server(LoopbackServer):
  """Serves `files` {name: bytes} on 127.0.0.1; `cut` names files sent half, then hung up."""

  def __init__(self, files, cut=()):
    self.files, self.cut, self.requests = files, set(cut), []
    server = self

    class Handler(http.server.BaseHTTPRequestHandler):
      def do_GET(self):
        name = self.path.lstrip("/")
        server.requests.append(name)
        if name not in server.files:
          self.send_error(404)
          return
        body = server.files[name]
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[:len(body) // 2] if name in server.cut else body)

      def log_message(self, *args):
        pass

    super().__init__(Handler)


@pytest.fixture
def no_proxy(monkeypatch):
  drop_proxies(monkeypatch)


def served_name(monkeypatch, server, body, stem="tiny", sha=None):
  """Points NAME at a file on `server` whose name carries `sha` (default: body's own)."""
  sha = sha or hashlib.sha256(body).hexdigest()[:8]
  filename = f"{stem}-{sha}.npz"
  server.files[filename] = body
  monkeypatch.setitem(weights.NAMED, NAME, f"{server.url}/{filename}")
  return filename


def model_cfg(cache, spec=NAME, **values):
  return SECTION.config(name="fcn_resnet50", backbone_weights=spec, weights_dir=str(cache),
                        **values)


def tiny_variables():
  return {"params": {"backbone": {"conv1": {"kernel": np.zeros((3, 3, 3, 4), np.float32)}}}}


def dead_port() -> int:
  """A loopback port nothing listens on: connecting is refused at once."""
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def test_name_downloads_once_then_loads_from_cache(tmp_path, monkeypatch, no_proxy):
  server = Server({})
  try:
    body = tiny_checkpoint()
    filename = served_name(monkeypatch, server, body)
    cfg = model_cfg(tmp_path / "cache")
    path = weights.backbone_path(cfg)
    assert path == str(tmp_path / "cache" / filename)
    assert open(path, "rb").read() == body and os.listdir(tmp_path / "cache") == [filename]
    variables = pretrained.apply_pretrained(cfg, tiny_variables(), verbose=False)
    download.forget_hashes()  # A new process: the cached file is re-hashed, not re-fetched.
    assert weights.backbone_path(cfg) == path
    assert server.requests == [filename]
  finally:
    server.close()
  kernel = variables["params"]["backbone"]["conv1"]["kernel"]  # OIHW -> HWIO.
  np.testing.assert_array_equal(kernel, np.load(path)["conv1.weight"].transpose(2, 3, 1, 0))


@pytest.mark.parametrize("fault", ["cut_off", "wrong_bytes"])
def test_bad_download_leaves_the_cache_empty_and_says_so(fault, tmp_path, monkeypatch, no_proxy):
  server = Server({})
  try:
    body = tiny_checkpoint()
    if fault == "cut_off":
      filename = served_name(monkeypatch, server, body)
      server.cut.add(filename)
    else:
      filename = served_name(monkeypatch, server, body, sha="0badc0de")
    with pytest.raises(weights.WeightsError) as error:
      weights.backbone_path(model_cfg(tmp_path / "cache"))
  finally:
    server.close()
  message = str(error.value)
  assert "\n" not in message and filename in message
  assert ("stopped after" in message and "bytes" in message) if fault == "cut_off" else (
      "sha256 starts with" in message and "0badc0de" in message)
  assert "nothing was saved" in message
  assert os.listdir(tmp_path / "cache") == []  # No partial or unverified file.
  assert isinstance(error.value, FileNotFoundError)  # run.py: one line, exit 1.


def test_corrupt_cached_file_is_refused_naming_it(tmp_path, monkeypatch, no_proxy):
  server = Server({})
  try:
    filename = served_name(monkeypatch, server, tiny_checkpoint())
    (tmp_path / filename).write_bytes(b"half a file")
    with pytest.raises(weights.WeightsError, match="corrupt.*delete it") as error:
      weights.backbone_path(model_cfg(tmp_path))
    assert server.requests == []
  finally:
    server.close()
  assert str(tmp_path / filename) in str(error.value)


def test_offline_names_file_place_and_url(tmp_path, monkeypatch):
  url = f"http://127.0.0.1:{dead_port()}/resnet50_v1c-2cccc1ad.pth"
  monkeypatch.setitem(weights.NAMED, NAME, url)
  start = time.perf_counter()
  with pytest.raises(weights.WeightsError) as error:
    weights.backbone_path(model_cfg(tmp_path / "cache"))
  assert time.perf_counter() - start < 5
  message = str(error.value)
  assert "\n" not in message
  for part in ("resnet50_v1c-2cccc1ad.pth", str(tmp_path / "cache"), url,
               "model.weights_dir", "model.backbone_weights=none"):
    assert part in message, part
  assert not any(f.endswith(".pth") for f in os.listdir(tmp_path / "cache"))


def test_none_paths_and_whole_checkpoints_never_download(tmp_path, monkeypatch):
  # Any download attempt would fail (refused), so returning '' proves none was made.
  monkeypatch.setitem(weights.NAMED, NAME, f"http://127.0.0.1:{dead_port()}/x-00000000.pth")
  assert weights.backbone_path(model_cfg(tmp_path, "none")) == ""
  assert weights.backbone_path(model_cfg(tmp_path, "")) == ""
  # A whole segmentation checkpoint holds the backbone: the recipe's name is not fetched.
  assert weights.backbone_path(model_cfg(tmp_path, NAME, weights="seg.pth")) == ""
  variables = tiny_variables()
  assert pretrained.apply_pretrained(model_cfg(tmp_path, "none"), variables) is variables
  assert pretrained.apply_pretrained(model_cfg(tmp_path), variables, backbone=False) is variables
  with pytest.raises(weights.WeightsError, match=r"missing\.pth.*no such file"):
    weights.backbone_path(model_cfg(tmp_path, str(tmp_path / "missing.pth")))
  local = tmp_path / "mine.npz"
  local.write_bytes(tiny_checkpoint())
  assert weights.backbone_path(model_cfg(tmp_path, str(local))) == str(local)
  assert os.listdir(tmp_path) == ["mine.npz"]


def test_misspelt_name_fails_at_config_load_with_the_closest():
  with pytest.raises(ConfigError, match="resnet50_v1c"):
    build_config("voc_fcn", ["model.backbone_weights=open-mmlab://resnet50_v1"])


def test_recipes_default_to_the_weights_their_number_assumes():
  expected = {"voc_fcn": NAME, "voc_deeplabv3": NAME, "voc_deeplabv3plus": NAME,
              "voc_fcn:tv": "torchvision://resnet50",
              "voc_deeplabv3:tv": "torchvision://resnet50",
              "voc_deeplabv3plus:tv": "torchvision://resnet50",
              "voc_fcn8s": "torchvision://vgg16"}
  for spec, name in expected.items():
    assert build_config(spec).model.backbone_weights == name, spec
    smoke = spec.replace(":tv", "") + (":tv,smoke" if ":tv" in spec else ":smoke")
    assert build_config(smoke).model.backbone_weights == "none", smoke
  assert build_config("demo").model.backbone_weights == ""


def test_urls_are_mmengines_hub_tables():
  """open-mmlab:// and torchvision:// names are mmengine's (mit_b*: the next test)."""
  mmengine = pytest.importorskip("mmengine")
  hub = os.path.join(os.path.dirname(mmengine.__file__), "hub")
  tables = {"open-mmlab": json.load(open(os.path.join(hub, "openmmlab.json"))),
            "torchvision": json.load(open(os.path.join(hub, "torchvision_0.12.json")))}
  for name, url in weights.NAMED.items():
    if name in segformer_weights.NAMED:  # Not in mmengine's tables: the next test.
      continue
    scheme, key = name.split("://")
    assert tables[scheme][key] == url, name


@pytest.mark.parity
def test_mit_names_are_the_checkpoints_of_mmsegs_segformer_configs():
  from tests import mmseg_oracle
  mmengine = pytest.importorskip("mmengine")
  for variant in range(6):
    config = mmseg_oracle.config_path(
        f"segformer/segformer_mit-b{variant}_8xb2-160k_ade20k-512x512.py")
    url = mmengine.Config.fromfile(config).model.backbone.init_cfg.checkpoint
    assert weights.NAMED[f"open-mmlab://mit_b{variant}"] == url
    assert weights.SHA256_PREFIX.search(url)  # Verified on download, as the others.


def test_voc_fcn_without_weights_fails_in_seconds_with_one_line(tmp_path):
  """`python run.py --exp voc_fcn` on a machine with neither weights nor data."""
  env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
  proxy = f"http://127.0.0.1:{dead_port()}"  # Offline, whatever this machine can reach.
  env.update(HOME=str(tmp_path), http_proxy=proxy, https_proxy=proxy, JAX_PLATFORMS="cpu")
  start = time.perf_counter()
  result = subprocess.run([sys.executable, "run.py", "--exp", "voc_fcn",
                           "--workdir", str(tmp_path / "run")],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
  elapsed = time.perf_counter() - start
  lines = result.stderr.strip().splitlines()
  assert result.returncode == 1, result.stderr
  assert len(lines) == 1, result.stderr
  assert "resnet50_v1c-2cccc1ad.pth" in lines[0] and "backbone_weights=none" in lines[0]
  assert os.path.join(str(tmp_path), ".cache", "jaxseg", "weights") in lines[0]
  assert not (tmp_path / "tensorflow_datasets").exists()  # Weights checked before data.
  print(f"refusal took {elapsed:.1f} s")
  assert elapsed < 60


def test_eval_mode_needs_no_backbone_weights_but_training_does(tmp_path, monkeypatch, capsys):
  """A checkpoint holds the weights: --mode eval never asks for them (it stops at the
  missing checkpoint, which is what it needs)."""
  import run

  monkeypatch.setitem(weights.NAMED, NAME, f"http://127.0.0.1:{dead_port()}/r-2cccc1ad.pth")
  common = ["--exp", "voc_fcn", "--workdir", str(tmp_path / "w"),
            "--set", f"data.dir={tmp_path / 'tfds'}",
            "--set", f"model.weights_dir={tmp_path / 'cache'}"]
  assert run.main(common + ["--mode", "eval"]) == 1
  err = capsys.readouterr().err
  assert "no checkpoint in" in err and "weights" not in err
  assert run.main(common) == 1
  err = capsys.readouterr().err
  assert "cannot be downloaded" in err and "r-2cccc1ad.pth" in err

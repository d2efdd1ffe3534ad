"""`hf://` weight names against a loopback server that answers as the Hugging Face Hub's
resolve endpoint does (a 302 to an LFS URL carrying X-Linked-Etag, X-Linked-Size and
X-Repo-Commit; 404 for a file the revision lacks), reached through HF_ENDPOINT."""

import hashlib
import http.server
import io
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxseg.config.resolve import build_config
from jaxseg.errors import ConfigError
from jaxseg.models import SECTION, build_model, download, hf_hub, pretrained, weights
from jaxseg.models.convert import flat_variables
from jaxseg.models.convert_segformer import torch_key
from tests import mmseg_oracle
from tests.loopback import LoopbackServer, drop_proxies

COMMIT = "0123456789abcdef0123456789abcdef01234567"
ENCODER = "nvidia/mit-b0"
WHOLE = "nvidia/segformer-b0-finetuned-ade-512-512"
HEAD_CHANNELS = 8  # A tiny decoder: the file is fabricated, the key names are transformers'.


class FakeHub(LoopbackServer):
  """Serves {(repo, filename): bytes} at /<repo>/resolve/<revision>/<filename>."""

  def __init__(self, files, commit=COMMIT, announced_sha=None):
    self.files, self.commit, self.announced_sha, self.requests = files, commit, announced_sha, []
    hub = self

    class Handler(http.server.BaseHTTPRequestHandler):
      def do_GET(self):
        hub.requests.append(self.path)
        if self.path.startswith("/lfs/"):  # The CDN: bytes only, none of the Hub's headers.
          body = hub.blobs[self.path[len("/lfs/"):]]
          self.send_response(200)
          self.send_header("Content-Length", str(len(body)))
          self.end_headers()
          self.wfile.write(body)
          return
        repo, _, rest = self.path.lstrip("/").partition("/resolve/")
        _, _, filename = rest.partition("/")
        body = hub.files.get((repo, filename))
        if body is None:
          self.send_response(404)
          self.send_header("X-Error-Code", "EntryNotFound")
          self.send_header("X-Repo-Commit", hub.commit)
          self.send_header("Content-Length", "0")
          self.end_headers()
          return
        sha = hashlib.sha256(body).hexdigest()
        hub.blobs[sha] = body
        self.send_response(302)
        self.send_header("Location", f"{hub.url}/lfs/{sha}")
        self.send_header("X-Repo-Commit", hub.commit)
        self.send_header("X-Linked-Etag", f'"{hub.announced_sha or sha}"')
        self.send_header("X-Linked-Size", str(len(body)))
        self.send_header("ETag", '"a1b2c3"')  # The pointer file's git hash, not the file's.
        self.send_header("Content-Length", "0")
        self.end_headers()

      def log_message(self, *args):
        pass

    self.blobs = {}
    super().__init__(Handler)


@pytest.fixture
def hub(monkeypatch):
  """A FakeHub that HF_ENDPOINT points at, with no proxy in the way."""
  drop_proxies(monkeypatch)
  hub_ = FakeHub({})
  monkeypatch.setenv("HF_ENDPOINT", hub_.url)
  yield hub_
  hub_.close()


def model_cfg(cache, **values):
  return SECTION.config(name="segformer_b0", head=dict(style="hf", channels=HEAD_CHANNELS),
                        weights_dir=str(cache), **values)


def fabricated(whole: bool):
  """(variable shapes, state dict with transformers' key names and torch layouts)."""
  model = build_model(model_cfg(""), 3)
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)),
                                             train=False))
  rng = np.random.default_rng(0)
  state = {}
  for (collection, *path), leaf in flat_variables(shapes).items():
    key = torch_key(collection, tuple(path), "hf", "segformer.encoder.")
    if not whole and not key.startswith("segformer.encoder."):
      continue
    shape = leaf.shape
    shape = (shape[3], shape[2], shape[0], shape[1]) if len(shape) == 4 else shape[::-1]
    state[key] = rng.standard_normal(shape).astype(np.float32)
  if not whole:
    state["classifier.weight"] = np.zeros((1000, 256), np.float32)  # ImageNet's; unused.
  return shapes, state


def safetensors_bytes(state) -> bytes:
  from safetensors.numpy import save
  return save(state)


def zeros(shapes):
  return jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), shapes)


QUERY = "segformer.encoder.block.0.0.attention.self.query.weight"


def query_kernel(variables):
  return variables["params"]["backbone"]["block_0_0"]["attn"]["q"]["kernel"]


def test_encoder_downloads_once_is_recorded_and_loads(hub, tmp_path):
  shapes, state = fabricated(whole=False)
  body = safetensors_bytes(state)
  hub.files[ENCODER, "model.safetensors"] = body
  cfg = model_cfg(tmp_path, backbone_weights=f"hf://{ENCODER}")
  path = weights.backbone_path(cfg)
  assert path == str(tmp_path / "hf" / ENCODER / "main" / "model.safetensors")
  sha = hashlib.sha256(body).hexdigest()
  assert hub.requests == [f"/{ENCODER}/resolve/main/model.safetensors", f"/lfs/{sha}"]
  record = json.load(open(path + ".json"))
  assert (record["commit"], record["sha256"], record["size"]) == (COMMIT, sha, len(body))
  assert sorted(os.listdir(os.path.dirname(path))) == ["model.safetensors",
                                                      "model.safetensors.json"]
  loaded = pretrained.apply_pretrained(cfg, zeros(shapes), verbose=False)
  np.testing.assert_array_equal(query_kernel(loaded), state[QUERY].T)
  download.forget_hashes()  # A new process: hashed again against the record, not fetched.
  assert weights.backbone_path(cfg) == path and len(hub.requests) == 2


@pytest.mark.parity  # torch.save writes the pytorch_model.bin that old Hub repos hold.
def test_whole_model_from_pytorch_model_bin_at_a_pinned_commit(hub, tmp_path):
  torch = mmseg_oracle.require("torch")
  shapes, state = fabricated(whole=True)
  buffer = io.BytesIO()
  torch.save({k: torch.from_numpy(v) for k, v in state.items()}, buffer)
  hub.files[WHOLE, "pytorch_model.bin"] = buffer.getvalue()  # No model.safetensors.
  cfg = model_cfg(tmp_path, weights=f"hf://{WHOLE}@{COMMIT}",
                  backbone_weights="hf://nvidia/mit-b9")  # Never read: model.weights wins.
  loaded = pretrained.apply_pretrained(cfg, zeros(shapes), verbose=False)
  assert hub.requests[:2] == [f"/{WHOLE}/resolve/{COMMIT}/model.safetensors",
                              f"/{WHOLE}/resolve/{COMMIT}/pytorch_model.bin"]
  np.testing.assert_array_equal(query_kernel(loaded), state[QUERY].T)
  np.testing.assert_array_equal(loaded["params"]["classifier"]["classifier"]["kernel"][0, 0],
                                state["decode_head.classifier.weight"][:, :, 0, 0].T)
  assert os.path.exists(tmp_path / "hf" / WHOLE / COMMIT / "pytorch_model.bin.json")


def test_a_corrupt_or_orphaned_cache_is_refused_without_a_request(hub, tmp_path):
  hub.files[ENCODER, "model.safetensors"] = safetensors_bytes(fabricated(whole=False)[1])
  cfg = model_cfg(tmp_path, backbone_weights=f"hf://{ENCODER}")
  path = weights.backbone_path(cfg)
  requests = len(hub.requests)
  with open(path, "r+b") as f:
    f.truncate(100)
  download.forget_hashes()
  with pytest.raises(weights.WeightsError) as error:
    weights.backbone_path(cfg)
  message = str(error.value)
  assert "\n" not in message and path in message and "corrupt" in message
  assert f"delete {os.path.dirname(path)}" in message
  os.remove(path)  # The record without its file: refused too, not silently re-fetched.
  with pytest.raises(weights.WeightsError, match="missing beside its record"):
    weights.backbone_path(cfg)
  assert len(hub.requests) == requests


def test_a_sha256_the_bytes_do_not_have_is_refused_and_nothing_saved(hub, tmp_path):
  hub.files[ENCODER, "model.safetensors"] = safetensors_bytes(fabricated(whole=False)[1])
  hub.announced_sha = "f" * 64
  with pytest.raises(weights.WeightsError) as error:
    weights.backbone_path(model_cfg(tmp_path, backbone_weights=f"hf://{ENCODER}"))
  message = str(error.value)
  url = f"{hub.url}/{ENCODER}/resolve/main/model.safetensors"
  assert "\n" not in message and url in message and "f" * 64 in message
  assert "nothing was saved" in message
  assert os.listdir(tmp_path / "hf" / ENCODER / "main") == []


@pytest.mark.parametrize("fault", ["other_commit", "no_sha", "no_file"])
def test_answers_that_cannot_be_trusted_or_used_are_refused(fault, hub, tmp_path):
  hub.files[ENCODER, "model.safetensors"] = b"weights"
  spec = f"hf://{ENCODER}"
  if fault == "other_commit":
    spec += "@" + "9" * 40
  elif fault == "no_sha":
    hub.announced_sha = "not-a-sha"
  else:
    spec = f"hf://{WHOLE}"
  key = "weights" if fault == "no_file" else "backbone_weights"
  with pytest.raises(weights.WeightsError) as error:
    pretrained.read_pretrained(model_cfg(tmp_path, **{key: spec}))
  expected = {"other_commit": f"served commit {COMMIT}, not the pinned " + "9" * 40,
              "no_sha": "gave no sha256", "no_file": "has none of model.safetensors, "
                                                     "pytorch_model.bin"}[fault]
  assert expected in str(error.value)
  assert not any(f.endswith((".safetensors", ".bin")) for _, _, files in os.walk(tmp_path)
                 for f in files)


def test_offline_says_where_to_get_the_file(monkeypatch, tmp_path):
  import socket
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]  # Nothing listens: refused at once.
  monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
  with pytest.raises(weights.WeightsError) as error:
    weights.backbone_path(model_cfg(tmp_path, backbone_weights=f"hf://{ENCODER}"))
  message = str(error.value)
  assert "\n" not in message and f"http://127.0.0.1:{port}/{ENCODER}" in message
  assert "model.backbone_weights=PATH" in message


def test_names_are_checked_at_config_load():
  with pytest.raises(ConfigError, match=r"did you mean 'hf://nvidia/mit-b0'"):
    build_config("ade20k_segformer_b0:smoke", ["model.backbone_weights=hf://nvidia/mitb0"])
  with pytest.raises(ConfigError, match=r"is an ImageNet encoder; set model.backbone_weights="):
    build_config("ade20k_segformer_b0:smoke", [f"model.weights=hf://{ENCODER}"])
  with pytest.raises(ConfigError, match="is a whole segmentation model; set model.weights="):
    build_config("ade20k_segformer_b0:smoke", [f"model.backbone_weights=hf://{WHOLE}"])
  with pytest.raises(ConfigError, match="revision '../x' is not"):
    build_config("ade20k_segformer_b0:smoke", [f"model.backbone_weights=hf://{ENCODER}@../x"])
  cfg = build_config("ade20k_segformer_b0:smoke", [f"model.weights=hf://{WHOLE}@v1.0"])
  assert hf_hub.parse(cfg.model.weights) == (WHOLE, "v1.0")


def test_run_py_exits_1_on_a_bad_download_and_2_on_a_typo(hub, tmp_path, capsys):
  import run

  hub.files[ENCODER, "model.safetensors"] = b"weights"
  hub.announced_sha = "0" * 64
  status = run.main(["--exp", "ade20k_segformer_b0:smoke", "--workdir", str(tmp_path / "w"),
                     "--set", f"model.backbone_weights=hf://{ENCODER}",
                     "--set", f"model.weights_dir={tmp_path / 'cache'}",
                     "--set", f"data.dir={tmp_path / 'tfds'}"])
  # The progress line ("downloading ...") and then the one error line.
  lines = capsys.readouterr().err.strip().splitlines()
  errors = [line for line in lines if not line.startswith("downloading ")]
  assert status == 1 and len(errors) == 1, lines
  assert f"{hub.url}/{ENCODER}/resolve/main/model.safetensors" in errors[0]
  assert not (tmp_path / "tfds").exists()  # Weights are checked before any data.
  status = run.main(["--exp", "ade20k_segformer_b0:smoke", "--workdir", str(tmp_path / "w"),
                     "--set", "model.backbone_weights=hf://nvidia/mitb0"])
  lines = capsys.readouterr().err.strip().splitlines()
  assert status == 2 and len(lines) == 1 and "did you mean 'hf://nvidia/mit-b0'" in lines[0]
  assert len(hub.requests) == 2  # The typo asked nothing of the server.

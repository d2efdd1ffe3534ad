"""`model.backbone_weights`: a named ImageNet checkpoint (downloaded once), a file, or none.

Names are mmcv/mmengine's (`open-mmlab://resnet50_v1c`, `torchvision://resnet50`);
their URLs are those of mmengine's hub tables (mmengine/hub/openmmlab.json and
torchvision_0.12.json). `open-mmlab://mit_b0`.. (segformer_weights.py) name the URLs
mmseg's SegFormer configs load. Each file name carries the first hex digits of the
file's sha256 (`resnet50-0676ba61.pth`, as torch.hub and mmcv's publish_model write
them), which every download and every cached file is checked against. `hf://` names
(transformers' SegFormer checkpoints, for `model.backbone_weights` or `model.weights`)
are hf_hub.py's: their hash comes from the Hub, not the name.

A download goes to a temporary file in the cache directory and is renamed only
once complete and verified, so the cache never holds a half-written file and
processes sharing a cache (multi-host) cannot see each other's partial files."""

from __future__ import annotations

import http.client
import os
import re
import sys
import urllib.error
import urllib.request

import ml_collections
from etils import epath

from jaxseg.errors import WeightsError
from jaxseg.models import download, hf_hub, segformer_weights
from jaxseg.registry import unknown_name_message

NAMED = {
    # mmsegmentation's ResNet-v1c (deep stem), the `pretrained=` of its R50/R101-D8 configs.
    "open-mmlab://resnet50_v1c":
        "https://download.openmmlab.com/pretrain/third_party/resnet50_v1c-2cccc1ad.pth",
    "open-mmlab://resnet101_v1c":
        "https://download.openmmlab.com/pretrain/third_party/resnet101_v1c-e67eebb6.pth",
    # torchvision's IMAGENET1K_V1 weights (7x7 stem: the `tv` variants).
    "torchvision://resnet50": "https://download.pytorch.org/models/resnet50-0676ba61.pth",
    "torchvision://resnet101": "https://download.pytorch.org/models/resnet101-63fe2227.pth",
    "torchvision://vgg16": "https://download.pytorch.org/models/vgg16-397923af.pth",
    "torchvision://vgg16_bn": "https://download.pytorch.org/models/vgg16_bn-6c64b313.pth",
    **segformer_weights.NAMED,  # MiT encoders (open-mmlab://mit_b0..b5).
}
NONE = "none"  # Train the backbone from its random init, on purpose.
SHA256_PREFIX = re.compile(r"-([0-9a-f]{8,})\.[^.]+$")
# Seconds a connection may stall (not the whole download): offline fails at once anyway.


# Schemes of weight *names* (hf://: hf_hub.py); any other URL (gs://bucket/x.pth, ...)
# is a file epath reads.
NAME_SCHEMES = ("open-mmlab", "torchvision", "hf")


def is_name(spec: str) -> bool:
  return spec.partition("://")[0] in NAME_SCHEMES and "://" in spec


def validate_config(model_cfg: ml_collections.ConfigDict) -> None:
  """A misspelt name fails at config load, listing the known ones."""
  spec = model_cfg.backbone_weights
  if hf_hub.is_name(spec):
    hf_hub.validate(spec, "model.backbone_weights")
  elif is_name(spec) and spec not in NAMED:
    raise ValueError("model.backbone_weights: " + unknown_name_message(
        "weights name", spec, NAMED) + f"; or a file path, an hf:// name, or {NONE!r}")
  if hf_hub.is_name(model_cfg.weights):  # Else a file: checked when a run reads it.
    hf_hub.validate(model_cfg.weights, "model.weights")


def whole_path(model_cfg: ml_collections.ConfigDict) -> str:
  """The local file of `model.weights` ('' = none), fetched if an hf:// name."""
  if hf_hub.is_name(model_cfg.weights):
    return hf_hub.fetch(model_cfg.weights, os.path.expanduser(model_cfg.weights_dir),
                        "model.weights")
  return model_cfg.weights


def backbone_path(model_cfg: ml_collections.ConfigDict) -> str:
  """The local file of `model.backbone_weights` ('' = load nothing), fetched if a name.

  '' (the default of models without pretrained weights) and 'none' load nothing;
  so does any value when `model.weights` (a whole checkpoint, backbone included) is set.
  """
  spec = model_cfg.backbone_weights
  if model_cfg.weights or spec in ("", NONE):
    return ""
  if not is_name(spec):
    if not _is_file(spec):
      raise WeightsError(f"model.backbone_weights={spec!r}: no such file; give a .pth, "
                         f".safetensors or .npz file (a local path or a URL such as "
                         f"gs://bucket/file.pth), a name ({', '.join(NAMED)}), or "
                         f"{NONE!r} to train from scratch")
    return spec
  validate_config(model_cfg)
  if hf_hub.is_name(spec):
    return hf_hub.fetch(spec, os.path.expanduser(model_cfg.weights_dir),
                        "model.backbone_weights")
  return fetch(spec, os.path.expanduser(model_cfg.weights_dir))


def _is_file(spec: str) -> bool:
  """Whether `spec` (a local path or any URL epath reads) is a file; a filesystem that
  cannot be asked (no credentials, no such bucket) says so in one line."""
  try:
    return epath.Path(spec).is_file()
  except Exception as e:  # noqa: BLE001  (each URL filesystem raises its own errors)
    raise WeightsError(f"model.backbone_weights={spec!r}: cannot be read "
                       f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
                       ) from None


def fetch(name: str, cache_dir: str) -> str:
  """The cached, verified file of a named checkpoint; downloads it once if missing."""
  url = NAMED[name]
  filename = url.rsplit("/", 1)[1]
  expected = SHA256_PREFIX.search(filename).group(1)
  path = os.path.join(cache_dir, filename)
  if os.path.exists(path):
    _check_cached(path, expected, name, url)
    return path
  os.makedirs(cache_dir, exist_ok=True)
  try:
    _download(url, path, expected, name)
  # Network failures only: a local one (disk full, permissions) keeps its own error.
  except (urllib.error.URLError, TimeoutError, ConnectionError, http.client.HTTPException) as e:
    reason = getattr(e, "reason", None) or e
    raise WeightsError(
        f"model.backbone_weights={name} is not in {cache_dir} and cannot be downloaded "
        f"({reason}): put {filename} from {url} into {cache_dir} (model.weights_dir), or "
        f"set model.backbone_weights=PATH, or model.backbone_weights={NONE} to train from "
        f"scratch on purpose") from None
  return path


def _download(url: str, path: str, expected: str, name: str) -> None:
  """Streams `url` into place beside `path`, renamed there only once verified."""
  # A fresh opener reads the proxy environment now (urlopen's global one is cached).
  with urllib.request.build_opener().open(url, timeout=download.SOCKET_TIMEOUT_S) as response:
    total = int(response.headers.get("Content-Length") or 0)
    print(f"downloading {name}: {url} ({total / 2**20:.0f} MiB) -> {path}", file=sys.stderr)

    def check(digest: str, received: int) -> None:
      if total and received != total:
        raise WeightsError(f"download of {url} stopped after {received} of {total} bytes; "
                           f"nothing was saved, run again")
      if not digest.startswith(expected):
        raise WeightsError(f"downloaded {url} but its sha256 starts with "
                           f"{digest[:len(expected)]}, not {expected} (interrupted or altered "
                           f"download); nothing was saved, run again")

    download.save_checked(response, path, check)


def _check_cached(path: str, expected: str, name: str, url: str) -> None:
  """A cached file (downloaded, or put there by hand) must match its name's sha256 prefix."""
  digest = download.file_sha256(path)
  if not digest.startswith(expected):
    raise WeightsError(f"{path} (for {name}) is corrupt: its sha256 starts with "
                       f"{digest[:len(expected)]}, not {expected}; delete it and run again, "
                       f"or fetch {url} there by hand")

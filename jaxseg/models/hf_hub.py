"""`hf://<org>/<repo>[@<revision>]`: transformers' SegFormer weights on the Hugging Face
Hub, by name, downloaded once into `model.weights_dir` and checked on every run.

Only the repositories in REPOS are names (a typo lists them): each is known to hold a
checkpoint convert_segformer reads, and to be an encoder (`model.backbone_weights`) or
a whole model (`model.weights`). Any other file: download it and give its path.

The file is `model.safetensors` if the revision has one, else `pytorch_model.bin`
(read without torch, pth.py), from `$HF_ENDPOINT/<repo>/resolve/<revision>/<file>`
(HF_ENDPOINT: huggingface_hub's variable, default https://huggingface.co). Their
names carry no hash to pin, so the Hub's own answer is the reference: for an LFS file
its `X-Linked-Etag` (or `ETag`) header is the file's sha256 and `X-Repo-Commit` the
commit it resolved to. The download is checked against that sha256 and the pair is
kept in a sidecar (`<file>.json`) beside the cached file, which is checked against it
whenever a process first uses it. A revision is resolved once: `@main` (the default)
keeps the commit first downloaded; `@<40-hex commit>` pins one and is refused if the
server serves another.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import sys
import urllib.error
import urllib.parse
import urllib.request

from jaxseg import paths
from jaxseg.errors import WeightsError
from jaxseg.models import download
from jaxseg.registry import unknown_name_message

SCHEME = "hf://"
ENDPOINT_ENV = "HF_ENDPOINT"
DEFAULT_ENDPOINT = "https://huggingface.co"
DEFAULT_REVISION = "main"
# The first that the revision has is used (old repos have only the .bin).
FILES = ("model.safetensors", "pytorch_model.bin")
SIDECAR = ".json"
ENCODER, WHOLE = "encoder", "whole"
# What each name fits: the config key that takes it.
KEYS = {ENCODER: "model.backbone_weights", WHOLE: "model.weights"}
REPOS = {
    **{f"nvidia/mit-b{i}": ENCODER for i in range(6)},  # ImageNet-1k encoders.
    # B5's ADE20K model is 640x640 on the Hub (no -ade-512-512 exists for it).
    **{f"nvidia/segformer-b{i}-finetuned-ade-512-512": WHOLE for i in range(5)},
    "nvidia/segformer-b5-finetuned-ade-640-640": WHOLE,
    **{f"nvidia/segformer-b{i}-finetuned-cityscapes-1024-1024": WHOLE for i in range(6)},
}
SHA256 = re.compile(r"^[0-9a-f]{64}$")
COMMIT = re.compile(r"^[0-9a-f]{40}$")
REVISION = re.compile(r"^[A-Za-z0-9._/-]+$")


def is_name(spec: str) -> bool:
  return spec.startswith(SCHEME)


def parse(spec: str) -> tuple[str, str]:
  """(repo, revision) of `hf://repo[@revision]`."""
  repo, _, revision = spec[len(SCHEME):].partition("@")
  return repo, revision or DEFAULT_REVISION


def validate(spec: str, key: str) -> None:
  """A ValueError (exit 2) unless `spec` names a known repo that `key` takes."""
  repo, revision = parse(spec)
  if repo not in REPOS:
    names = [SCHEME + r for r in REPOS if KEYS[REPOS[r]] == key]
    raise ValueError(f"{key}: " + unknown_name_message("Hugging Face weights name",
                                                       SCHEME + repo, names)
                     + "; append @REVISION to pin a commit, or give a file path")
  if KEYS[REPOS[repo]] != key:
    what = "an ImageNet encoder" if REPOS[repo] == ENCODER else "a whole segmentation model"
    raise ValueError(f"{key}={spec!r}: {SCHEME}{repo} is {what}; set "
                     f"{KEYS[REPOS[repo]]}={spec} instead")
  if not REVISION.match(revision) or ".." in revision:
    raise ValueError(f"{key}={spec!r}: revision {revision!r} is not a branch, tag or commit "
                     "(letters, digits, '.', '_', '-', '/')")


def endpoint() -> str:
  return os.environ.get(ENDPOINT_ENV, "").rstrip("/") or DEFAULT_ENDPOINT


def fetch(spec: str, cache_dir: str, key: str) -> str:
  """The cached, verified file of `spec`; downloaded once (see the module doc)."""
  validate(spec, key)
  repo, revision = parse(spec)
  folder = os.path.join(cache_dir, "hf", repo, urllib.parse.quote(revision, safe=""))
  for filename in FILES:
    path = os.path.join(folder, filename)
    if os.path.exists(path + SIDECAR):  # Written last: the file was complete and verified.
      _check_cached(path, spec)
      return path
  os.makedirs(folder, exist_ok=True)
  tried = []
  for filename in FILES:
    url = (f"{endpoint()}/{repo}/resolve/{urllib.parse.quote(revision, safe='')}/"
           f"{filename}")
    try:
      _download(url, os.path.join(folder, filename), spec, revision)
      return os.path.join(folder, filename)
    except urllib.error.HTTPError as e:
      if e.code != 404:
        raise WeightsError(f"{key}={spec}: {url} answered HTTP {e.code} ({e.reason})"
                           ) from None
      tried.append(url)
    # Network failures only: a local one (disk full, permissions) keeps its own error.
    except (urllib.error.URLError, TimeoutError, ConnectionError,
            http.client.HTTPException) as e:
      reason = getattr(e, "reason", None) or e
      raise WeightsError(
          f"{key}={spec} is not in {folder} and cannot be downloaded from {url} ({reason}): "
          f"download {' or '.join(FILES)} from {endpoint()}/{repo} (set {ENDPOINT_ENV} for "
          f"a mirror) and set {key}=PATH to it") from None
  raise WeightsError(f"{key}={spec}: revision {revision!r} of {repo} has none of "
                     f"{', '.join(FILES)} ({' and '.join(tried)} answered 404)")


class _RecordRedirects(urllib.request.HTTPRedirectHandler):
  """Keeps the headers of every redirect: the Hub's LFS answer is a 302 whose headers
  (X-Linked-Etag, X-Repo-Commit) the CDN's final response does not repeat."""

  def __init__(self):
    self.headers = []

  def redirect_request(self, req, fp, code, msg, headers, newurl):
    self.headers.append(headers)
    return super().redirect_request(req, fp, code, msg, headers, newurl)


def _hub_answer(chain) -> tuple[str, str, int | None]:
  """(sha256, commit, size) from the first response the Hub itself gave (the one with
  X-Repo-Commit), as huggingface_hub's get_hf_file_metadata reads them."""
  for headers in chain:
    if headers.get("X-Repo-Commit"):
      etag = headers.get("X-Linked-Etag") or headers.get("ETag") or ""
      size = headers.get("X-Linked-Size")
      return (etag.removeprefix("W/").strip('"').lower(), headers["X-Repo-Commit"],
              int(size) if size and size.isdigit() else None)
  return "", "", None


def _download(url: str, path: str, spec: str, revision: str) -> None:
  """Streams `url` into place beside `path` once it matches the sha256 the Hub
  announced, then writes the sidecar record."""
  redirects = _RecordRedirects()
  opener = urllib.request.build_opener(redirects)  # Reads the proxy environment now.
  request = urllib.request.Request(url, headers={"User-Agent": "jaxseg",
                                                 "Accept-Encoding": "identity"})
  with opener.open(request, timeout=download.SOCKET_TIMEOUT_S) as response:
    expected, commit, size = _hub_answer([*redirects.headers, response.headers])
    _check_answer(url, expected, commit, revision)
    print(f"downloading {spec}: {url} (commit {commit}, "
          f"{(size or 0) / 2**20:.0f} MiB) -> {path}", file=sys.stderr)

    def check(digest: str, received: int) -> None:
      if size is not None and received != size:
        raise WeightsError(f"download of {url} stopped after {received} of {size} bytes; "
                           "nothing was saved, run again")
      if digest != expected:
        raise WeightsError(f"downloaded {url} but its sha256 is {digest}, not "
                           f"{expected} as the server announced (interrupted or altered "
                           "download); nothing was saved, run again")

    download.save_checked(response, path, check)
  # Atomic (paths.write_bytes), so a reader sees the whole record or none.
  record = {"name": spec, "url": url, "commit": commit, "sha256": expected,
            "size": os.path.getsize(path)}
  paths.write_bytes(path + SIDECAR, json.dumps(record, indent=1))


def _check_answer(url: str, expected: str, commit: str, revision: str) -> None:
  if not commit:
    raise WeightsError(f"{url}: no X-Repo-Commit header, so this is not a Hugging Face Hub "
                       f"endpoint (check {ENDPOINT_ENV}); nothing was saved")
  if not SHA256.match(expected):
    raise WeightsError(f"{url}: the server gave no sha256 to check the file against "
                       f"(X-Linked-Etag/ETag {expected!r}); nothing was saved")
  if COMMIT.match(revision) and commit != revision:
    raise WeightsError(f"{url}: served commit {commit}, not the pinned {revision}; "
                       "nothing was saved")


def _check_cached(path: str, spec: str) -> None:
  """The cached file must be the one its sidecar recorded (a truncated or altered file,
  or a file lost under its sidecar, is refused naming both)."""
  advice = f"delete {os.path.dirname(path)} and run again to download {spec} afresh"
  try:
    with open(path + SIDECAR) as f:
      record = json.load(f)
    expected = record["sha256"]
  except (OSError, ValueError, KeyError, TypeError) as e:
    raise WeightsError(f"{path + SIDECAR} (for {spec}) is unreadable "
                       f"({type(e).__name__}: {e}); {advice}") from None
  if not os.path.exists(path):
    raise WeightsError(f"{path} (for {spec}) is missing beside its record "
                       f"{path + SIDECAR}; {advice}")
  digest = download.file_sha256(path)
  if digest != expected:
    raise WeightsError(f"{path} (for {spec}) is corrupt: its sha256 is {digest}, "
                       f"not {expected} as recorded in {path + SIDECAR} at download "
                       f"(commit {record.get('commit')}); {advice}")

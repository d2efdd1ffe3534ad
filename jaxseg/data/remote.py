"""Prepared datasets in a bucket (`data.dir=gs://...`), read from a local copy.

grain reads ArrayRecord files through array_record's C++ reader, which opens
local files only; tfds' preparation writes them locally too. So a URL data.dir
holds the prepared copy every host shares, and each host reads its own local
copy under `paths.cache_root()/datasets/` (e.g. ~/.cache/jaxseg/datasets/gs/bkt/tfds):

- bucket copy complete (its `dataset_info.json`, uploaded last, is there): the
  version folder is downloaded once into the cache, every file checked against
  the bucket's manifest (`jaxseg-manifest.json`: size and sha256 of each file),
  into a side folder renamed into place when whole; a later run whose local copy
  matches the manifest copies nothing;
- otherwise: prepared locally in the cache as for a local data.dir, then uploaded
  by process 0 (the manifest, then dataset_info.json last), so the next host or
  run downloads instead of preparing again.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil

from jaxseg import paths
from jaxseg.data.errors import DatasetError

MANIFEST = "jaxseg-manifest.json"
_COMPLETE = "dataset_info.json"  # tfds reads a version folder only once this is there.
_BLOCK = 1 << 22


def cache_dir(url: str) -> str:
  """The local data dir standing for `url` (readable: the URL's own path under the cache)."""
  text = os.fspath(paths.resolve(url, "data.dir"))
  return os.path.join(paths.cache_root(), "datasets", *text.replace("://", "/").split("/"))


def _copy(src, dst) -> tuple[int, str]:
  """Streams `src` to `dst` (epath.Paths, local or URL); (bytes, sha256) of what went."""
  digest, size = hashlib.sha256(), 0
  with src.open("rb") as fin, dst.open("wb") as fout:
    while block := fin.read(_BLOCK):
      digest.update(block)
      size += len(block)
      fout.write(block)
  return size, digest.hexdigest()


def _local_manifest(folder: str) -> dict[str, dict]:
  manifest = {}
  for root, _, names in os.walk(folder):
    for name in sorted(names):
      path = os.path.join(root, name)
      rel = os.path.relpath(path, folder)
      if rel == MANIFEST:
        continue
      digest = hashlib.sha256()
      with open(path, "rb") as f:
        while block := f.read(_BLOCK):
          digest.update(block)
      manifest[rel] = {"size": os.path.getsize(path), "sha256": digest.hexdigest()}
  return manifest


def is_complete(bucket_copy) -> bool:
  return (bucket_copy / _COMPLETE).exists() and (bucket_copy / MANIFEST).exists()


def upload(local_version: str, bucket_copy) -> None:
  """Copies a prepared version folder to the bucket: data, manifest, dataset_info.json."""
  manifest = _local_manifest(local_version)
  for rel in sorted(manifest, key=lambda r: r == _COMPLETE):
    target = bucket_copy / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    if rel == _COMPLETE:
      paths.write_bytes(bucket_copy / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True))
    _copy(paths.resolve(os.path.join(local_version, rel)), target)


def _matches(local_version: str, manifest: dict) -> bool:
  """The local copy was downloaded from this manifest and no file changed size since."""
  try:
    with open(os.path.join(local_version, MANIFEST)) as f:
      if json.load(f) != manifest:
        return False
  except (OSError, ValueError):
    return False
  return all(os.path.isfile(p) and os.path.getsize(p) == want["size"]
             for p, want in ((os.path.join(local_version, r), w) for r, w in manifest.items()))


def download(bucket_copy, local_version: str) -> bool:
  """Makes `local_version` equal to the bucket copy (checked file by file); returns
  whether anything was copied. Raises DatasetError naming a file that does not match."""
  manifest = json.loads((bucket_copy / MANIFEST).read_text())
  if _matches(local_version, manifest):
    return False
  incoming = local_version + ".incoming"
  shutil.rmtree(incoming, ignore_errors=True)
  for rel, want in manifest.items():
    target = os.path.join(incoming, rel)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    size, sha = _copy(bucket_copy / rel, paths.resolve(target))
    if (size, sha) != (want["size"], want["sha256"]):
      shutil.rmtree(incoming, ignore_errors=True)
      raise DatasetError(f"{bucket_copy / rel}: {size} bytes with sha256 {sha[:12]}..., but "
                         f"{bucket_copy / MANIFEST} says {want['size']} bytes, "
                         f"{want['sha256'][:12]}...: the bucket's copy is damaged; delete "
                         f"{bucket_copy} to prepare it again")
  paths.write_bytes(os.path.join(incoming, MANIFEST), json.dumps(manifest, indent=1,
                                                                  sort_keys=True))
  shutil.rmtree(local_version, ignore_errors=True)
  os.rename(incoming, local_version)
  return True

"""Source archives for the builders: find them in manual_dir (or download), read members.

A member is read straight out of the archive, tar or zip (no multi-GB extraction);
an already extracted copy in manual_dir works too. Every failure names the file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import socket
import tarfile
import urllib.parse
import urllib.request
import zipfile
import zlib
from typing import Annotated, Callable, Iterator

from jaxseg.data.errors import DatasetError, DatasetMissingError
from jaxseg.declare import Arg

_DEMO_HINT = "No data at hand? `python run.py` trains the embedded demo dataset (shapes)."

# `data.<dataset>.download` of the builders whose archives are public (voc_seg, ade20k).
Download = Annotated[bool, Arg(help=(
    "fetch archives missing from data.manual_dir from their URLs (False: fail at once, "
    "naming the file to put there; offline machines never wait on a download)"))]


@dataclasses.dataclass(frozen=True)
class Archive:
  filename: str  # As published; what to put in manual_dir.
  url: str
  # Bytes, as published; a str ("11 GB") where only a rounded size is published.
  size: int | str
  sha256: str | None  # None where no published checksum could be confirmed.
  extracted: str  # Top-level directory inside, accepted in manual_dir instead.
  # False where the host needs a login (Cityscapes): only the manual route is offered.
  downloadable: bool = True

  @property
  def size_text(self) -> str:
    return f"{self.size:,} bytes" if isinstance(self.size, int) else f"about {self.size}"


def locate(archive: Archive, dl_manager, allow_download: bool, needed_by: str) -> str:
  """Path of the archive (or its extracted directory), downloading only if allowed.

  `needed_by`: 'dataset' or 'dataset/config', as the messages name it."""
  # tfds exposes manual_dir only through a property that raises when the directory
  # is absent; we need the path either way, to say where the file belongs.
  manual_dir = os.fspath(dl_manager._manual_dir)  # pylint: disable=protected-access
  for candidate in (archive.filename, archive.extracted):
    path = os.path.join(manual_dir, candidate)
    if os.path.exists(path):
      return path
  where = os.path.join(manual_dir, archive.filename)
  message = (f"{needed_by} needs {archive.filename} ({archive.size_text}, from "
             f"{archive.url}): put it at {where} (data.manual_dir={manual_dir}; the "
             f"extracted {archive.extracted}/ directory works too)")
  if not archive.downloadable:
    raise DatasetMissingError(f"{message}. {_DEMO_HINT}")
  if not allow_download:
    dataset = needed_by.partition("/")[0]
    raise DatasetMissingError(f"{message}, or set data.{dataset}.download=True to fetch it. "
                              f"{_DEMO_HINT}")
  # tfds retries a failed connection with backoff for minutes; one probe fails in seconds.
  error = _unreachable(archive.url)
  if error is None:
    try:
      path = os.fspath(dl_manager.download(archive.url))
    except Exception as e:  # pylint: disable=broad-except  # Any network failure, same advice.
      error = e
  if error is not None:
    raise DatasetMissingError(f"{message}; downloading it failed ({error}). {_DEMO_HINT}")
  if archive.sha256 and _sha256(path) != archive.sha256:
    raise DatasetError(f"{path}: downloaded file does not match sha256 {archive.sha256}")
  return path


def _unreachable(url: str, timeout_s: float = 10.0) -> str | None:
  """Why the URL's host (or the proxy for it) cannot be connected to, or None if it can."""
  parts = urllib.parse.urlsplit(url)
  proxy = urllib.request.getproxies().get(parts.scheme)
  if proxy and not urllib.request.proxy_bypass(parts.hostname):
    parts = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
  port = parts.port or (443 if parts.scheme == "https" else 80)
  try:
    socket.create_connection((parts.hostname, port), timeout=timeout_s).close()
  except OSError as e:
    return f"cannot connect to {parts.hostname}:{port}: {e}"
  return None


def _sha256(path: str) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()


def _bad_archive(path: str, e: Exception) -> DatasetError:
  return DatasetError(f"{path}: truncated or corrupt archive ({type(e).__name__}: {e}); "
                      "download it again")


_ARCHIVE_ERRORS = (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, OSError)


class Members:
  """Random access to the files of an uncompressed tar, a zip, or an extracted directory.

  Names are archive paths ('VOCdevkit/VOC2012/...'); `where(name)` is what errors print.
  A zip is told by its name (`.zip`), so a damaged one reads as a damaged zip.
  """

  def __init__(self, path: str, top: str):
    del top  # The names carry it; kept so every archive opens the same way.
    self.path = path
    self._is_dir = os.path.isdir(path)
    self._is_zip = not self._is_dir and path.lower().endswith(".zip")
    self._handle = None  # The open tar or zip, opened on the first read.
    if self._is_dir:  # `path` is <manual_dir>/<top>: names are relative to its parent.
      self._root = os.path.dirname(path.rstrip(os.sep))
      return
    try:
      if self._is_zip:  # The central directory only: no member is decompressed.
        with zipfile.ZipFile(path) as archive:
          self._infos = {i.filename: i for i in archive.infolist() if not i.is_dir()}
      else:
        with tarfile.open(path) as tar:  # Header scan only: tarfile seeks past the data.
          self._infos = {m.name: m for m in tar.getmembers() if m.isfile()}
    except _ARCHIVE_ERRORS as e:
      raise _bad_archive(path, e) from e

  def names(self) -> list[str]:
    """Every file's archive name, sorted."""
    if not self._is_dir:
      return sorted(self._infos)
    found = []
    for dirpath, _, files in os.walk(self.path):
      found += [os.path.relpath(os.path.join(dirpath, f), self._root).replace(os.sep, "/")
                for f in files]
    return sorted(found)

  def exists(self, name: str) -> bool:
    if self._is_dir:
      return os.path.isfile(os.path.join(self._root, name))
    return name in self._infos

  def where(self, name: str) -> str:
    return os.path.join(self._root, name) if self._is_dir else f"{self.path}:{name}"

  def read(self, name: str) -> bytes:
    if not self.exists(name):
      raise DatasetError(f"{self.where(name)}: missing (is the archive truncated, or not "
                         "the one named in docs/data.md?)")
    if self._is_dir:
      with open(os.path.join(self._root, name), "rb") as f:
        return f.read()
    try:
      if self._is_zip:  # zipfile checks each member's CRC as it reads it.
        if self._handle is None:
          self._handle = zipfile.ZipFile(self.path)
        return self._handle.read(self._infos[name])
      if self._handle is None:
        self._handle = tarfile.open(self.path)  # TarInfos from the scan stay valid: same file.
      return self._handle.extractfile(self._infos[name]).read()
    except _ARCHIVE_ERRORS as e:
      raise _bad_archive(self.where(name), e) from e

  def open(self, name: str):
    """A binary stream of one file, for readers that need only its start (image headers)."""
    if not self.exists(name):
      raise DatasetError(f"{self.where(name)}: missing")
    if self._is_dir:
      return open(os.path.join(self._root, name), "rb")
    try:
      if self._handle is None:
        self._handle = (zipfile.ZipFile if self._is_zip else tarfile.open)(self.path)
      if self._is_zip:
        return self._handle.open(self._infos[name])
      return self._handle.extractfile(self._infos[name])
    except _ARCHIVE_ERRORS as e:
      raise _bad_archive(self.where(name), e) from e

  def close(self) -> None:
    if self._handle is not None:
      self._handle.close()
      self._handle = None


def stream(path: str) -> Iterator[tuple[str, str, Callable[[], bytes]]]:
  """Yields (archive name, where, read) for each file of a (compressed) tar, in order.

  Compressed tars have no random access, so callers `read()` what they need as
  it passes and skip the rest. An extracted directory is walked instead.
  """
  if os.path.isdir(path):
    root = os.path.dirname(path.rstrip(os.sep))
    for dirpath, _, files in os.walk(path):
      for f in sorted(files):
        full = os.path.join(dirpath, f)
        yield os.path.relpath(full, root).replace(os.sep, "/"), full, _reader(full)
    return
  try:
    with tarfile.open(path, "r|*") as tar:
      for member in tar:
        if member.isfile():
          yield member.name, f"{path}:{member.name}", _checked_read(tar, member, path)
  except _ARCHIVE_ERRORS as e:
    raise _bad_archive(path, e) from e


def _checked_read(tar: tarfile.TarFile, member: tarfile.TarInfo, path: str):
  def read() -> bytes:
    try:
      return tar.extractfile(member).read()
    except _ARCHIVE_ERRORS as e:
      raise _bad_archive(f"{path}:{member.name}", e) from e
  return read


def _reader(full: str):
  def read() -> bytes:
    with open(full, "rb") as f:
      return f.read()
  return read

"""Read `torch.save` files (.pth) into numpy without torch and without running pickled code.

A .pth file is a pickle whose tensors point at raw storages: in torch's zip format
(the default since torch 1.6) each storage is an archive member `<name>/data/<key>`;
in the legacy format (`_use_new_zipfile_serialization=False`, e.g. the 2020
open-mmlab ImageNet files) they follow the pickle, each as an int64 element count
and its bytes. The pickle is read by an Unpickler whose `find_class` knows only
the few globals a checkpoint of tensors and plain containers names: anything else
(a class of the model's code, `os.system` in a crafted file) is refused before it
is called, naming the file and the global.
"""

from __future__ import annotations

import collections
import dataclasses
import io
import pickle
import struct
import sys
import zipfile

import ml_dtypes
import numpy as np
from etils import epath

# torch's storage classes -> the element type of their bytes (little-endian).
STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "BFloat16Storage": ml_dtypes.bfloat16, "LongStorage": np.int64, "IntStorage": np.int32,
    "ShortStorage": np.int16, "CharStorage": np.int8, "ByteStorage": np.uint8,
    "BoolStorage": np.bool_, "ComplexFloatStorage": np.complex64,
    "ComplexDoubleStorage": np.complex128, "UntypedStorage": np.uint8,
}
# The first pickle of a legacy file, and the protocol version that torch writes after it.
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001


class PthError(OSError):
  """A .pth file that cannot be read as tensors and plain containers (run.py: exit 1)."""


@dataclasses.dataclass(frozen=True)
class _StorageType:
  name: str

  @property
  def dtype(self) -> np.dtype:
    return np.dtype(STORAGE_DTYPES[self.name])


def _rebuild_tensor(storage: np.ndarray, offset: int, size, stride, *_unused) -> np.ndarray:
  """torch._utils._rebuild_tensor_v2: a strided view of a storage, copied out.

  Size, stride and offset come from the file: they are checked against the
  storage's length first, so a crafted file cannot make `as_strided` read outside it.
  """
  size, stride = tuple(size), tuple(stride)
  if (len(size) != len(stride) or not isinstance(offset, int) or offset < 0
      or any(not isinstance(n, int) or n < 0 for n in size + stride)):
    raise ValueError(f"tensor of size {size}, stride {stride}, offset {offset} is malformed")
  if 0 in size:
    return np.zeros(size, storage.dtype)
  last = offset + sum((n - 1) * s for n, s in zip(size, stride))
  if last >= storage.size:
    raise ValueError(f"tensor of size {size}, stride {stride}, offset {offset} reaches "
                     f"element {last} of a storage of {storage.size}")
  itemsize = storage.dtype.itemsize
  return np.lib.stride_tricks.as_strided(
      storage[offset:], shape=size, strides=[s * itemsize for s in stride],
      writeable=False).copy()


def _rebuild_parameter(data, *_unused):
  """torch._utils._rebuild_parameter(_with_state): a Parameter is its data here."""
  return data


def _ordered_dict(*args):
  return collections.OrderedDict(*args)


REBUILD_TENSOR = ("torch._utils", "_rebuild_tensor_v2")
# (module, name) -> what the pickle gets instead. Nothing else can be loaded.
ALLOWED_GLOBALS = {
    REBUILD_TENSOR: _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("collections", "OrderedDict"): _ordered_dict,
    ("torch", "Size"): tuple,
    **{("torch", name): _StorageType(name) for name in STORAGE_DTYPES},
    ("torch.storage", "UntypedStorage"): _StorageType("UntypedStorage"),
}


class _Unpickler(pickle.Unpickler):
  """Tensors from `storage(storage_type, key, numel) -> np.ndarray`; allowed globals only."""

  def __init__(self, file, storage, path: str, rebuild_tensor=_rebuild_tensor):
    super().__init__(file)
    self._storage, self._path, self._rebuild_tensor = storage, path, rebuild_tensor

  def find_class(self, module: str, name: str):
    if (module, name) not in ALLOWED_GLOBALS:
      raise PthError(f"{self._path}: refused to load {module}.{name}: a weights file may hold "
                     "only tensors and plain containers (dict, list, str, numbers); save the "
                     "state dict alone (torch.save(model.state_dict(), path))")
    if (module, name) == REBUILD_TENSOR:
      return self._rebuild_tensor
    return ALLOWED_GLOBALS[module, name]

  def persistent_load(self, saved_id):
    if not (isinstance(saved_id, tuple) and len(saved_id) >= 5 and saved_id[0] == "storage"
            and isinstance(saved_id[1], _StorageType)):
      raise PthError(f"{self._path}: unknown persistent id {str(saved_id)[:80]} (not a torch "
                     "storage)")
    _, storage_type, key, _location, numel, *view = saved_id
    return self._storage(storage_type, str(key), int(numel), view[0] if view else None)


def _from_bytes(raw: bytes, dtype: np.dtype, numel: int, big_endian: bool) -> np.ndarray:
  if len(raw) < numel * dtype.itemsize:
    raise ValueError(f"a storage holds {len(raw)} bytes, not the {numel} x {dtype.itemsize} "
                     "it declares (a truncated file?)")
  array = np.frombuffer(raw, dtype, count=numel)
  # Bytes in the file's order; this host's is little-endian or not (sys.byteorder).
  return array.byteswap() if big_endian != (sys.byteorder == "big") else array


def _load_zip(archive: zipfile.ZipFile, path: str):
  pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
  if len(pickles) != 1:
    raise PthError(f"{path}: a zip file, but not one torch.save wrote (no single data.pkl)")
  prefix = pickles[0][:-len("data.pkl")]
  names = set(archive.namelist())
  big_endian = (prefix + "byteorder" in names
                and archive.read(prefix + "byteorder").strip() == b"big")
  cache: dict[str, np.ndarray] = {}

  def storage(storage_type, key, numel, _view):
    if key not in cache:
      member = f"{prefix}data/{key}"
      if member not in names:
        raise ValueError(f"storage {key} is not in the archive")
      cache[key] = _from_bytes(archive.read(member), storage_type.dtype, numel, big_endian)
    return cache[key].view(storage_type.dtype)

  with archive.open(pickles[0]) as f:
    return _Unpickler(f, storage, path).load()


def _load_legacy(f: io.BytesIO, path: str):
  """torch's format before 1.6: magic, protocol, sys info, the object, storage keys, storages."""
  plain = lambda: _Unpickler(f, None, path).load()  # noqa: E731  (no storages in these)
  if plain() != LEGACY_MAGIC:
    raise PthError(f"{path}: not a file torch.save wrote (neither a zip archive nor the "
                   "legacy format)")
  if (version := plain()) != LEGACY_PROTOCOL:
    raise PthError(f"{path}: legacy torch format version {version} is not supported "
                   f"(expected {LEGACY_PROTOCOL})")
  sys_info = plain()
  big_endian = not sys_info.get("little_endian", True)
  wanted: dict[str, tuple] = {}  # key -> (storage type, numel) as the object names them.
  views: list[tuple] = []

  def storage(storage_type, key, numel, view):
    wanted.setdefault(key, (storage_type, numel))
    placeholder = np.empty(0, storage_type.dtype)
    views.append((placeholder, key, view))
    return placeholder

  # Tensors are rebuilt once their storages are read: record the calls, replay them.
  pending = []

  def deferred_rebuild(storage_, *args):
    result = _Deferred(storage_, args)
    pending.append(result)
    return result

  obj = _Unpickler(f, storage, path, rebuild_tensor=deferred_rebuild).load()
  keys = plain()
  storages = {}
  for key in keys:
    storage_type, numel = wanted[str(key)]
    (count,) = struct.unpack("<q" if not big_endian else ">q", f.read(8))
    raw = f.read(count * storage_type.dtype.itemsize)
    storages[str(key)] = _from_bytes(raw, storage_type.dtype, count, big_endian)
  resolved = {}
  for placeholder, key, view in views:
    if key not in storages:
      raise ValueError(f"storage {key} is not in the file")
    data = storages[key]
    if view is not None:  # (view key, offset, size): a slice of a shared storage.
      _, view_offset, view_size = view
      data = data[view_offset:view_offset + view_size]
    resolved[id(placeholder)] = data
  for item in pending:
    item.value = _rebuild_tensor(resolved[id(item.storage)], *item.args)
  return _resolve(obj)


@dataclasses.dataclass(eq=False)
class _Deferred:
  storage: np.ndarray
  args: tuple
  value: np.ndarray | None = None


def _resolve(obj):
  """The legacy object with each deferred tensor replaced by its array."""
  if isinstance(obj, _Deferred):
    return obj.value
  if isinstance(obj, collections.OrderedDict):
    return collections.OrderedDict((k, _resolve(v)) for k, v in obj.items())
  if isinstance(obj, dict):
    return {k: _resolve(v) for k, v in obj.items()}
  if isinstance(obj, (list, tuple)):
    return type(obj)(_resolve(v) for v in obj)
  return obj


def load(path: str):
  """The object `torch.save` wrote to `path` (any path epath reads, gs:// included),
  each tensor a numpy array of its dtype (bfloat16: ml_dtypes.bfloat16)."""
  try:
    data = epath.Path(path).read_bytes()
  except OSError as e:
    raise PthError(f"{path}: cannot read ({e.strerror or e})") from None
  try:
    if zipfile.is_zipfile(io.BytesIO(data)):
      with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return _load_zip(archive, path)
    return _load_legacy(io.BytesIO(data), path)
  except PthError:
    raise
  except (pickle.UnpicklingError, EOFError, ValueError, KeyError, TypeError, IndexError,
          AttributeError, struct.error, zipfile.BadZipFile, UnicodeDecodeError) as e:
    raise PthError(f"{path}: not a readable torch.save file ({type(e).__name__}: "
                   f"{str(e).splitlines()[0] if str(e) else 'truncated or damaged'})") from None

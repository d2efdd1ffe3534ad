"""jaxseg/models/pth.py against torch itself: files written by torch.save read bit for
bit as torch.load reads them, in both formats; crafted files refused, never run."""

import collections
import io
import os
import pickle
import zipfile

import numpy as np
import pytest

from jaxseg.models import pth
from tests.mmseg_oracle import require

pytestmark = pytest.mark.parity  # torch is the oracle.

DTYPES = ("float32", "float64", "float16", "bfloat16", "int64", "int32", "int16", "int8",
          "uint8", "bool")


def sample_tensors(torch):
  """One tensor per dtype plus the views torch.save keeps as (storage, offset, stride)."""
  g = torch.Generator().manual_seed(0)
  base = torch.randn(6, 7, 5, generator=g)
  base[0, 0, 0] = float("nan")  # Bit for bit, NaNs included.
  tensors = {dtype: (base * 50).to(getattr(torch, dtype)) for dtype in DTYPES}
  shared = torch.arange(60, dtype=torch.float32).reshape(6, 10)
  tensors.update({
      "transposed": base.permute(2, 0, 1),  # Non-contiguous.
      "strided": shared[::2, 1::3],  # Steps in both dims, offset 1.
      "offset_row": shared[3],  # Same storage as `strided`: one archive record, two views.
      "bf16_strided": base.to(torch.bfloat16)[1:, ::2, 3],
      "expanded": torch.ones(3, 1).expand(3, 4),  # Stride 0.
      "scalar": torch.tensor(3.5, dtype=torch.float64),
      "empty": torch.zeros(0, 3),
  })
  return tensors


def checkpoint(torch):
  """An mmcv-style training checkpoint: state dict of Parameters and buffers, and meta."""
  tensors = sample_tensors(torch)
  state = collections.OrderedDict(
      (f"layer.{k}", torch.nn.Parameter(v, requires_grad=False) if v.is_floating_point() else v)
      for k, v in tensors.items())
  return {"state_dict": state,
          "meta": {"mmcv_version": "2.1.0", "epoch": 3, "lr": [0.01, 0.001], "seed": None,
                   "CLASSES": ("background", "cat"), "nested": {"env": {"cuda": False}}},
          "extra": [tensors["float32"], (tensors["int8"], {"x": tensors["empty"]})]}


def assert_same(ours, theirs, torch, where="obj"):
  if isinstance(theirs, torch.Tensor):
    assert isinstance(ours, np.ndarray), where
    assert ours.shape == tuple(theirs.shape), where
    expected = theirs.detach().contiguous()
    if expected.dtype == torch.bfloat16:
      assert ours.dtype.name == "bfloat16", where
      expected, ours = expected.view(torch.int16), ours.view(np.int16)
    expected = expected.numpy()
    assert ours.dtype == expected.dtype, where
    # Bit for bit: compare the bytes, so NaNs and signed zeros count too.
    assert np.ascontiguousarray(ours).tobytes() == expected.tobytes(), where
  elif isinstance(theirs, dict):
    assert type(ours) is type(theirs) and list(ours) == list(theirs), where
    for k in theirs:
      assert_same(ours[k], theirs[k], torch, f"{where}[{k!r}]")
  elif isinstance(theirs, (list, tuple)):
    assert type(ours) is type(theirs) and len(ours) == len(theirs), where
    for i, (a, b) in enumerate(zip(ours, theirs)):
      assert_same(a, b, torch, f"{where}[{i}]")
  else:
    assert ours == theirs, where


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_reads_what_torch_load_reads_bit_for_bit(zip_format, tmp_path):
  torch = require("torch")
  path = str(tmp_path / "ckpt.pth")
  torch.save(checkpoint(torch), path, _use_new_zipfile_serialization=zip_format)
  assert zipfile.is_zipfile(path) == zip_format
  assert_same(pth.load(path), torch.load(path, weights_only=True), torch)


def _big_endian_copy(src: str, dst: str, dtypes: dict[str, np.dtype]) -> None:
  """`src` (a zip .pth) rewritten as a big-endian machine writes it: byteorder 'big',
  each storage's elements byte-swapped."""
  with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
    for name in zin.namelist():
      data = zin.read(name)
      if name.endswith("/byteorder"):
        data = b"big"
      elif "/data/" in name and not name.endswith("serialization_id"):
        data = np.frombuffer(data, dtypes[name.rsplit("/", 1)[1]]).byteswap().tobytes()
      zout.writestr(name, data)


def test_big_endian_byteorder_record_is_honoured(tmp_path):
  torch = require("torch")
  tensors = {"f32": torch.randn(3, 4), "i64": torch.arange(5), "bf16": torch.randn(4).bfloat16(),
             "f16": torch.randn(2, 2).half()}
  src, dst = str(tmp_path / "little.pth"), str(tmp_path / "big.pth")
  torch.save(tensors, src)
  dtypes = {str(i): np.dtype(d) for i, d in
            enumerate(("float32", "int64", np.uint16, "float16"))}  # Storage keys in save order.
  _big_endian_copy(src, dst, dtypes)
  theirs = torch.load(dst, weights_only=True)
  # The copy is right: torch reads the original values back from it.
  assert all(torch.equal(theirs[k], tensors[k]) for k in tensors)
  assert_same(pth.load(dst), theirs, torch)


class Exploit:
  """What a crafted checkpoint does: unpickling it would run a shell command."""

  def __init__(self, marker):
    self.marker = marker

  def __reduce__(self):
    return os.system, (f"touch {self.marker}",)


class ModelClass:
  """An object of the training code's own, as whole-model torch.save files hold."""


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_code_in_the_pickle_is_refused_never_run(zip_format, tmp_path):
  torch = require("torch")
  marker = tmp_path / "pwned"
  path = str(tmp_path / "evil.pth")
  torch.save({"state_dict": {"w": torch.ones(2)}, "meta": Exploit(marker)}, path,
             _use_new_zipfile_serialization=zip_format)
  with pytest.raises(pth.PthError) as error:
    pth.load(path)
  message = str(error.value)
  assert "\n" not in message and path in message and "system" in message
  assert not marker.exists()
  other = str(tmp_path / "model.pth")
  torch.save({"model": ModelClass()}, other, _use_new_zipfile_serialization=zip_format)
  with pytest.raises(pth.PthError, match=r"refused to load tests\.test_pth\.ModelClass"):
    pth.load(other)


def test_plain_pickle_with_reduce_is_refused(tmp_path):
  """Not even torch's framing: a bare pickle is read as the legacy format and refused."""
  marker = tmp_path / "pwned"
  path = tmp_path / "evil.pth"
  path.write_bytes(pickle.dumps(Exploit(marker)))
  with pytest.raises(pth.PthError, match="refused to load (posix|os|nt)\\.system"):
    pth.load(str(path))
  assert not marker.exists()


def _crafted_zip(path, storage_numel, storage_bytes, offset, size, stride):
  """A zip .pth whose one tensor claims (offset, size, stride) of a storage."""
  torch = require("torch")

  class Storage:
    pass

  class Tensor:
    pass

  storage, tensor = Storage(), Tensor()

  class Pickler(pickle.Pickler):
    def persistent_id(self, obj):
      return ("storage", torch.FloatStorage, "0", "cpu", storage_numel) if obj is storage else None

    def reducer_override(self, obj):
      if obj is tensor:
        return torch._utils._rebuild_tensor_v2, (storage, offset, size, stride, False,
                                                  collections.OrderedDict())
      return NotImplemented

  buffer = io.BytesIO()
  Pickler(buffer, protocol=2).dump({"w": tensor})
  with zipfile.ZipFile(path, "w") as z:
    z.writestr("archive/data.pkl", buffer.getvalue())
    z.writestr("archive/byteorder", "little")
    z.writestr("archive/data/0", storage_bytes)


def test_views_outside_their_storage_are_refused(tmp_path):
  path = str(tmp_path / "crafted.pth")
  _crafted_zip(path, 4, np.arange(4, dtype=np.float32).tobytes(), 0, (2,), (1,))
  np.testing.assert_array_equal(pth.load(path)["w"], [0, 1])  # The crafting is sound.
  for offset, size, stride in ((3, (2,), (1,)), (0, (3,), (2,)), (0, (2, 2), (1, 3)),
                               (-1, (2,), (1,)), (0, (2,), (-1,))):
    _crafted_zip(path, 4, np.arange(4, dtype=np.float32).tobytes(), offset, size, stride)
    with pytest.raises(pth.PthError, match="crafted.pth: not a readable"):
      pth.load(path)
  _crafted_zip(path, 1000, np.arange(4, dtype=np.float32).tobytes(), 0, (2,), (1,))
  with pytest.raises(pth.PthError, match="holds 16 bytes, not the 1000 x 4"):
    pth.load(path)


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_truncated_or_foreign_file_is_one_line(zip_format, tmp_path):
  torch = require("torch")
  path = tmp_path / "ckpt.pth"
  torch.save({"w": torch.randn(64, 64)}, str(path), _use_new_zipfile_serialization=zip_format)
  data = path.read_bytes()
  for cut in (len(data) // 2, len(data) - 100, 10):
    path.write_bytes(data[:cut])
    with pytest.raises(pth.PthError) as error:
      pth.load(str(path))
    assert "\n" not in str(error.value) and str(path) in str(error.value), cut
  path.write_bytes(b"<html>Not found</html>")  # A download that went wrong.
  with pytest.raises(pth.PthError, match="not a readable torch.save file"):
    pth.load(str(path))
  with pytest.raises(pth.PthError, match="cannot read"):
    pth.load(str(tmp_path / "missing.pth"))

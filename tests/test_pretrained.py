"""Pretrained weights end to end: mmseg's own ResNet-v1c saved by torch.save loads into
the voc_fcn recipe without torch, exactly as torch's reader gives it; weights that are
missing, unreadable or do not fit the model stop the run before any data, in one line."""

import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from jaxseg.config.resolve import build_config
from jaxseg.errors import WeightsMismatchError
from jaxseg.models import pretrained
from tests.mmseg_oracle import require

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Runs `run.py` with torch (and so mmcv, mmseg) unimportable: `import torch` raises.
NO_TORCH = ("import runpy, sys; sys.modules['torch'] = None; sys.argv = ['run.py'] + sys.argv[1:]; "
            "runpy.run_path('run.py', run_name='__main__')")


@pytest.fixture(scope="module")
def resnet50_v1c(tmp_path_factory):
  """(path, state dict) of mmseg's ResNetV1c-50 (random init, BN statistics randomised),
  torch.save'd as open-mmlab's resnet50_v1c file holds it: {'state_dict': ..., 'meta': ...}."""
  torch = require("torch")
  backbones = require("mmseg.models.backbones")
  torch.manual_seed(0)
  net = backbones.ResNetV1c(depth=50)
  for module in net.modules():
    if isinstance(module, torch.nn.BatchNorm2d):
      module.running_mean.uniform_(-1, 1)
      module.running_var.uniform_(0.5, 2)
  path = str(tmp_path_factory.mktemp("weights") / "resnet50_v1c.pth")
  torch.save({"meta": {"note": "mmseg ResNetV1c, random"}, "state_dict": net.state_dict()}, path)
  return path, net.state_dict()


def smoke_config(path: str, *extra: str):
  return build_config("voc_fcn:smoke", [f"model.backbone_weights={path}", *extra])


@pytest.mark.parity
def test_converted_params_equal_those_of_torchs_reader(resnet50_v1c):
  torch = require("torch")
  path, _ = resnet50_v1c
  cfg = smoke_config(path)
  ours = pretrained.resolve(cfg)  # Read by pth.py, checked against the model.
  theirs_state = torch.load(path, weights_only=True)["state_dict"]
  theirs = pretrained.Pretrained(path, {k: v.numpy() for k, v in theirs_state.items()}, whole=False)
  assert sorted(ours.state) == sorted(theirs.state)
  like = pretrained.abstract_variables(cfg.model, 21, (32, 32, 3))
  zeros = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), like)
  (a, report), (b, _) = (pretrained.load_pretrained_state(zeros, p) for p in (ours, theirs))
  assert report.missing == [] and report.unused == []
  assert len(report.loaded) == len([k for k in theirs_state if "num_batches" not in k])
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    assert x.dtype == y.dtype and np.array_equal(x, y)
  assert any(np.abs(x).sum() > 0 for x in jax.tree.leaves(a["params"]["backbone"]))


@pytest.mark.parity
def test_weights_that_do_not_fit_fail_before_data(resnet50_v1c, tmp_path):
  """ResNet-v1c-50 weights for a ResNet-101 or a 7x7 stem: exit 2, one line, no data."""
  path, _ = resnet50_v1c
  with pytest.raises(WeightsMismatchError, match=r"lacks 255 of its tensors: layer3\."):
    pretrained.resolve(smoke_config(path, "model.name=fcn_resnet101",
                                          "model.backbone.deep_stem=true"))
  data_dir = tmp_path / "tfds"
  proc = subprocess.run(
      [sys.executable, "run.py", "--exp", "voc_fcn:smoke", "--workdir", str(tmp_path / "w"),
       "--set", f"data.dir={data_dir}", "--set", f"model.backbone_weights={path}",
       "--set", "model.backbone.deep_stem=false"], cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 2, proc.stderr
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1 and path in lines[0] and "conv1.weight" in lines[0], proc.stderr
  assert not data_dir.exists()  # Nothing prepared.


def test_missing_or_unreadable_weights_fail_before_data(tmp_path, capsys):
  import run

  data_dir = tmp_path / "tfds"
  garbage = tmp_path / "page.pth"
  garbage.write_bytes(b"<html>403 Forbidden</html>")
  for weights, expected in ((tmp_path / "missing.pth", "no such file"),
                            (garbage, "not a readable torch.save file")):
    status = run.main(["--exp", "voc_fcn:smoke", "--workdir", str(tmp_path / "w"),
                       "--set", f"data.dir={data_dir}", "--set", f"model.backbone_weights={weights}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 1 and len(err) == 1 and str(weights) in err[0] and expected in err[0], err
  assert not data_dir.exists()


@pytest.mark.slow
@pytest.mark.parity
def test_voc_fcn_smoke_trains_from_a_pth_with_torch_absent(resnet50_v1c, shapes_dir, tmp_path):
  """The issue's acceptance: a torch.save of mmseg's ResNetV1c, torch unimportable."""
  path, state = resnet50_v1c
  proc = subprocess.run(
      [sys.executable, "-c", NO_TORCH, "--exp", "voc_fcn:smoke", "--workdir", str(tmp_path / "w"),
       "--set", f"data.dir={shapes_dir}", "--set", f"model.backbone_weights={path}",
       "--set", "train.steps=1", "--set", "train.checkpoint_every=1",
       "--set", "data.eval_split=validation[:8]", "--set", "eval.batch_size=8"],
      cwd=ROOT, capture_output=True, text=True, timeout=900,
      env={**os.environ, "XLA_FLAGS": ""})  # One CPU device: ResNet-50 compiles faster.
  assert proc.returncode == 0, proc.stderr[-3000:]
  tensors = len([k for k in state if not k.endswith("num_batches_tracked")])
  assert f"{path}: loaded {tensors} tensors" in proc.stdout, proc.stdout
  assert "missing" not in proc.stdout and "unused" not in proc.stdout
  assert os.path.exists(tmp_path / "w" / "checkpoints" / "1")


def test_torch_is_blocked_in_the_acceptance_subprocess():
  """The shim the acceptance test relies on really makes `import torch` fail."""
  proc = subprocess.run([sys.executable, "-c", NO_TORCH.replace(
      "runpy.run_path('run.py', run_name='__main__')", "import torch")], cwd=ROOT,
      capture_output=True, text=True)
  assert proc.returncode == 1 and "ModuleNotFoundError" in proc.stderr

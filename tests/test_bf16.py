"""bf16 compute stays within bf16 tolerance of float32: the numerics guard for speed work.

Params are float32 in both runs (only `model.dtype`, the compute dtype, changes),
so the same seed gives the same initial params (the ResNet forward shares one
init) and the two runs differ only by bf16 rounding in the forward and backward passes.
"""

import jax
import numpy as np

from jaxseg import steps
from jaxseg.config import build_config
from jaxseg.models import build_model
from jaxseg.sharding import global_batch
from tests.stepkit import NUM_CLASSES, build_step, fixed_batch

def _loss_curve(dtype: str, n_steps: int) -> list[float]:
  cfg = build_config("demo:smoke,seed", ["model.width=8", f"model.dtype={dtype}",
                                         "optim.warmup_steps=0", "augment.crop_size=(32,32)"])
  mesh, state, step, _ = build_step(cfg)
  batch = global_batch(mesh, fixed_batch())
  curve = []
  for _ in range(n_steps):
    state, m = step(state, batch)
    curve.append(m["loss"])  # Fetched at the end: no host sync per step.
  return [float(x) for x in curve]


def test_smoke_loss_curve_bf16_matches_float32():
  f32, bf16 = _loss_curve("float32", 10), _loss_curve("bfloat16", 10)
  assert np.all(np.isfinite(f32)) and np.all(np.isfinite(bf16))
  # Both learn the fixed batch...
  assert f32[-1] < 0.8 * f32[0] and bf16[-1] < 0.8 * bf16[0], (f32, bf16)
  # ...along the same curve: bf16 keeps 8 mantissa bits (rel. rounding 2^-8 ~ 0.4%),
  # and ten steps of adamw compound it; 5% per step still catches a real change.
  np.testing.assert_allclose(bf16, f32, rtol=0.05)


def _resnet(dtype: str):
  cfg = build_config("demo", ["model.name=fcn_resnet50", f"model.dtype={dtype}"])
  return cfg, build_model(cfg.model, NUM_CLASSES)


def _resnet_logits(dtype: str, image_BHWC, variables):
  cfg, model = _resnet(dtype)

  @jax.jit
  def forward(variables, image):
    # Inference-mode BatchNorm. In training mode at random init, 32x32 inputs leave
    # 4x4 maps whose near-constant channels BN rescales to unit variance, which
    # amplifies bf16 rounding to ~35% of the logits' norm (measured); that says
    # nothing about a real step, so it is not what this test pins.
    logits, aux = model.apply(variables, steps.normalize(image, cfg.augment.mean, cfg.augment.std),
                              train=False)
    return logits, aux["aux_logits"]

  return jax.device_get(forward(variables, image_BHWC))


def test_resnet_forward_bf16_matches_float32():
  image = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3)).astype(np.uint8)
  # One init for both: params are float32 whatever the compute dtype (test_models_zoo
  # checks the bf16 model's own init), and one device: this is about numerics, and
  # compiling ResNet-50 for 8 fake devices is slow.
  _, model = _resnet("float32")
  variables = model.init({"params": jax.random.key(0)}, image[:1].astype(np.float32), train=False)
  (f32, f32_aux), (bf16, bf16_aux) = (_resnet_logits("float32", image, variables),
                                      _resnet_logits("bfloat16", image, variables))
  assert f32.dtype == bf16.dtype == np.float32  # Logits leave the model in float32.
  for a, b in ((f32, bf16), (f32_aux, bf16_aux)):
    # ~50 bf16 layers give about 1%; a dropped cast or a wrong dtype would be O(1).
    rel = np.linalg.norm(b - a) / np.linalg.norm(a)
    assert rel < 0.03, rel
    assert np.mean(np.argmax(a, -1) == np.argmax(b, -1)) > 0.95

"""Every registered model runs one jitted, sharded train step on 8 fake devices.

Params are replicated on every device, so 8 fake CPU devices hold 8 copies of
params, gradients and optimizer state: VGG's 4096-wide fc6/fc7 (134M params)
would need ~21 GB. The smoke size narrows them (model.backbone.fc_channels, and the
mmseg heads' model.head.channels) and every
test frees its compiled programs and arrays before the next.
"""

import gc

import jax
import numpy as np
import pytest

from jaxseg.config.resolve import build_config
from jaxseg.models import model_names
from jaxseg.runtime.sharding import global_batch
from tests.modelkit import model_overrides
from tests.stepkit import build_step

# That a sharded step trains every model holds for any random bits: rbg keys compile faster.
pytestmark = pytest.mark.usefixtures("rbg_keys")

NUM_CLASSES = 5
SIZE = 32  # The smallest input every model accepts (VGG FCNs pool 32x).
# Models with an auxiliary head (on by default, model.aux_head.enabled=True), trained with
# weight loss.aux_weight; the others have none.
WITH_AUX_HEAD = {"fcn_resnet50", "fcn_resnet101", "deeplabv3_resnet50", "deeplabv3_resnet101",
                 "deeplabv3plus_resnet50", "deeplabv3plus_resnet101", "mmseg_fcn_resnet50",
                 "mmseg_deeplabv3_resnet50", "mmseg_deeplabv3plus_resnet50"}


@pytest.fixture(autouse=True)
def _free_memory():
  yield
  jax.clear_caches()
  gc.collect()


# ResNet-101 models differ from their ResNet-50 twins only in layer3's block count
# (their shapes and parameter counts are pinned in test_models_zoo); compiling them
# here cost CI minutes and caught nothing the ResNet-50 steps do not.
# Likewise torchvision's DeepLabV3 is DeepLabV3+ without the decoder: the same ASPP
# module and backbone, stepped in deeplabv3plus_resnet50. And mmseg's DeepLabV3 is
# the MMSegASPPHead of mmseg_deeplabv3plus_resnet50 with `separable` off: its dilated
# branches are the plain ConvModules stepped in mmseg_fcn_resnet50, with the same
# backbone and aux head. FCN-32s and FCN-16s are FCN-8s (one FCNVGG) with fewer of
# its skips: its step trains the same VGG, score_fr and the pool4 skip, and pool3's.
COVERED_BY = {"deeplabv3_resnet50": "deeplabv3plus_resnet50",
              "mmseg_deeplabv3_resnet50": "mmseg_deeplabv3plus_resnet50",
              "fcn32s": "fcn8s", "fcn16s": "fcn8s",
              # MiT-B1..B5 are B0's modules, wider and deeper (parameter counts pinned in
              # test_parity_segformer); both heads are stepped in test_segformer.
              **{f"segformer_b{i}": "segformer_b0" for i in range(1, 6)}}
STEPPED = [n for n in model_names() if not n.endswith("resnet101") and n not in COVERED_BY]


def test_every_model_is_stepped_or_covered_by_one_that_is():
  for name in set(model_names()) - set(STEPPED):
    twin = name.replace("resnet101", "resnet50")
    twin = COVERED_BY.get(twin, twin)
    assert twin in STEPPED, name


@pytest.mark.parametrize("name", STEPPED)
def test_one_sharded_train_step(name):
  sizes = model_overrides(name, width=4, depth=2, backbone=dict(fc_channels=64),
                          head=dict(channels=64))
  cfg = build_config("demo", [*sizes, f"augment.crop_size=({SIZE},{SIZE})", "optim.name=sgd",
                              "optim.warmup_steps=0"])
  mesh, state, step, _ = build_step(cfg, size=SIZE, num_classes=NUM_CLASSES)
  rng = np.random.default_rng(0)
  batch = {"image": rng.integers(0, 255, (8, SIZE, SIZE, 3), dtype=np.uint8),
           "label": rng.integers(0, NUM_CLASSES, (8, SIZE, SIZE)).astype(np.uint8)}
  # Copied before the step, which donates the state's buffers.
  aux_before = jax.device_get(state.params.get("aux_classifier"))
  new_state, metrics = step(state, global_batch(mesh, batch))
  assert int(new_state.step) == 1
  assert np.isfinite(float(metrics["loss"])) and float(metrics["grad_norm"]) > 0
  assert ("loss/aux" in metrics) == (name in WITH_AUX_HEAD), (
      f"{name}: aux head expected: {name in WITH_AUX_HEAD}; update WITH_AUX_HEAD if intended")
  if name in WITH_AUX_HEAD:
    # The total is main + aux_weight * aux, and the aux head is trained by it.
    main, aux = float(metrics["loss/cross_entropy"]), float(metrics["loss/aux"])
    assert aux > 0 and cfg.loss.aux_weight > 0
    np.testing.assert_allclose(float(metrics["loss"]), main + cfg.loss.aux_weight * aux,
                               rtol=1e-6)
    moved = jax.tree.map(lambda a, b: float(np.abs(a - b).max()), aux_before,
                         jax.device_get(new_state.params["aux_classifier"]))
    assert min(jax.tree.leaves(moved)) > 0, f"{name}: aux head params without gradient: {moved}"

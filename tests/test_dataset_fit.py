"""Values checked against the dataset's meta and the model before anything compiles
(jaxseg/data/dataset_fit.py, run first by build.build)."""

import pytest

from jaxseg.config.resolve import build_config
from jaxseg.data import dataset_fit
from jaxseg.errors import ConfigError
from jaxseg.runtime.build import build, synthetic_meta
from jaxseg.runtime.sharding import make_mesh

META = synthetic_meta(6, (64, 64))  # 6 classes, a 64x64 eval canvas.


def _cfg(*overrides):  # demo:smoke's U-Net of depth 3: sides divisible by 8.
  return build_config("demo:smoke", ["model.width=4", *overrides])


def test_defaults_fit():
  dataset_fit.check(_cfg(), META)
  dataset_fit.check(_cfg("eval.mode=aug"), META)


@pytest.mark.parametrize("overrides, message", [
    (["loss.cross_entropy.class_weights=(1,2,3)"],
     "loss.cross_entropy.class_weights has 3 weights; expected one per class "
                                     "of dataset 'shapes': 6 (class0, class1, class2, class3, "
                                     "class4, class5)"),
    (["augment.crop_size=(60,64)"], "augment.crop_size=(60, 64): model 'unet' cannot take a "
                                    "60x64 input (unet of depth 3 needs H and W divisible by 8"),
    (["eval.mode=slide", "eval.crop_size=(36,36)"],
     "eval.crop_size=(36, 36) on the dataset's 64x64 canvas: model 'unet' cannot take a 36x36"),
    (["eval.mode=aug", "eval.size_divisor=4", "eval.scales=(1.0,0.5625)"],
     "eval.scales 0.5625 with eval.size_divisor=4 on the dataset's 64x64 canvas: model 'unet' "
     "cannot take a 36x36 input"),
    (["eval.protocol=resize", "eval.resize_bucket=20"],
     "eval.resize_bucket=20: model 'unet' cannot take a 20x20 input"),
])
def test_misfits_are_config_errors_naming_the_key(overrides, message):
  with pytest.raises(ConfigError) as e:
    dataset_fit.check(_cfg(*overrides), META)
  assert message in str(e.value)


def test_build_checks_before_it_compiles(monkeypatch):
  from jaxseg.runtime import build as build_module

  def no_init(*_, **__):
    raise AssertionError("the state was initialised before the check")

  monkeypatch.setattr(build_module, "create_train_state", no_init)
  with pytest.raises(ConfigError, match="loss.cross_entropy.class_weights has 2 weights"):
    build(_cfg("loss.cross_entropy.class_weights=(1,2)"), META, make_mesh())
  # Windows larger than the canvas shrink to it: a 64x64 pass, which fits.
  dataset_fit.check(_cfg("eval.mode=slide", "eval.crop_size=(100,100)"), META)
  # The same misfit on a canvas the window is cut to: 36 = the canvas side.
  with pytest.raises(ConfigError, match="cannot take a 36x36 input"):
    dataset_fit.check(_cfg("eval.mode=slide", "eval.crop_size=(100,100)"),
                      synthetic_meta(6, (36, 36)))

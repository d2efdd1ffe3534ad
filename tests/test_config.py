import os
import pathlib
import shutil
import subprocess
import sys

import ml_collections
import pytest

from jaxseg.config.loading import experiment_names, run_name
from jaxseg.config.resolve import apply_overrides, build_config
from jaxseg.errors import ConfigError


def test_overrides_are_typed():
  cfg = build_config("demo", ["optim.lr=0.5", "train.steps=7", "model.name=seed_cnn",
                              "augment.crop_size=(32,48)", "optim.nesterov=true",
                              "optim.weight_decay=0", "optim.name=sgd"])
  assert cfg.optim.lr == 0.5 and isinstance(cfg.optim.lr, float)
  assert cfg.train.steps == 7 and isinstance(cfg.train.steps, int)
  assert cfg.model.name == "seed_cnn"
  assert tuple(cfg.augment.crop_size) == (32, 48)
  assert cfg.optim.nesterov is True
  assert cfg.optim.weight_decay == 0.0 and isinstance(cfg.optim.weight_decay, float)


def test_config_is_locked():
  cfg = build_config("demo")
  with pytest.raises(AttributeError):
    cfg.optim.not_a_key = 1


@pytest.mark.parametrize("override, expected", [
    ("optim.lrr=0.1", "'optim.lr'"),
    ("train.step=3", "'train.steps'"),
    ("modle.name=unet", "'model.name'"),
])
def test_unknown_key_names_closest(override, expected):
  with pytest.raises(ConfigError, match="unknown config key") as info:
    build_config("demo", [override])
  assert expected in str(info.value)


@pytest.mark.parametrize("override", ["train.steps=ten", "optim.lr=fast", "optim.nesterov=maybe",
                                      "train.steps=1.5", "optim.lr"])
def test_badly_typed_values_are_rejected(override):
  with pytest.raises(ConfigError, match="train.steps|optim.lr|optim.nesterov|KEY=VALUE"):
    build_config("demo", ["optim.name=sgd", override])


def test_unknown_experiment_and_variant_name_closest():
  with pytest.raises(ConfigError, match="did you mean 'demo'"):
    build_config("dmeo")
  with pytest.raises(ConfigError, match="did you mean 'smoke'"):
    build_config("demo:smoek")


def test_later_override_wins():
  cfg = apply_overrides(build_config("demo").copy_and_resolve_references(),
                        ["train.steps=3", "train.steps=4"])
  assert cfg.train.steps == 4


@pytest.mark.parametrize("name", experiment_names())
def test_every_experiment_loads_and_is_locked(name):
  cfg = build_config(name)
  assert isinstance(cfg, ml_collections.ConfigDict) and cfg.is_locked
  assert cfg.experiment == name


_MY_EXPERIMENT = '''"""A user's experiment outside experiments/: the demo with a smaller lr."""
from experiments import demo


def get_config(variant: str = ""):
  c = demo.get_config(variant)
  c.optim.lr = 1e-4
  return c
'''


def test_exp_takes_a_path_to_an_experiment_file(tmp_path):
  path = tmp_path / "my_exp.py"
  path.write_text(_MY_EXPERIMENT)
  cfg = build_config(f"{path}:smoke", ["train.steps=3"])
  demo = build_config("demo:smoke", ["train.steps=3"])
  assert cfg.is_locked and cfg.experiment == f"{path}:smoke"
  assert cfg.optim.lr == 1e-4 and cfg.train.steps == 3
  assert cfg.train.batch_size == demo.train.batch_size  # The smoke variant applied.
  with pytest.raises(ConfigError, match="did you mean 'smoke'"):
    build_config(f"{path}:smok")
  assert run_name(f"{path}:smoke,loss=dice") == "my_exp_smoke_loss=dice"
  assert run_name("voc_fcn:smoke") == "voc_fcn_smoke" and run_name("demo") == "demo"


def test_bad_experiment_files_fail_with_the_path(tmp_path):
  with pytest.raises(ConfigError, match=f"{tmp_path}/nope.py: no such experiment file"):
    build_config(f"{tmp_path}/nope.py")
  empty = tmp_path / "empty.py"
  empty.write_text("X = 1\n")
  with pytest.raises(ConfigError, match=f"{empty}: defines no get_config"):
    build_config(str(empty))


def test_installed_copy_finds_experiments_from_another_directory(tmp_path):
  """`pip install .` ships `experiments` beside `jaxseg`; nothing reads the checkout."""
  root = pathlib.Path(__file__).resolve().parent.parent
  src, site, elsewhere = tmp_path / "src", tmp_path / "site", tmp_path / "elsewhere"
  for name in ("jaxseg", "experiments"):  # A copy: building writes into the source tree.
    shutil.copytree(root / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
  for name in ("pyproject.toml", "README.md"):
    shutil.copy(root / name, src / name)
  subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                  "--no-build-isolation", "--no-compile", "--target", str(site), str(src)],
                 check=True, capture_output=True)
  elsewhere.mkdir()
  (elsewhere / "my_exp.py").write_text(_MY_EXPERIMENT)
  code = ("import experiments, jaxseg; from jaxseg.config.loading import experiment_names; "
          "from jaxseg.config.resolve import build_config; "
          f"assert jaxseg.__file__.startswith({str(site)!r}), jaxseg.__file__; "
          f"assert experiments.__file__.startswith({str(site)!r}), experiments.__file__; "
          "assert 'voc_fcn' in experiment_names(); "
          "assert build_config('voc_fcn:smoke').model.name == 'mmseg_fcn_resnet50'; "
          "assert build_config('my_exp.py:smoke').optim.lr == 1e-4")
  env = {**os.environ, "PYTHONPATH": str(site)}
  subprocess.run([sys.executable, "-c", code], cwd=elsewhere, env=env, check=True)


# Keys only some components take are set together with a choice that takes them.
CHOOSING = {"loss.dice.mode": ["loss.terms=dice"], "optim.momentum": ["optim.name=sgd"],
            "model.backbone.output_stride": ["model.name=fcn_resnet50"],
            "model.init": ["model.name=fcn_resnet50"],
            "model.head.channels": ["model.name=mmseg_fcn_resnet50"],
            "model.head.aspp_dropout": ["model.name=deeplabv3_resnet50"],
            "model.head.style": ["model.name=segformer_b0"],
            "model.aux_head.dropout": ["model.name=fcn_resnet50"],
            "model.backbone.fc_channels": ["model.name=fcn8s"],
            "model.backbone.fc_dropout": ["model.name=fcn8s"],
            "model.backbone.drop_path_rate": ["model.name=segformer_b0"],
            "model.bn_momentum": ["model.name=fcn_resnet50"],
            "model.head.classifier_init_std": ["model.name=fcn_resnet50"],
            "data.folder.ignore_rgb": ["data.name=folder"],
            **{f"augment.{key}": ["augment.preset=scale_crop_flip"]
               for key in ("rescale.scale_range", "rescale.base_size",
                           "photometric.contrast_range", "photometric.hue_delta")}}


# One bad value per kind of check, in every section; each fails at load naming its key.
@pytest.mark.parametrize("override, message", [
    ("data.worker_count=-1", "data.worker_count=-1: expected an int >= 0"),
    ("data.folder.ignore_rgb=(255,255)", "data.folder.ignore_rgb=(255, 255): expected () or"),
    ("augment.crop_size=(64,0)", "augment.crop_size=(64, 0): expected two positive ints"),
    ("augment.crop_size=(64,64,3)", "augment.crop_size=(64, 64, 3): expected two positive"),
    ("augment.flip_prob=-0.1", "augment.flip_prob=-0.1: expected a number >= 0 and <= 1"),
    ("augment.crop.image_pad=edge", "augment.crop.image_pad='edge': expected one of ['zero', "),
    ("augment.crop.cat_max_ratio=0",
     "augment.crop.cat_max_ratio=0.0: expected a number > 0 and <= 1"),
    ("augment.rescale.scale_range=(2,0.5)",
     "augment.rescale.scale_range=(2.0, 0.5): expected (low, high)"),
    ("augment.rescale.base_size=(512,)",
     "augment.rescale.base_size=(512,): expected () or two positive"),
    ("augment.photometric.contrast_range=(1.5,)",
     "augment.photometric.contrast_range=(1.5,): expected (low, high)"),
    ("augment.photometric.hue_delta=200",
     "augment.photometric.hue_delta=200: expected an int >= 0 and <= 180"),
    ("augment.mean=(1,2)", "augment.mean=(1.0, 2.0): expected three values"),
    ("augment.std=(1,0,1)", "augment.std=(1.0, 0.0, 1.0): expected three values (R, G, B) > 0"),
    ("model.width=0", "model.width=0: expected an int >= 1"),
    ("model.dropout=1", "model.dropout=1.0: expected a number >= 0 and < 1"),
    ("model.backbone.output_stride=4",
     "model.backbone.output_stride=4: expected one of [8, 16, 32]"),
    ("model.init=kaiming", "model.init='kaiming': expected one of ['kaiming_normal', "
                           "'xavier_uniform'] (did you mean 'kaiming_normal'?)"),
    ("model.depth=-1", "model.depth=-1: expected an int >= 0"),
    ("model.head.channels=1", "model.head.channels=1: expected an int >= 2"),
    ("model.head.aspp_dropout=1", "model.head.aspp_dropout=1.0: expected a number >= 0 and < 1"),
    ("model.head.style=torch", "model.head.style='torch': expected one of ['hf', 'mmseg']"),
    ("model.aux_head.dropout=1", "model.aux_head.dropout=1.0: expected a number >= 0 and < 1"),
    ("model.backbone.fc_channels=0", "model.backbone.fc_channels=0: expected an int >= 1"),
    ("model.backbone.fc_dropout=-0.5",
     "model.backbone.fc_dropout=-0.5: expected a number >= 0 and < 1"),
    ("model.backbone.drop_path_rate=1",
     "model.backbone.drop_path_rate=1.0: expected a number >= 0 and < 1"),
    ("model.bn_momentum=2", "model.bn_momentum=2.0: expected a number >= 0 and <= 1"),
    ("model.head.classifier_init_std=-1",
     "model.head.classifier_init_std=-1.0: expected a number >= 0"),
    ("loss.aux_weight=-1", "loss.aux_weight=-1.0: expected a number >= 0"),
    ("loss.cross_entropy.class_weights=(1,-1)",
     "loss.cross_entropy.class_weights=(1, -1): expected numbers each >= 0"),
    ("optim.lr=0", "optim.lr=0.0: expected a number > 0"),
    ("optim.momentum=1", "optim.momentum=1.0: expected a number >= 0 and < 1"),
    ("optim.warmup_steps=-1", "optim.warmup_steps=-1: expected an int >= 0"),
    ("optim.lr_mult=(('(',0.1),)", "optim.lr_mult=(('(', 0.1),): expected valid regexes"),
    ("optim.lr_mult=(('head',),)", "optim.lr_mult=(('head',),): expected ((regex, multiplier"),
    ("train.log_every=0", "train.log_every=0: expected an int >= 1"),
    ("train.eval_every=-1", "train.eval_every=-1: expected an int >= 0"),
    ("train.checkpoint_every=0", "train.checkpoint_every=0: expected an int >= 1"),
    ("train.keep_checkpoints=0", "train.keep_checkpoints=0: expected an int >= 1"),
    ("train.grad_accum_steps=0", "train.grad_accum_steps=0: expected an int >= 1"),
    ("train.grad_accum_steps=3", "train.batch_size=16: expected a multiple of train.grad_accum"),
    ("train.ema_decay=1", "train.ema_decay=1.0: expected a number >= 0 and < 1"),
    ("eval.batch_size=0", "eval.batch_size=0: expected an int >= 1"),
    ("eval.crop_size=(64.5,64)", "eval.crop_size=(64.5, 64): expected two positive ints"),
    ("eval.stride=(0,8)", "eval.stride=(0, 8): expected two positive ints"),
    ("eval.scales=(1.0,-0.5)", "eval.scales=(1.0, -0.5): expected one or more resize factors"),
    ("eval.mode=sliding", "eval.mode='sliding': unknown value 'sliding'; did you mean 'slide'"),
    ("predict.overlay_alpha=1.5", "predict.overlay_alpha=1.5: expected a number >= 0 and <= 1"),
    ("predict.bucket=0", "predict.bucket=0: expected an int >= 1"),
])
def test_bad_values_fail_at_load_naming_the_key(override, message):
  key = override.partition("=")[0]
  with pytest.raises(ConfigError) as info:
    build_config("demo", [*CHOOSING.get(key, ()), override])
  assert str(info.value).startswith(message) and "\n" not in str(info.value)


def test_the_loaders_component_section_names_are_the_filled_sections():
  """config.loading names the component sections without importing the components;
  the names must be those config.resolve fills from them."""
  from jaxseg.config.resolve import component_sections
  from jaxseg.config.run_sections import COMPONENT_SECTIONS

  assert set(COMPONENT_SECTIONS) == {section.name for section in component_sections()}

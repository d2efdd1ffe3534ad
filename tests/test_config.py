import ml_collections
import pytest

from jaxseg.config import ConfigError, apply_overrides, build_config, experiment_names


def test_overrides_are_typed():
  cfg = build_config("demo", ["optim.lr=0.5", "train.steps=7", "model.name=seed_cnn",
                              "augment.crop_size=(32,48)", "optim.nesterov=true",
                              "optim.weight_decay=0"])
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
    build_config("demo", [override])


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

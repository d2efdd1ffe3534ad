"""The `augment` and `data` sections hold the chosen preset's and dataset builder's own keys.

A key only other components take fails at load naming them; each registered
member builds from its section alone; each key a member declares changes what
it builds; the prepared dataset a config names (its tfds directory) is the one
the code before these sections named, so existing preparations are reused.
"""

import os

import numpy as np
import pytest

from experiments import _voc
from jaxseg.config.from_checkpoint import config_from_checkpoint
from jaxseg.config.overrides import flat_dict
from jaxseg.config.resolve import build_config
from jaxseg.data import datasets
from jaxseg.data import augment as A
from jaxseg.data import transforms as T
from jaxseg.errors import ConfigError

# A value other than the default for every key a preset may take (flat: group.field).
ALTERNATIVES = {"flip_prob": 1.0, "crop.cat_max_ratio": 0.5, "crop.image_pad": "mean",
                "rescale.scale_range": (1.0, 1.5), "rescale.base_size": (),
                "photometric.enabled": False, "photometric.brightness_delta": 4.0,
                "photometric.contrast_range": (0.9, 1.1),
                "photometric.saturation_range": (0.8, 1.2), "photometric.hue_delta": 3}


@pytest.mark.parametrize("override, owners", [
    ("augment.photometric.enabled=true", ["augmentation preset scale_crop_flip"]),
    ("augment.rescale.scale_range=(1,2)", ["augmentation preset scale_crop_flip",
                                           "augmentation preset voc"]),
    ("augment.photometric.hue_delta=3", ["augmentation preset scale_crop_flip",
                                         "augmentation preset voc"]),
    ("data.folder.root=/tmp/x", ["dataset folder"]),
    ("data.voc_seg.download=true", ["dataset voc_seg"]),
    ("data.ade20k.download=true", ["dataset ade20k"]),
])
def test_a_key_of_another_component_fails_at_load_naming_its_owners(override, owners):
  with pytest.raises(ConfigError) as info:
    build_config("demo", [override])  # demo: preset flip, dataset shapes.
  message = str(info.value)
  key = override.partition("=")[0]
  assert message.startswith(f"config key '{key}' does not apply to the chosen ")
  assert all(owner in message for owner in owners), message
  assert "\n" not in message


def test_a_group_key_another_preset_has_fails_naming_its_owner():
  """voc's photometric group has no switch (it always runs): scale_crop_flip's has."""
  with pytest.raises(ConfigError) as info:
    build_config("demo", ["augment.preset=voc", "augment.photometric.enabled=false"])
  assert str(info.value).startswith(
      "config key 'augment.photometric.enabled' does not apply to the chosen augmentation "
      "preset voc (it is a key of augmentation preset scale_crop_flip)"), str(info.value)


@pytest.mark.parametrize("choice, override, value", [
    ("augment.preset=scale_crop_flip", "augment.photometric.enabled=true", True),
    ("augment.preset=voc", "augment.rescale.scale_range=(1,2)", (1.0, 2.0)),
    ("data.name=folder", "data.folder.root=/tmp/x", "/tmp/x"),
    ("data.name=voc_seg", "data.voc_seg.download=true", True),
    ("data.name=ade20k", "data.ade20k.download=true", True),
])
def test_the_same_key_loads_with_a_component_that_takes_it(choice, override, value):
  # The choice after the key on the command line: choices are applied first anyway.
  cfg = build_config("demo", [override, choice])
  assert flat_dict(cfg.to_dict())[override.partition("=")[0]] == value


@pytest.mark.parametrize("override, message", [
    ("augment.photometric.hue_delta=200",
     "augment.photometric.hue_delta=200: expected an int >= 0 and <= 180"),
    ("augment.photometric.brightness_delta=256",
     "augment.photometric.brightness_delta=256.0: expected a number >= 0 and <= 255"),
    ("augment.photometric.contrast_range=(1.5,0.5)",
     "augment.photometric.contrast_range=(1.5, 0.5): expected (low, high) factors with 0 <="),
    ("augment.photometric.saturation_range=(-1,1)",
     "augment.photometric.saturation_range=(-1.0, 1.0): expected numbers each >= 0"),
    ("augment.rescale.scale_range=(2,0.5)",
     "augment.rescale.scale_range=(2.0, 0.5): expected (low, high) ratios with 0 < low <="),
    ("augment.rescale.scale_range=(0,1)",
     "augment.rescale.scale_range=(0.0, 1.0): expected numbers each > 0"),
    ("augment.rescale.base_size=(512,)",
     "augment.rescale.base_size=(512,): expected () or two positive ints (long, short)"),
    ("augment.crop.cat_max_ratio=0", "augment.crop.cat_max_ratio=0.0: expected a number > 0"),
    ("augment.crop.image_pad=edge", "augment.crop.image_pad='edge': expected one of ['zero'"),
    ("augment.flip_prob=1.5", "augment.flip_prob=1.5: expected a number >= 0 and <= 1"),
])
def test_a_preset_argument_out_of_its_declared_range_fails_at_load(override, message):
  with pytest.raises(ConfigError) as info:
    build_config("demo", ["augment.preset=voc", override])
  assert str(info.value).startswith(message), str(info.value)


def test_a_typo_lists_the_closest_keys():
  with pytest.raises(ConfigError, match="did you mean 'augment.flip_prob'"):
    build_config("demo", ["augment.flip_prb=0.3"])


def _keys(section):
  return set(flat_dict(section.to_dict()))


def test_section_keys_are_the_shared_ones_and_the_chosen_members():
  assert _keys(A.SECTION.config(preset="none")) == {"preset", "crop_size", "mean", "std",
                                                    "crop.cat_max_ratio", "crop.image_pad"}
  assert _keys(A.SECTION.config(preset="flip")) == _keys(A.SECTION.config(preset="none")) | {
      "flip_prob"}
  assert _keys(A.SECTION.config(preset="voc")) | {"photometric.enabled"} == _keys(
      A.SECTION.config(preset="scale_crop_flip"))
  assert {"rescale.scale_range", "rescale.base_size", "photometric.hue_delta"} <= _keys(
      A.SECTION.config(preset="voc"))
  shared = set(datasets.SECTION.shared)
  assert _keys(datasets.SECTION.config(name="shapes")) == shared
  assert _keys(datasets.SECTION.config(name="voc_seg")) == shared | {"voc_seg.download"}
  assert _keys(datasets.SECTION.config(name="ade20k")) == shared | {"ade20k.download"}
  assert _keys(datasets.SECTION.config(name="folder")) == shared | {"folder.root",
                                                                    "folder.ignore_rgb"}


def test_every_argument_declares_its_meaning():
  """A hint the declaration could not resolve would drop its Arg (range and help) silently."""
  def params(registry):
    for name in registry.names():
      for key, p in registry.declared(name).items():
        yield from ((f"{name}.{key}.{k}", q) for k, q in p.group.items()) if p.group else [
            (f"{name}.{key}", p)]

  for where, p in [*params(A.AUGMENTATIONS), *params(datasets.DATASETS)]:
    assert p.meaning(), f"{where} has no help"


@pytest.mark.parametrize("preset", A.AUGMENTATIONS.names())
def test_every_preset_builds_from_its_section_alone(preset):
  section = A.SECTION.config(preset=preset, crop_size=(16, 24))
  rng = np.random.default_rng(0)
  example = {"image": rng.integers(0, 256, (30, 20, 3), dtype=np.uint8),
             "label": rng.integers(0, 3, (30, 20), dtype=np.uint8)}
  out = A.build_augment(section, 255)(example, rng)
  assert out["image"].shape == (16, 24, 3) and out["label"].shape == (16, 24)


@pytest.mark.parametrize("preset", A.AUGMENTATIONS.names())
def test_every_key_a_preset_takes_changes_what_it_builds(preset):
  """A declared key the preset never read would leave its ops unchanged."""
  own = flat_dict(A.AUGMENTATIONS.params(preset))
  # scale_crop_flip's photometric keys act when it is on.
  base = {"photometric": {"enabled": True}} if "photometric.enabled" in own else {}
  built = repr(A.build_augment(A.SECTION.config(preset=preset, **base), 255))
  for key in own:
    group, _, field = key.rpartition(".")
    values = {group: dict(base.get(group, {}), **{field: ALTERNATIVES[key]})} if group else {
        key: ALTERNATIVES[key]}
    changed = A.SECTION.config(preset=preset, **dict(base, **values))
    assert repr(A.build_augment(changed, 255)) != built, f"{preset} ignores augment.{key}"


def test_mean_reaches_the_mean_padding():
  section = A.SECTION.config(preset="none", crop=dict(image_pad="mean"), mean=(10.0, 20.4, 30.6))
  pad = A.build_augment(section, 255).ops[-1]
  assert pad.keywords["image_value"] == (10, 20, 31)


def test_voc_recipe_values_live_in_the_experiment():
  assert not hasattr(T, "mmseg_voc_augment")
  augment = build_config("voc_fcn").augment
  recipe = flat_dict(_voc.mmseg_voc_augment())
  assert {k: flat_dict(augment.to_dict())[k] for k in recipe} == recipe
  assert augment.preset == "voc" and augment.crop.cat_max_ratio == 0.75


def _write_pinned_folder(root):
  """A folder dataset whose files' bytes are fixed, so its fingerprint is too."""
  files = {"classes.txt": b"background\nthing\n", "colors.txt": b"0 0 0\n200 10 10\n",
           "images/train/a.png": b"image bytes a", "labels/train/a.png": b"label bytes a",
           "images/val/b.jpg": b"image bytes b", "labels/val/b.png": b"label bytes b"}
  for rel, data in files.items():
    os.makedirs(os.path.dirname(os.path.join(root, rel)), exist_ok=True)
    with open(os.path.join(root, rel), "wb") as f:
      f.write(data)


# The prepared directories the code before per-builder keys chose for these configs
# (computed with it): the same config must name the same copy, so it is reused.
@pytest.mark.parametrize("overrides, prepared", [
    (["data.name=folder", "data.folder.root={root}"], "folder/pinned_f34327acd1bf/1.0.0"),
    (["data.name=folder", "data.folder.root={root}", "data.folder.ignore_rgb=()"],
     "folder/pinned_6ba964f949bc/1.0.0"),
    (["data.name=voc_seg", "data.config=2012_aug"], "voc_seg/2012_aug/1.0.0"),
    (["data.name=voc_seg", "data.config=2012"], "voc_seg/2012/1.0.0"),
    (["data.name=shapes"], "shapes/1.0.0"),
])
def test_configs_name_the_copies_prepared_before(tmp_path, overrides, prepared):
  root = tmp_path / "pinned"
  _write_pinned_folder(root)
  data = build_config("demo", [o.format(root=root) for o in overrides]
                      + [f"data.dir={tmp_path / 'tfds'}"]).data
  builder = datasets._builder(data)
  assert os.path.relpath(os.fspath(builder.data_dir), tmp_path / "tfds") == prepared


@pytest.mark.parametrize("name", ["voc_seg", "ade20k"])
def test_download_reaches_the_builder(tmp_path, name):
  for value in (False, True):
    data = build_config("demo", [f"data.name={name}", f"data.{name}.download={value}",
                                 f"data.dir={tmp_path}"]).data
    assert datasets._builder(data)._allow_download is value


def test_folder_without_a_root_says_which_key(tmp_path):
  data = datasets.SECTION.config(name="folder", dir=str(tmp_path))
  with pytest.raises(datasets.DatasetMissingError, match="data.folder.root"):
    datasets._builder(data)


def test_a_checkpoint_with_every_old_key_loads_with_the_same_values():
  """Configs saved before per-preset sections had every augment and data key in every run,
  flat (`augment.cat_max_ratio`, `data.folder_root`): moved, and dropped where not read."""
  cfg = build_config("demo")
  saved = cfg.to_dict()
  del saved["augment"]["crop"]
  saved["augment"].update(photometric=False, scale_range=[0.5, 2.0], base_size=[2048, 512],
                          brightness_delta=32.0, contrast_range=[0.5, 1.5],
                          saturation_range=[0.5, 1.5], hue_delta=18, cat_max_ratio=1.0,
                          image_pad="zero")
  saved["data"].update(download=False, folder_root="", folder_ignore_rgb=[255, 255, 255])
  restored = config_from_checkpoint(saved)
  assert flat_dict(restored.to_dict()) == flat_dict(cfg.to_dict())


@pytest.mark.parametrize("old, key, value", [
    (dict(augment=dict(preset="voc", cat_max_ratio=0.5, image_pad="mean", hue_delta=7,
                       scale_range=[1.0, 1.5])),
     "augment.photometric.hue_delta", 7),
    (dict(augment=dict(preset="voc", cat_max_ratio=0.5)), "augment.crop.cat_max_ratio", 0.5),
    (dict(augment=dict(preset="voc", scale_range=[1.0, 1.5])), "augment.rescale.scale_range",
     (1.0, 1.5)),
    (dict(augment=dict(preset="scale_crop_flip", photometric=True)),
     "augment.photometric.enabled", True),
    (dict(data=dict(name="folder", folder_root="/data/x", folder_ignore_rgb=[])),
     "data.folder.ignore_rgb", ()),
    (dict(data=dict(name="ade20k", download=True)), "data.ade20k.download", True),
])
def test_an_old_checkpoint_keeps_its_values_at_the_new_keys(old, key, value):
  saved = build_config("demo").to_dict()
  for section, values in old.items():
    saved[section] = values  # As saved then: the section's flat keys only.
  restored = flat_dict(config_from_checkpoint(saved).to_dict())
  assert restored[key] == value

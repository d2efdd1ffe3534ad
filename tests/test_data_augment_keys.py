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

# A value other than the default for every key a preset may take.
ALTERNATIVES = {"flip_prob": 1.0, "cat_max_ratio": 0.5, "image_pad": "mean",
                "scale_range": (1.0, 1.5), "base_size": (), "photometric": True,
                "brightness_delta": 4.0, "contrast_range": (0.9, 1.1),
                "saturation_range": (0.8, 1.2), "hue_delta": 3}


@pytest.mark.parametrize("override, owners", [
    ("augment.photometric=true", ["augmentation preset scale_crop_flip"]),
    ("augment.scale_range=(1,2)", ["augmentation preset scale_crop_flip",
                                   "augmentation preset voc"]),
    ("data.folder_root=/tmp/x", ["dataset folder"]),
    ("data.download=true", ["dataset voc_seg"]),
])
def test_a_key_of_another_component_fails_at_load_naming_its_owners(override, owners):
  with pytest.raises(ConfigError) as info:
    build_config("demo", [override])  # demo: preset flip, dataset shapes.
  message = str(info.value)
  key = override.partition("=")[0]
  assert message.startswith(f"config key '{key}' does not apply to the chosen ")
  assert all(owner in message for owner in owners), message
  assert "\n" not in message


@pytest.mark.parametrize("choice, override, key, value", [
    ("augment.preset=scale_crop_flip", "augment.photometric=true", "photometric", True),
    ("augment.preset=voc", "augment.scale_range=(1,2)", "scale_range", (1.0, 2.0)),
    ("data.name=folder", "data.folder_root=/tmp/x", "folder_root", "/tmp/x"),
    ("data.name=voc_seg", "data.download=true", "download", True),
])
def test_the_same_key_loads_with_a_component_that_takes_it(choice, override, key, value):
  # The choice after the key on the command line: choices are applied first anyway.
  cfg = build_config("demo", [override, choice])
  assert cfg[choice.split(".")[0]][key] == value


def test_a_typo_lists_the_closest_keys():
  with pytest.raises(ConfigError, match="did you mean 'augment.flip_prob'"):
    build_config("demo", ["augment.flip_prb=0.3"])


def test_section_keys_are_the_shared_ones_and_the_chosen_members():
  assert set(A.SECTION.config(preset="none")) == {"preset", "crop_size", "mean", "std",
                                                  "cat_max_ratio", "image_pad"}
  assert set(A.SECTION.config(preset="flip")) == set(A.SECTION.config(preset="none")) | {
      "flip_prob"}
  assert set(A.SECTION.config(preset="voc")) | {"photometric"} == set(
      A.SECTION.config(preset="scale_crop_flip"))
  shared = set(datasets.SECTION.shared)
  assert set(datasets.SECTION.config(name="shapes")) == shared
  assert set(datasets.SECTION.config(name="voc_seg")) == shared | {"download"}
  assert set(datasets.SECTION.config(name="folder")) == shared | {"folder_root",
                                                                  "folder_ignore_rgb"}


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
  own = A.AUGMENTATIONS.params(preset)
  base = {"photometric": True} if "photometric" in own else {}  # Photometric keys act then.
  built = repr(A.build_augment(A.SECTION.config(preset=preset, **base), 255))
  for key in own:
    changed = A.SECTION.config(preset=preset, **dict(base, **{key: ALTERNATIVES[key]}))
    if key == "photometric":
      changed = A.SECTION.config(preset=preset, photometric=False)
    assert repr(A.build_augment(changed, 255)) != built, f"{preset} ignores augment.{key}"


def test_mean_reaches_the_mean_padding():
  section = A.SECTION.config(preset="none", image_pad="mean", mean=(10.0, 20.4, 30.6))
  pad = A.build_augment(section, 255).ops[-1]
  assert pad.keywords["image_value"] == (10, 20, 31)


def test_voc_recipe_values_live_in_the_experiment():
  assert not hasattr(T, "mmseg_voc_augment")
  augment = build_config("voc_fcn").augment
  assert {k: augment[k] for k in _voc.mmseg_voc_augment()} == _voc.mmseg_voc_augment()
  assert augment.preset == "voc" and augment.cat_max_ratio == 0.75


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
    (["data.name=folder", "data.folder_root={root}"], "folder/pinned_f34327acd1bf/1.0.0"),
    (["data.name=folder", "data.folder_root={root}", "data.folder_ignore_rgb=()"],
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


def test_voc_seg_download_reaches_the_builder(tmp_path):
  for value in (False, True):
    data = build_config("demo", ["data.name=voc_seg", f"data.download={value}",
                                 f"data.dir={tmp_path}"]).data
    assert datasets._builder(data)._allow_download is value


def test_folder_without_a_root_says_which_key(tmp_path):
  data = datasets.SECTION.config(name="folder", dir=str(tmp_path))
  with pytest.raises(datasets.DatasetMissingError, match="data.folder_root"):
    datasets._builder(data)


def test_a_checkpoint_with_every_old_key_loads_with_the_same_values():
  """Configs saved before these sections had every augment and data key in every run."""
  cfg = build_config("demo")
  saved = cfg.to_dict()
  saved["augment"].update(photometric=False, scale_range=[0.5, 2.0], base_size=[2048, 512],
                          brightness_delta=32.0, contrast_range=[0.5, 1.5],
                          saturation_range=[0.5, 1.5], hue_delta=18)
  saved["data"].update(download=False, folder_root="", folder_ignore_rgb=[255, 255, 255])
  restored = config_from_checkpoint(saved)
  assert flat_dict(restored.to_dict()) == flat_dict(cfg.to_dict())

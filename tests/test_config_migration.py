"""The recipe config holds every experiment's values of the flat layout, keys moved.

tests/fixtures/flat_configs.json.gz is every experiment (and variant, and each loss,
model, dataset and preset chosen on demo:smoke) resolved by the flat layout, at commit
3ed43ec, by tests/fixtures/dump_flat_configs.py (run there with PYTHONPATH at that
checkout). Today's config of each must hold exactly those values, under the keys
config/migrate.py moves them to: no value changed, none lost, none added.
"""

from __future__ import annotations

import gzip
import json
import pathlib

import pytest

from jaxseg.config.from_checkpoint import config_from_checkpoint
from jaxseg.config.migrate import MOVED, migrate
from jaxseg.config.overrides import flat_dict
from jaxseg.config.resolve import build_config

FLAT = json.loads(gzip.decompress(
    (pathlib.Path(__file__).parent / "fixtures" / "flat_configs.json.gz").read_bytes()))


def _json(value):
  return json.loads(json.dumps(value))  # Tuples as lists, as the fixture holds them.


def _today(spec: str) -> dict:
  name, *overrides = spec.split(" ")
  return _json(flat_dict(build_config(name, overrides).to_dict()))


@pytest.mark.parametrize("spec", sorted(FLAT))
def test_every_recipe_keeps_its_values_under_the_moved_keys(spec):
  old, new = FLAT[spec], _today(spec)
  moved = migrate(old)
  added = sorted(k for k in new if k not in moved)
  assert not added, f"{spec}: keys with no value of the flat layout: {added}"
  changed = {k: (moved[k], new[k]) for k in new if moved[k] != new[k]}
  assert not changed, f"{spec}: values changed: {changed}"
  lost = sorted(k for k in old if MOVED.get(k, (k,)) and  # () = retired on purpose.
                not any(d in new for d in MOVED.get(k, (k,))))
  assert not lost, f"{spec}: flat keys whose value went nowhere: {lost}"


def test_a_flat_checkpoint_config_rebuilds_as_todays():
  """config_from_checkpoint of a flat-layout config (as a checkpoint of that time
  stored it) gives today's config of the same recipe."""
  for spec in ("voc_fcn:smoke", "ade20k_segformer_b0:smoke", "demo:smoke"):
    saved = {}
    for key, value in FLAT[spec].items():
      *parents, leaf = key.split(".")
      node = saved
      for parent in parents:
        node = node.setdefault(parent, {})
      node[leaf] = value
    rebuilt = _json(flat_dict(config_from_checkpoint(saved).to_dict()))
    assert rebuilt == _today(spec), spec


def test_migrate_moves_old_keys_and_never_overwrites_new_ones():
  moved = migrate({"loss.dice_smooth": 2.0, "loss.dice.smooth": 3.0, "train.steps": 5})
  assert moved == {"loss.dice.smooth": 3.0, "loss.tversky.smooth": 2.0, "train.steps": 5}

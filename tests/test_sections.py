"""Component config sections: keys come from the chosen components' signatures."""

from __future__ import annotations

import textwrap

import jax.numpy as jnp
import numpy as np
import pytest

import run
from jaxseg import losses, optim
from jaxseg.config.from_checkpoint import config_from_checkpoint
from jaxseg.config.overrides import flat_dict
from jaxseg.config.resolve import build_config
from jaxseg.config.sections import Choice, Section
from jaxseg.errors import ConfigError
from jaxseg.registry import Registry, UnknownNameError
from jaxseg.runtime.checkpoint import config_changes


def _toy_section():
  """A section `toy` choosing one member of a two-member registry."""
  registry = Registry("toy")

  @registry.register("a")
  def a(context, *, alpha: float = 1.0, shared_key: int = 3):
    return ("a", context, alpha, shared_key)

  @registry.register("b")
  def b(context, *, beta: tuple = (1, 2), shared_key: int = 3):
    return ("b", context, beta, shared_key)

  return registry, Section("toy", shared={"name": "a", "size": 4},
                           choices=(Choice("name", registry),))


def test_registry_build_passes_only_the_members_own_keys_and_the_context():
  registry, section = _toy_section()
  cfg = section.config(name="b", beta=(5, 6))
  assert set(cfg) == {"name", "size", "beta", "shared_key"}
  assert registry.build("b", cfg, context="ctx") == ("b", "ctx", (5, 6), 3)
  assert registry.params("a") == {"alpha": 1.0, "shared_key": 3}


def test_a_config_parameter_without_a_default_fails_at_registration():
  registry = Registry("toy")
  with pytest.raises(TypeError, match="'alpha' has no default"):
    @registry.register("a")
    def a(context, *, alpha: float):
      del context, alpha


def test_fill_takes_defaults_drops_other_members_keys_and_refuses_unknown_ones():
  _, section = _toy_section()
  filled = section.fill({"name": "a", "beta": (9, 9), "alpha": 2}, "experiment x")
  # beta is b's key: an experiment may set it for a variant that switches to b.
  assert filled.to_dict() == {"name": "a", "size": 4, "alpha": 2.0, "shared_key": 3}
  assert isinstance(filled.alpha, float)  # Typed as the signature's default.
  with pytest.raises(UnknownNameError, match=r"experiment x: unknown toy key 'alpah'; "
                                             r"did you mean 'alpha'"):
    section.fill({"name": "a", "alpah": 2.0}, "experiment x")
  assert "gone" not in section.fill({"name": "a", "gone": 1}, "ckpt", drop_unknown=True)
  with pytest.raises(ValueError, match=r"toy.alpha='x': expected a float"):
    section.fill({"name": "a", "alpha": "x"}, "experiment x")
  with pytest.raises(UnknownNameError, match="toy.name='cc': unknown toy 'cc'; valid: a, b"):
    section.fill({"name": "cc"}, "experiment x")


def test_config_refuses_a_key_the_choice_does_not_take_naming_its_owners():
  _, section = _toy_section()
  with pytest.raises(UnknownNameError, match=r"'toy.beta' does not apply to the chosen toy a "
                                             r"\(it is a key of toy b\)"):
    section.config(name="a", beta=(1, 1))


def test_set_of_another_optimizers_key_fails_at_load_and_passes_with_that_optimizer():
  with pytest.raises(ConfigError) as info:
    build_config("demo", ["optim.momentum=0.5"])  # demo trains with adamw.
  message = str(info.value)
  assert "'optim.momentum' does not apply to the chosen optimizer adamw" in message
  assert "optimizer sgd" in message and "b1" in message and "\n" not in message
  # The choice is applied first, wherever it stands on the command line.
  cfg = build_config("demo", ["optim.momentum=0.5", "optim.name=sgd"])
  assert cfg.optim.momentum == 0.5 and "b1" not in cfg.optim
  with pytest.raises(ConfigError, match="'optim.poly.power' does not apply to the chosen "
                                        "optimizer adamw, schedule cosine"):
    build_config("demo", ["optim.schedule=cosine", "optim.poly.power=2"])


def test_loss_keys_follow_the_chosen_terms():
  with pytest.raises(ConfigError, match=r"'loss.focal.gamma' does not apply to the chosen "
                                        r"loss cross_entropy \(it is a key of loss focal\)"):
    build_config("demo", ["loss.focal.gamma=3"])
  cfg = build_config("demo", ["loss.terms=cross_entropy:1,ohem:0.5",
                              "loss.ohem.class_weights=(1,2,3,4)"])
  # Each chosen term's arguments are its own: the ohem weights do not reach cross_entropy.
  assert losses.term("ohem", cfg.loss).keywords["class_weights"] == (1.0, 2.0, 3.0, 4.0)
  assert losses.term("cross_entropy", cfg.loss).keywords["class_weights"] == ()
  assert "focal" not in cfg.loss and cfg.loss.ohem.thresh == 0.7


def test_every_optimizer_schedule_and_loss_runs_from_its_own_section():
  """Each member gets what it needs from its filled section alone: an update of every
  optimizer under every schedule moves the params, every loss gives a finite value."""
  params = {"w": jnp.ones((3, 2))}
  grads = {"w": jnp.full((3, 2), 0.5)}
  for name in optim.OPTIMIZERS.names():
    for schedule in optim.SCHEDULES.names():
      cfg = optim.SECTION.config(name=name, schedule=schedule)
      tx, lr = optim.build_optimizer(cfg, total_steps=10)
      updates, _ = tx.update(grads, tx.init(params), params)
      assert np.isclose(float(lr(0)), 0.01) and bool(jnp.all(updates["w"] < 0)), (name, schedule)
  logits = jnp.asarray(np.random.default_rng(0).normal(size=(1, 4, 4, 3)), jnp.float32)
  labels = jnp.asarray(np.arange(16).reshape(1, 4, 4) % 3)
  for name in losses.LOSSES.names():
    value = losses.term(name, losses.SECTION.config(terms=name))(logits, labels, labels < 3)
    assert np.isfinite(float(value)) and float(value) > 0, name


def _write_experiment(tmp_path, body: str) -> str:
  path = tmp_path / "my_exp.py"
  path.write_text(textwrap.dedent('''
      from experiments.base import get_base_config

      def get_config(variant=""):
        c = get_base_config()
        c.optim.name = "adamw"
  ''') + textwrap.indent(textwrap.dedent(body), "  ") + "  return c\n")
  return str(path)


def test_an_experiment_files_unknown_key_fails_naming_the_experiment(tmp_path):
  path = _write_experiment(tmp_path, "c.optim.b3 = 0.5\n")
  with pytest.raises(ConfigError, match=rf"experiment {path}: unknown optim key 'b3'; "
                                        r"did you mean 'b2', 'b1'"):
    build_config(path)


def test_an_experiment_may_set_keys_of_components_its_variants_switch_to(tmp_path):
  path = _write_experiment(tmp_path, "c.optim.momentum = 0.5\n")
  assert "momentum" not in build_config(path).optim
  assert build_config(path, ["optim.name=sgd"]).optim.momentum == 0.5


def test_a_checkpoint_config_with_keys_no_component_takes_still_rebuilds():
  saved = build_config("demo:smoke").to_dict()
  saved["optim"]["momentum"] = 0.9  # Keys an older version wrote for every optimizer.
  saved["optim"]["retired_key"] = 1
  saved["loss"]["focal_gamma"] = 2.0
  cfg = config_from_checkpoint(saved)
  assert "momentum" not in cfg.optim and "retired_key" not in cfg.optim
  assert flat_dict(cfg.to_dict()) == flat_dict(build_config("demo:smoke").to_dict())


def test_resume_compares_the_keys_both_configs_have():
  old = {"optim": {"name": "sgd", "momentum": 0.9, "lr": 0.1}}
  new = {"optim": {"name": "sgd", "lr": 0.2}}
  assert config_changes(old, new) == {"optim.lr": (0.1, 0.2)}


def test_print_config_shows_the_filled_sections(capsys):
  assert run.main(["--exp", "demo", "--set", "optim.name=sgd", "--print_config"]) == 0
  lines = capsys.readouterr().out.splitlines()
  assert "optim.name = 'sgd'" in lines
  assert any(line.startswith("optim.momentum = 0.9 ") and line.endswith("# SGD momentum (>= 0 and < 1)")
             for line in lines)
  assert not any(line.startswith("optim.b1") for line in lines)


def test_did_you_mean_ignores_case():
  from jaxseg.registry import closest

  assert closest("UNet", ["unet", "seed_cnn", "fcn8s"])[0] == "unet"
  with pytest.raises(ConfigError, match="did you mean 'adamw'"):
    build_config("demo", ["optim.name=AdamW"])

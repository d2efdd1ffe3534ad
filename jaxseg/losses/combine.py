"""The `loss` section: `loss.terms` ('name:weight,...') parsed and checked, and the
weighted sum of those registered losses (and of the auxiliary head's) as one
function of (logits, aux, labels). Each chosen loss's own arguments are under its
name, `loss.<name>.<argument>`, declared in its signature (pixel.py, region.py)."""

from __future__ import annotations

import functools

import jax.numpy as jnp
import ml_collections

from jaxseg.config.checks import Checker, representable_problem
from jaxseg.config.sections import Choice, Section
from jaxseg.declare import bind
from jaxseg.losses.base import LOSSES
from jaxseg.registry import unknown_name_message


# --- weighted combinations ----------------------------------------------------


def parse_terms(text: str) -> tuple[tuple[str, float], ...]:
  """'cross_entropy:1.0,dice:0.5' -> (('cross_entropy', 1.0), ('dice', 0.5)).

  A bare name means weight 1. Raises ValueError naming the closest valid loss.
  """
  terms = []
  for token in filter(None, (t.strip() for t in text.split(","))):
    name, sep, weight = (s.strip() for s in token.partition(":"))
    if name not in LOSSES:
      raise ValueError(f"loss.terms={text!r}: " + unknown_name_message("loss", name, LOSSES.names()))
    try:
      value = float(weight) if sep else 1.0
    except ValueError:
      raise ValueError(f"loss.terms={text!r}: weight {weight!r} of {name!r} is not a number") from None
    # A weight <= 0 would train by gradient ascent on that term (or not at all).
    problem = "a weight > 0" if not value > 0 else representable_problem(value)
    if problem:
      raise ValueError(f"loss.terms={text!r}: weight {weight!r} of {name!r}; expected {problem}")
    if any(name == n for n, _ in terms):
      raise ValueError(f"loss.terms={text!r}: {name!r} appears twice")
    terms.append((name, value))
  if not terms:
    raise ValueError("loss.terms is empty; e.g. 'cross_entropy' or 'cross_entropy:1,dice:0.5'")
  return tuple(terms)


SECTION = Section("loss", shared={
    # Weighted sum of registered losses, 'name:weight,...' (a bare name = weight 1),
    # validated at config load: e.g. --set loss.terms=cross_entropy:1,dice:0.5
    "terms": "cross_entropy",
    "aux_weight": 0.4,  # Weight of the auxiliary head's loss (same terms), if any.
}, choices=(Choice("terms", LOSSES, lambda terms: [n for n, _ in parse_terms(terms)],
                   nested=True),))


def validate_config(loss_cfg: ml_collections.ConfigDict) -> None:
  """Fails at config load (not mid-run) on a bad `loss` section."""
  parse_terms(loss_cfg.terms)
  Checker(loss_cfg, "loss").number("aux_weight", min=0)


def term(name: str, loss_cfg: ml_collections.ConfigDict):
  """Loss `name` with its arguments from `loss_cfg[name]`: (logits, labels, valid) -> scalar."""
  return functools.partial(LOSSES.get(name), **bind(LOSSES.declared(name), loss_cfg.get(name, {})))


def make_loss(loss_cfg: ml_collections.ConfigDict, ignore_index: int):
  """(logits, aux, labels) -> (total loss, {term name: value}) from `loss.terms`.

  The aux head (if any) gets the same weighted terms, scaled by `loss.aux_weight`.
  """
  terms = [(name, weight, term(name, loss_cfg)) for name, weight in parse_terms(loss_cfg.terms)]

  def combined(logits_BHWC, labels_BHW, valid_BHW):
    values = {name: fn(logits_BHWC.astype(jnp.float32), labels_BHW, valid_BHW)
              for name, _, fn in terms}
    return sum(weight * values[name] for name, weight, _ in terms), values

  def total_loss(logits_BHWC, aux: dict, labels_BHW):
    valid_BHW = labels_BHW != ignore_index
    total, values = combined(logits_BHWC, labels_BHW, valid_BHW)
    if "aux_logits" in aux:
      values["aux"], _ = combined(aux["aux_logits"], labels_BHW, valid_BHW)
      total = total + loss_cfg.aux_weight * values["aux"]
    return total, values

  return total_loss

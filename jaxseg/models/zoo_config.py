"""Valid values of the zoo models' enumerated keys (`model.init`, `model.output_stride`,
`model.head`).

Each model factory declares its own `model` keys, with their defaults and
meanings, as keyword-only parameters (jaxseg/config/sections.py); the enumerations
they share are checked here, by the factories and by `models.validate_config`.
"""

from __future__ import annotations

CHOICES = {
    "init": ("kaiming_normal", "xavier_uniform"),
    "output_stride": (8, 16, 32),
    "head": ("hf", "mmseg"),  # SegFormer's decoder: transformers' or mmsegmentation's.
}


def check_choice(key: str, value):
  """`value` of `model.<key>`, or a ValueError naming the key and its valid values."""
  if value not in CHOICES[key]:
    raise ValueError(f"model.{key}={value!r}; expected one of {list(CHOICES[key])}")
  return value

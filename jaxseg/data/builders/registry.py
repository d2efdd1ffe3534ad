"""DATASETS: dataset name -> tfds builder class.

A leaf module, so builder files can register themselves without importing
`jaxseg.data.datasets`; read it through that module, which imports every
builder and so holds every name.
"""

from __future__ import annotations

from jaxseg.declare import Param, declared_params
from jaxseg.registry import Registry


def builder_params(builder_cls) -> dict[str, Param]:
  """{key: Param} of the `data` keys a builder takes: the keyword-only parameters of
  its `builder_kwargs(data_dir, *, ...)` classmethod, which maps them to the builder's
  constructor arguments (none for a builder without one)."""
  if not hasattr(builder_cls, "builder_kwargs"):
    return {}
  return declared_params(builder_cls.builder_kwargs)


DATASETS: Registry = Registry("dataset", params_of=builder_params)

"""jaxseg: semantic segmentation in JAX/Flax.

    import jaxseg
    seg = jaxseg.Segmenter.from_checkpoint("runs/demo")
    mask_HW = seg(image)

`Segmenter` (jaxseg/prediction/segmenter.py) is imported on first use, so `import jaxseg`
itself loads neither jax nor flax.
"""

__version__ = "0.1.0"
__all__ = ["Segmenter"]


def __getattr__(name: str):
  if name == "Segmenter":
    from jaxseg.prediction.segmenter import Segmenter

    return Segmenter
  raise AttributeError(f"module 'jaxseg' has no attribute {name!r}")


def __dir__():
  return sorted([*globals(), *__all__])

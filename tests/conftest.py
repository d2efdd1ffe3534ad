"""Every test runs on 8 fake CPU devices; XLA reads this flag at backend start."""

import atexit
import os
import shutil
import tempfile

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# One persistent XLA cache per session, for the xdist workers and the run.py processes
# the tests start (they inherit it): many tests compile the same programs (demo:smoke's
# U-Net init alone costs tens of seconds of XLA:CPU compile), and a program loaded from
# the cache computes what a fresh compile does. Set it yourself to keep one across runs.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="jaxseg-tests-xla-")
  atexit.register(shutil.rmtree, os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)

import pytest  # noqa: E402  (after XLA_FLAGS on purpose)


@pytest.fixture(scope="session")
def shapes_dir(tmp_path_factory):
  """The `shapes` dataset prepared once per test session into a private data dir."""
  from jaxseg.data.builders.shapes import Shapes

  data_dir = tmp_path_factory.mktemp("tfds")
  Shapes(data_dir=str(data_dir), file_format="array_record").download_and_prepare()
  return str(data_dir)


@pytest.fixture
def rbg_keys():
  """Random keys of jax's `rbg` implementation while a test runs (jax's default: threefry).

  XLA:CPU compiles an init from them several times faster (a demo U-Net's: ~5x); for
  tests whose claim holds for any random bits. The default keys stay under every other
  test: test_golden pins their numbers, test_steps that 1 and 8 devices agree.
  """
  import jax

  with jax.default_prng_impl("rbg"):
    yield


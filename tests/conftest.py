"""Every test runs on 8 fake CPU devices; XLA reads this flag at backend start."""

import os

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pytest  # noqa: E402  (after XLA_FLAGS on purpose)


@pytest.fixture(scope="session")
def shapes_dir(tmp_path_factory):
  """The `shapes` dataset prepared once per test session into a private data dir."""
  from jaxseg.data.builders.shapes import Shapes

  data_dir = tmp_path_factory.mktemp("tfds")
  Shapes(data_dir=str(data_dir), file_format="array_record").download_and_prepare()
  return str(data_dir)

"""jax's persistent compilation cache, on by default for every run.py command.

Compiled XLA programs are kept on disk, keyed by the program, its shapes and
shardings, the devices and the jax/XLA version, so a second `--mode eval` or
`--mode predict` of the same shapes (and a resumed training) loads them instead
of compiling. Where (jax's own settings, read from the environment):

  JAX_COMPILATION_CACHE_DIR=DIR        this directory (a gs:// path works too)
  unset                                $XDG_CACHE_HOME/jaxseg/xla, else ~/.cache/jaxseg/xla
  JAX_ENABLE_COMPILATION_CACHE=false   no persistent cache

Safe to share between runs and processes (entries are written whole, by process
0 only) and to delete at any time.
"""

from __future__ import annotations

import os

import jax

# Programs that compile faster than this are not worth a disk read; on a CPU the
# eval/predict programs of even the demo model take seconds.
MIN_COMPILE_TIME_S = 0.5


def default_dir(env=None) -> str:
  env = os.environ if env is None else env
  root = env.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return os.path.join(root, "jaxseg", "xla")


def enable() -> str | None:
  """Turns the cache on (before the first compile); returns its directory, or None
  when JAX_ENABLE_COMPILATION_CACHE=false."""
  if not jax.config.jax_enable_compilation_cache:
    return None
  directory = jax.config.jax_compilation_cache_dir or default_dir()
  jax.config.update("jax_compilation_cache_dir", directory)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_TIME_S)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  return directory

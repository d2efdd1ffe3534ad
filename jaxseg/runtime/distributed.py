"""Joining the other processes of a multi-process (multi-host) run.

One process per host (or per GPU node) runs the same command; each feeds its
local devices and reads its own slice of the data, and the jitted steps span
every device of every process. `initialize()` must run before anything starts
a jax backend, which is why run.py calls it first and train.py again (a no-op
the second time) for callers that skip run.py.
"""

from __future__ import annotations

import io
import os
import sys

import jax

# Set all three to start a run by hand (the test's two local processes, or any
# cluster jax does not detect): the same address on every process, 0..N-1 ids.
COORDINATOR, NUM_PROCESSES, PROCESS_ID = (
    "JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID")
# JAXSEG_DISTRIBUTED=1: let jax detect its peers (e.g. Kubernetes, mpi4py);
# =0: stay one process even where a cluster is detected.
SWITCH = "JAXSEG_DISTRIBUTED"


def _on_cloud_tpu_vm() -> bool:
  # jax sets this flag on import from the PCI devices it sees, before any backend
  # starts. Private, hence the getattr; initialize() is harmless on a one-host VM
  # and on a pod slice finds the other hosts through the TPU metadata server.
  try:
    from jax._src import cloud_tpu_init
  except ImportError:
    return False
  return bool(getattr(cloud_tpu_init, "running_in_cloud_tpu_vm", False))


def _detected_multi_process(env) -> bool:
  """Environments where jax.distributed.initialize() finds its peers by itself."""
  if _on_cloud_tpu_vm() or env.get("MEGASCALE_COORDINATOR_ADDRESS"):
    return True
  # SLURM and Open MPI also set these for one task; only several need joining.
  if env.get("SLURM_STEP_NODELIST") and int(env.get("SLURM_NTASKS", "1")) > 1:
    return True
  return int(env.get("OMPI_COMM_WORLD_SIZE", "1")) > 1


def initialize(env=None) -> None:
  """Calls jax.distributed.initialize() when this is one process of several.

  Explicit: JAX_COORDINATOR_ADDRESS=host:port, JAX_NUM_PROCESSES, JAX_PROCESS_ID
  (the coordinator alone lets jax detect the other two). Detected: Cloud TPU
  VMs, multi-task SLURM and Open MPI jobs. Idempotent.
  """
  env = os.environ if env is None else env
  if jax.distributed.is_initialized() or env.get(SWITCH) == "0":
    return
  if env.get(COORDINATOR):
    count, index = env.get(NUM_PROCESSES), env.get(PROCESS_ID)
    jax.distributed.initialize(coordinator_address=env[COORDINATOR],
                               num_processes=int(count) if count else None,
                               process_id=int(index) if index else None)
  elif env.get(SWITCH) == "1" or _detected_multi_process(env):
    jax.distributed.initialize()


def is_main_process() -> bool:
  """Process 0 alone writes metrics, TensorBoard, reports, the config and the progress bar."""
  return jax.process_index() == 0


def silence_native_stdout() -> None:
  """Sends what native code writes to file descriptor 1 to /dev/null, while Python's
  sys.stdout keeps the real stdout: gloo (CPU collectives across processes) prints
  '[Gloo] Rank 0 is connected to 3 peer ranks...' with std::cout and has no switch
  to stop it, so stdout would not hold jaxseg's lines alone. Native libraries log
  to stderr, which is untouched. For run.py (a test process keeps its stdout)."""
  sys.stdout.flush()
  real_stdout = os.dup(1)
  devnull = os.open(os.devnull, os.O_WRONLY)
  os.dup2(devnull, 1)
  os.close(devnull)
  sys.stdout = io.TextIOWrapper(io.FileIO(real_stdout, "w"), encoding=sys.stdout.encoding,
                                errors=sys.stdout.errors, line_buffering=sys.stdout.line_buffering)

"""FLOPs from XLA's cost analysis against a count by hand; the peak table; the log line."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

from jaxseg.runtime import runlog, step_cost
from jaxseg.runtime.peak_flops import PEAKS, peak_flops

B, H, W, CIN, C1, C2, K = 2, 12, 10, 3, 8, 4, 3


class TwoConvs(nn.Module):
  @nn.compact
  def __call__(self, x_BHWC):
    x = nn.relu(nn.Conv(C1, (K, K), padding="VALID", use_bias=False)(x_BHWC))
    return nn.Conv(C2, (K, K), padding="VALID", use_bias=False)(x)


def _hand_count():
  """2 * K*K*Cin*Cout * Hout*Wout per conv (a multiply and an add per tap) + 1 per ReLU."""
  h1, w1 = H - K + 1, W - K + 1
  h2, w2 = h1 - K + 1, w1 - K + 1
  conv1 = 2 * K * K * CIN * C1 * h1 * w1 * B
  conv2 = 2 * K * K * C1 * C2 * h2 * w2 * B
  return conv1, conv2, B * h1 * w1 * C1


def test_forward_flops_equal_the_hand_count():
  net, x = TwoConvs(), jnp.ones((B, H, W, CIN))
  params = net.init(jax.random.key(0), x)
  flops = step_cost.compiled_flops(jax.jit(net.apply).lower(params, x).compile())
  assert flops == sum(_hand_count())


def test_train_step_flops_are_forward_plus_backward():
  """Backward: each conv's weight gradient (its forward's count) and the input gradient
  of all but the first conv, whose input needs none: 2x (first) to 3x (others) forward."""
  net, x = TwoConvs(), jnp.ones((B, H, W, CIN))
  params = net.init(jax.random.key(0), x)

  def step(params, x):
    grads = jax.grad(lambda p: jnp.sum(net.apply(p, x) ** 2))(params)
    return jax.tree.map(lambda p, g: p - 0.1 * g, params, grads)

  flops = step_cost.compiled_flops(jax.jit(step).lower(params, x).compile())
  conv1, conv2, relu = _hand_count()
  by_hand = 2 * conv1 + 3 * conv2
  # The rest (ReLU and its gradient mask, the squared loss, the update) is elementwise.
  assert by_hand <= flops <= by_hand * 1.05
  assert 2.0 < flops / (conv1 + conv2 + relu) < 3.0


def test_sharded_step_counts_one_devices_share():
  """Under SPMD XLA analyses one device's program: a batch split 8 ways, 1/8 the FLOPs."""
  from jax.sharding import NamedSharding, PartitionSpec as P

  from jaxseg.runtime.sharding import make_mesh

  mesh = make_mesh()
  x = jax.device_put(jnp.ones((8 * B, H, W, CIN)), NamedSharding(mesh, P("data")))
  net = TwoConvs()
  params = net.init(jax.random.key(0), x[:1])
  flops = step_cost.compiled_flops(jax.jit(net.apply).lower(params, x).compile())
  assert mesh.size == 8 and flops == sum(_hand_count())


@pytest.mark.parametrize("kind, dtype, expected", [
    ("TPU v4", "bfloat16", 275e12), ("TPU v5 lite", "bfloat16", 197e12),
    ("TPU v5", "bfloat16", 459e12), ("TPU v5p", "bfloat16", 459e12),
    ("TPU v6 lite", "bfloat16", 918e12), ("TPU v4", "float32", None),
    ("NVIDIA A100-SXM4-40GB", "bfloat16", 312e12), ("NVIDIA A100 80GB PCIe", "float32", 156e12),
    ("NVIDIA H100 80GB HBM3", "bfloat16", 989.5e12), ("NVIDIA H100 PCIe", "bfloat16", 756.5e12),
    ("NVIDIA H200", "bfloat16", 989.5e12), ("NVIDIA H200", "float32", 494.5e12),
    ("cpu", "float32", None), ("Tesla V100-SXM2-16GB", "float16", None)])
def test_peak_flops_by_device_kind(kind, dtype, expected):
  assert peak_flops(kind, dtype) == expected


def test_every_peak_names_its_source():
  for _, peaks, source in PEAKS:
    assert source.startswith("https://") and peaks


def test_mfu_is_achieved_over_peak():
  cost = step_cost.StepCost(params=10, flops_per_device=4e12, batch_per_device=8, num_devices=8,
                            device_kind="NVIDIA H200", dtype="bfloat16")
  assert cost.flops_per_image == 0.5e12
  assert cost.tflops_per_device(2.0) == 2.0
  assert cost.mfu(2.0) == pytest.approx(2e12 / 989.5e12)
  on_cpu = step_cost.StepCost(10, 4e12, 8, 8, "cpu", "float32")
  assert on_cpu.mfu(2.0) is None and "no MFU" in ", ".join(on_cpu.fields())


def _values(**extra):
  return {"loss": 1.25, "loss/cross_entropy": 1.0, "loss/aux": 0.625, "lr": 0.01,
          "grad_norm": 2.0, "img_per_s": 32.0, "step_time_s": 0.5, "data_time_s": 0.125,
          "eta_s": 3725.0, "nonfinite_steps": 0, **extra}


def test_log_line_names_every_value_it_has():
  line = runlog.log_line(40, 800, _values(device_memory_in_use_bytes=1 << 30,
                                          device_memory_peak_bytes=3 << 30,
                                          tflops_per_device=12.5, mfu=0.25))
  assert line == ("step 40/800  loss 1.2500 (cross_entropy 1.0000, aux 0.6250)  lr 1.000e-02  "
                  "grad_norm 2.000  img/s 32.0  step 0.500s  data 0.125s  eta 1:02:05  "
                  "mem 1.00 GiB (peak 3.00)  12.5 TFLOP/s/device  MFU 25.0%")
  # CPU: no memory statistics, no peak; nothing printed for them.
  assert runlog.log_line(40, 800, _values()).endswith("eta 1:02:05")
  assert runlog.device_memory() is None


def test_interval_values_time_the_steps_and_the_data():
  clock = runlog.StepClock(0)
  with clock.waiting_for_data():
    pass
  cost = step_cost.StepCost(10, 1e9, 2, 8, "cpu", "float32")
  values = runlog.interval_values(clock, 4, 10, 16, cost)
  assert 0 <= values["data_time_s"] <= values["step_time_s"]
  assert values["eta_s"] == pytest.approx(6 * values["step_time_s"])
  assert values["img_per_s"] == pytest.approx(16 / values["step_time_s"])
  assert values["tflops_per_device"] == pytest.approx(1e9 / values["step_time_s"] / 1e12)
  assert "mfu" not in values and "device_memory_in_use_bytes" not in values


def test_measuring_the_train_step_compiles_it_once(rbg_keys):
  """train.py counts the step's FLOPs before its first call: that call must reuse the
  executable, not compile the step a second time."""
  from jax._src import monitoring

  from jaxseg.config.resolve import build_config
  from jaxseg.runtime.sharding import global_batch
  from tests.stepkit import build_step, fixed_batch

  compiles = []

  def listener(name, _, **kw):
    if name.endswith("backend_compile_duration"):
      compiles.append(name)

  cfg = build_config("demo:seed,smoke", ["model.width=4"])
  mesh, state, step, _ = build_step(cfg, size=32)
  batch = global_batch(mesh, fixed_batch(n=16, size=32))
  monitoring.register_event_duration_secs_listener(listener)
  try:
    cost = step_cost.measure(step, state, batch, cfg)
    assert len(compiles) == 1 and cost.batch_per_device == 2
    assert cost.params == step_cost.param_count(state.params) > 0
    jax.block_until_ready(step(state, batch))
    assert len(compiles) == 1
  finally:
    monitoring.unregister_event_duration_listener(listener)


def test_micro_batch_loops_count_every_trip():
  """XLA's cost analysis counts a loop body once; a step of 4 micro-batches does 4x the work."""
  import flax
  import ml_collections

  @flax.struct.dataclass
  class State:
    params: jax.Array

  def step(state, batch_ANN):
    body = lambda total, x_NN: (total + jnp.sum(x_NN @ state.params), None)
    return jax.lax.scan(body, 0.0, batch_ANN)[0]

  state, batch = State(jnp.ones((32, 32))), jnp.ones((4, 32, 32))
  cfg = ml_collections.ConfigDict({"train": {"batch_size": 32, "grad_accum_steps": 4},
                                   "model": {}})
  assert step_cost.compiled_flops(jax.jit(step).lower(state, batch).compile()) < 2 * 2 * 32**3
  cost = step_cost.measure(jax.jit(step), state, batch, cfg)
  # Per trip: the matmul, the sum's 1024 adds and the carry's add (and the counter's).
  assert cost.flops_per_device == 4 * (2 * 32**3 + 32 * 32 + 2)

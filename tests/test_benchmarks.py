"""benchmarks/train_throughput.py runs end to end on CPU, and its --max-batch search is sound."""

import os
import re

import jax
import pytest

from benchmarks import max_batch, train_throughput

TINY = ["--model", "unet", "--batch", "8", "--crop", "32", "--dtype", "float32", "--iters", "2",
        "--warmup", "1", "--set", "model.width=4", "--set", "model.depth=1"]


@pytest.fixture(scope="module")
def tiny_run():
  import contextlib
  import io

  out = io.StringIO()
  with contextlib.redirect_stdout(out):
    result = train_throughput.main(TINY + [
        "--voc-eval", "--voc-eval-images", "20", "--voc-eval-canvas", "32", "--voc-eval-batch", "8",
        "--max-batch", "--memory-limit-gib", "1", "--max-batch-limit", "32", "--compare-torch"])
  return result, out.getvalue()


def _row(text, impl, phase):
  for line in text.splitlines():
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    if cells[:2] == [impl, phase]:
      return cells
  raise AssertionError(f"no {impl}/{phase} row in:\n{text}")


def test_table_has_every_row_with_positive_throughput(tiny_run):
  result, text = tiny_run
  for phase in ("train", "eval", "voc-eval"):
    assert float(_row(text, "jaxseg", phase)[2]) > 0
  assert result["voc_eval"]["images"] == 20 and result["voc_eval"]["batches"] == 3
  # No CUDA here: the torch rows are n/a and the table says why.
  if result["torch"] is None:
    assert _row(text, "torch.compile", "train")[2] == "n/a"
    assert "torch.compile: skipped," in text


def test_max_batch_reaches_the_cap_under_a_generous_limit(tiny_run):
  result, text = tiny_run
  mb = result["max_batch"]
  assert (mb["best"], mb["first_bad"]) == (32, None)
  assert sorted(mb["tried"]) == [8, 16, 32]  # doubling from --batch, capped
  assert re.search(r"max batch \(train, global\): 32 ", text)


def test_search_is_monotone_in_the_memory_limit_with_real_estimates(tiny_run):
  # The estimates the run made, plus the one batch it skipped; then every limit
  # between them, searched again without compiling anything more.
  estimates = dict(tiny_run[0]["max_batch"]["estimates"])
  a = train_throughput._args(TINY)
  setup = train_throughput.Setup(a)
  state = setup.new_state()
  estimates[24] = max_batch.estimated_bytes(setup, setup.run.train_step, state, 24)
  sizes = [estimates[b] for b in (8, 16, 24, 32)]
  assert sizes == sorted(sizes) and len(set(sizes)) == 4, estimates  # grows with the batch
  limits = sorted({s + d for s in sizes for d in (-1, 0)}) + [sizes[-1] * 2]
  best = []
  for limit in limits:
    b, bad, _ = max_batch.search(lambda n: estimates[n] <= limit, 8, 8, 32)
    assert b == 0 or estimates[b] <= limit
    assert bad is None or estimates[bad] > limit
    assert bad is None or bad == b + 8  # exact to one device-count step
    best.append(b)
  assert best == sorted(best) and best[0] == 0 and best[-1] == 32, best


@pytest.mark.parametrize("limit", [8, 24, 40, 64, 100, 512])
@pytest.mark.parametrize("start", [8, 16, 64])
def test_search_doubles_then_bisects(limit, start):
  capacity = 56  # the largest batch that "fits"
  calls = []
  fits = lambda b: calls.append(b) or b <= capacity
  best, bad, tried = max_batch.search(fits, start, 8, limit)
  assert best == min(capacity, limit // 8 * 8)
  assert bad is None if best == limit // 8 * 8 else bad == best + 8
  assert len(calls) == len(set(calls)) == len(tried) <= 8  # logarithmic, nothing twice
  # Bracketed by a power-of-two multiple of the start: start*2^k <= best < start*2^(k+1).
  if best >= start:
    k = (best // start).bit_length() - 1
    assert start * 2**k <= best < start * 2 ** (k + 1)


def test_oom_errors_are_recognised():
  assert max_batch.is_oom(RuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate"))
  assert max_batch.is_oom(RuntimeError("CUDA out of memory"))
  assert not max_batch.is_oom(RuntimeError("INVALID_ARGUMENT: shapes"))


def test_xla_flags_are_appended_only_before_jax_starts(monkeypatch, capsys):
  jax.devices()  # started
  monkeypatch.setenv("XLA_FLAGS", "--a")
  assert not train_throughput.apply_xla_flags("--b")
  assert os.environ["XLA_FLAGS"] == "--a" and "NOT applied" in capsys.readouterr().out
  from jax._src import xla_bridge

  monkeypatch.setattr(xla_bridge, "backends_are_initialized", lambda: False)
  assert train_throughput.apply_xla_flags("--b")
  assert os.environ["XLA_FLAGS"] == "--a --b"  # monkeypatch restores it afterwards

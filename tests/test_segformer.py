"""SegFormer without an oracle: padded canvases, the strict converter, and a run through run.py."""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxseg.config.overrides import flat_dict
from jaxseg.evaluation.inference import head_logits
from jaxseg.models import SECTION, build_model, model_names
from jaxseg.models.convert import flat_variables
from jaxseg.models.convert_segformer import canonical_state, load_segformer, torch_key
from jaxseg.models.pretrained import apply_pretrained
from jaxseg.models.segformer import MMSEG_RECIPE_OPTIM

KEY = jax.random.key(0, impl="rbg")  # Masking holds for any weights.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_b0_to_b5_are_registered():
  assert {f"segformer_b{i}" for i in range(6)} <= set(model_names())


@pytest.mark.parametrize("head", ["hf", "mmseg"])
def test_masked_canvas_gives_the_unpadded_images_logits(head):
  """45x61 on a 64x96 canvas of large noise: every stride rounds up, every key grid
  (floor(h / sr)) has a partial window, and only the key mask keeps the valid logits."""
  model = build_model(SECTION.config(name="segformer_b0", head=dict(style=head, channels=32)), 3)
  rng = np.random.default_rng(0)
  canvas = rng.standard_normal((1, 64, 96, 3)).astype(np.float32) * 10
  image = rng.standard_normal((1, 45, 61, 3)).astype(np.float32)
  canvas[:, :45, :61] = image
  valid = np.zeros((1, 64, 96), bool)
  valid[:, :45, :61] = True
  variables = jax.jit(lambda: model.init(KEY, jnp.asarray(canvas), train=False))()
  coarse = jax.jit(lambda x, valid: head_logits(model, variables, x, valid))
  unpadded = coarse(jnp.asarray(image), None)
  assert unpadded.shape[1:3] == (12, 16)  # ceil(45 / 4), ceil(61 / 4).
  masked = coarse(jnp.asarray(canvas), jnp.asarray(valid))[:, :12, :16]
  np.testing.assert_allclose(masked, unpadded, rtol=1e-4, atol=1e-5)
  assert not np.allclose(coarse(jnp.asarray(canvas), None)[:, :12, :16], unpadded, atol=1e-2)


def fake_state(model, head: str) -> dict:
  """A torch-layout state dict with every key the converter asks for (random values)."""
  shapes = jax.eval_shape(lambda: model.init(KEY, jnp.zeros((1, 32, 32, 3)), train=False))
  rng = np.random.default_rng(0)
  prefix = {"hf": "segformer.encoder.", "mmseg": "backbone."}[head]
  state = {}
  for (collection, *path), leaf in flat_variables(shapes).items():
    shape = leaf.shape
    if len(shape) == 4:
      shape = (shape[3], shape[2], shape[0], shape[1])  # OIHW.
    elif len(shape) == 2:
      shape = shape[::-1]  # Linear (out, in).
    state[torch_key(collection, tuple(path), head, prefix)] = rng.standard_normal(shape)
  return shapes, state


def test_hf_names_of_transformers_5_load_like_the_published_ones(tmp_path):
  model = build_model(SECTION.config(name="segformer_b0", head=dict(style="hf", channels=8)), 3)
  shapes, state = fake_state(model, "hf")
  renamed = {k.replace("segformer.encoder.block.0.", "segformer.stages.0.blocks.")
              .replace("attention.self.query", "attention.q_proj")
              .replace("decode_head.linear_c", "decode_head.linear_projections"): v
             for k, v in state.items()}
  assert renamed != state and canonical_state(renamed, "hf").keys() == state.keys()
  a, _ = load_segformer(shapes, state, path="a", whole=True)
  # Through model.weights, as a run loads it (pretrained.load_pretrained_state's SegFormer branch).
  path = str(tmp_path / "segformer.npz")
  np.savez(path, **state)
  cfg = SECTION.config(name="segformer_b0", head=dict(style="hf", channels=8), weights=path)
  loaded = apply_pretrained(cfg, jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), shapes),
                            verbose=False)
  jax.tree.map(np.testing.assert_array_equal, a, loaded)
  b, _ = load_segformer(shapes, renamed, path="b", whole=True)
  jax.tree.map(np.testing.assert_array_equal, a, b)
  # A Linear's (out, in) weight is the Dense kernel transposed.
  np.testing.assert_array_equal(
      a["params"]["backbone"]["block_0_0"]["attn"]["q"]["kernel"],
      state["segformer.encoder.block.0.0.attention.self.query.weight"].T.astype(np.float32))


def test_mmseg_qkv_is_split_and_encoder_files_load_the_backbone_only():
  model = build_model(SECTION.config(name="segformer_b0", head=dict(style="mmseg", channels=8)), 3)
  shapes, state = fake_state(model, "mmseg")
  stem = "backbone.layers.0.1.0.attn.attn."
  for leaf in ("weight", "bias"):
    state[f"{stem}in_proj_{leaf}"] = np.concatenate(
        [state.pop(f"{stem}{n}_proj.{leaf}") for n in "qkv"])
  variables, _ = load_segformer(shapes, state, path="full", whole=True)
  np.testing.assert_array_equal(variables["params"]["backbone"]["block_0_0"]["attn"]["v"]["bias"],
                                state[f"{stem}in_proj_bias"][64:].astype(np.float32))
  # mmseg's mit_b0 pretrain file: the encoder's keys without `backbone.`, and an ImageNet head.
  encoder = {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}
  encoder["head.weight"] = np.zeros((1000, 256))
  loaded, _ = load_segformer(shapes, encoder, path="mit_b0.pth", whole=False)
  assert isinstance(loaded["params"]["classifier"]["conv_seg"]["kernel"], jax.ShapeDtypeStruct)


def test_a_checkpoint_that_does_not_fit_fails_naming_every_misfit():
  model = build_model(SECTION.config(name="segformer_b0", head=dict(style="mmseg", channels=8)), 3)
  shapes, state = fake_state(model, "mmseg")
  del state["backbone.layers.3.2.weight"]
  state["backbone.layers.9.2.weight"] = np.zeros(3)
  state["decode_head.conv_seg.bias"] = np.zeros(5)
  with pytest.raises(ValueError) as err:
    load_segformer(shapes, state, path="bad.pth", whole=True)
  message = str(err.value)
  assert "backbone.layers.3.2.weight (for params/backbone/norm_3/scale)" in message
  assert "layers.9.2.weight" in message and "decode_head.conv_seg.bias: file has (5,)" in message


@pytest.mark.slow
def test_segformer_b0_trains_on_shapes_through_run_py(shapes_dir, tmp_path):
  """The recipe's optimizer keys (MMSEG_RECIPE_OPTIM) with the mmseg head, end to end."""
  recipe = [f"{k}={v if isinstance(v, str) else repr(v)}"
            for k, v in flat_dict({"optim": MMSEG_RECIPE_OPTIM}).items()]
  args = ["--exp", "demo:smoke", "--workdir", str(tmp_path / "run"), "--set",
          f"data.dir={shapes_dir}", "--set", "model.name=segformer_b0", "--set",
          "model.head.style=mmseg", "--set", "model.head.channels=32", "--set", "optim.name=adamw",
          "--set", "train.steps=4", "--set", "optim.warmup_steps=2"]
  for override in recipe:
    if not override.startswith("optim.warmup_steps"):
      args += ["--set", override]
  proc = subprocess.run([sys.executable, os.path.join(ROOT, "run.py"), *args], cwd=ROOT,
                        capture_output=True, text=True)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "mIoU" in proc.stdout


def test_decay_mult_scales_adamws_decoupled_decay_per_group():
  from jaxseg import optim
  cfg = optim.SECTION.config(name="adamw", lr=0.1, weight_decay=0.5, schedule="constant",
                             decay_mult=((r"/norm1/", 0.0), (r"^head/", 2.0)))
  tx, _ = optim.build_optimizer(cfg, 10)
  params = {"body": {"norm1": {"scale": jnp.ones(3)}, "conv": {"kernel": jnp.ones(3)}},
            "head": {"kernel": jnp.ones(3)}}
  zero_grads = jax.tree.map(jnp.zeros_like, params)  # Adam's part is then 0: decay alone.
  updates, _ = tx.update(zero_grads, tx.init(params), params)
  np.testing.assert_allclose(updates["body"]["norm1"]["scale"], 0.0)
  np.testing.assert_allclose(updates["body"]["conv"]["kernel"], -0.1 * 0.5, rtol=1e-6)
  np.testing.assert_allclose(updates["head"]["kernel"], -0.1 * 0.5 * 2, rtol=1e-6)


def test_mmengine_schedule_ends_each_phase_at_its_last_step():
  from jaxseg import optim
  cfg = optim.SECTION.config(**MMSEG_RECIPE_OPTIM)
  schedule = optim.build_schedule(cfg, 160000)
  lr = MMSEG_RECIPE_OPTIM["lr"]
  assert float(schedule(0)) == pytest.approx(lr * 1e-6, rel=1e-6)
  assert float(schedule(1499)) == pytest.approx(lr, rel=1e-6)
  assert float(schedule(1500)) == pytest.approx(lr, rel=1e-6)
  assert float(schedule(159999)) == 0.0 and float(schedule(159998)) > 0.0

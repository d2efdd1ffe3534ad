"""A hostile or careless user through `python run.py` (in-process): each bad value or
fault ends in one line on stderr naming the key, file or value, the documented exit
status, and no traceback without --debug. Most stop at config load: nothing is
prepared or compiled (the `no_preparation` fixture fails the test otherwise)."""

import os
import textwrap

import jax
import numpy as np
import pytest

import run
from jaxseg.config.resolve import build_config
from jaxseg.data import datasets
from jaxseg.runtime import runinfo
from jaxseg.runtime.build import build, synthetic_meta
from jaxseg.runtime.checkpoint import Checkpointer
from jaxseg.runtime.sharding import make_mesh
from jaxseg.training import train

# A small U-Net (depth 2: sides divisible by 4) on the embedded data, 8 fake devices.
SMALL = ["model.width=4", "model.depth=2", "augment.crop_size=(32,32)", "train.batch_size=8",
         "eval.batch_size=8", "train.tensorboard=false"]


def _sets(overrides):
  return [a for o in overrides for a in ("--set", o)]


def _main(args, capsys) -> tuple[int, str]:
  status = run.main(args)
  return status, capsys.readouterr().err


def _one_line(err: str, expected: str) -> str:
  lines = err.strip().splitlines()
  assert len(lines) == 1, err
  assert lines[0].startswith("error: ") and expected in lines[0], lines[0]
  assert "Traceback" not in err
  return lines[0]


@pytest.fixture
def no_preparation(monkeypatch):
  def refuse(*_):
    raise AssertionError("the dataset was prepared before the error")

  monkeypatch.setattr(datasets, "prepare", refuse)
  monkeypatch.setattr(train.datasets, "prepare", refuse)


# --- numbers: finite, representable as jax's int32/float32, loss weights > 0 -------

BAD_VALUES = [
    ("optim.lr=1e400", "optim.lr=inf: expected a finite number"),
    ("optim.lr=nan", "--set optim.lr=nan: expected a float like 0.003"),
    ("optim.lr=1e39", "optim.lr=1e+39: expected a number within float32's range"),
    ("optim.lr=1e-50", "optim.lr=1e-50: expected 0 or a number float32 does not round to 0"),
    ("optim.weight_decay=-1e999", "optim.weight_decay=-inf: expected a finite number"),
    ("loss.terms=cross_entropy:-1", "weight '-1' of 'cross_entropy'; expected a weight > 0"),
    ("loss.terms=cross_entropy:0", "weight '0' of 'cross_entropy'; expected a weight > 0"),
    ("loss.terms=cross_entropy:nan", "weight 'nan' of 'cross_entropy'; expected a weight > 0"),
    ("loss.terms=cross_entropy:1,dice:inf", "weight 'inf' of 'dice'; expected a finite number"),
    ("loss.terms=cross_entropy:1e39", "expected a number within float32's range"),
    ("loss.terms=cross_entropy:x", "weight 'x' of 'cross_entropy' is not a number"),
    ("loss.aux_weight=1e400", "loss.aux_weight=inf: expected a finite number"),
    ("loss.cross_entropy.class_weights=(1,1e400)",
     "loss.cross_entropy.class_weights=(1, inf): expected a finite number"),
    ("train.steps=99999999999999", "train.steps=99999999999999: expected an int within int32"),
    ("train.log_every=2147483648", "train.log_every=2147483648: expected an int within int32"),
    ("seed=4294967296", "seed=4294967296: expected an int within int32"),
    ("train.ema_decay=-1e400", "train.ema_decay=-inf: expected a finite number"),
    ("augment.mean=(1e400,0,0)", "augment.mean=(inf, 0.0, 0.0): expected a finite number"),
    ("augment.flip_prob=1e400", "augment.flip_prob=inf: expected a finite number"),
    ("eval.scales=(0.5,1e400)", "eval.scales=(0.5, inf): expected a finite number"),
    ("predict.overlay_alpha=-1e400", "predict.overlay_alpha=-inf: expected a finite number"),
    ("train.batch_size=1e3", "--set train.batch_size=1e3: expected a int"),
    ("train.stepz=3", "unknown config key 'train.stepz'; did you mean 'train.steps'"),
]


@pytest.mark.parametrize("override, message", BAD_VALUES, ids=[o for o, _ in BAD_VALUES])
def test_bad_number_stops_at_load(override, message, tmp_path, capsys, no_preparation):
  status, err = _main(["--exp", "demo:smoke", "--workdir", str(tmp_path / "w"),
                       "--set", f"data.dir={tmp_path / 'tfds'}", "--set", override], capsys)
  assert status == 2
  _one_line(err, message)
  assert not (tmp_path / "w").exists() and not (tmp_path / "tfds").exists()


# --- experiment files that cannot be loaded, or set keys no run reads ---------------

EXPERIMENTS = {
    "syntax": ("def get_config(variant=''):\n  return 1 +\n",
               "syntax.py:2: syntax error: invalid syntax"),
    "raises": ("from experiments import demo\n\ndef get_config(variant=''):\n"
               "  c = demo.get_config(variant)\n  c.train.steps = 1 // 0\n  return c\n",
               "raises.py:5: ZeroDivisionError: integer division or modulo by zero"),
    "missing_module": ("import not_a_module_xyz\n\ndef get_config(variant=''):\n  return None\n",
                       "missing_module.py:1: imports missing module 'not_a_module_xyz'"),
    "returns_none": ("def get_config(variant=''):\n  pass\n",
                     "returns_none.py: get_config returned NoneType, expected an "
                     "ml_collections.ConfigDict"),
    "returns_dict": ("def get_config(variant=''):\n  return {'train': {}}\n",
                     "get_config returned dict"),
    "no_get_config": ("CONFIG = 1\n", "defines no get_config(variant)"),
    "wrong_type": ("from experiments import demo\n\ndef get_config(variant=''):\n"
                   "  c = demo.get_config(variant)\n  c.train.steps = '10'\n  return c\n",
                   "wrong_type.py:5: TypeError: Could not override field 'steps'"),
    "train_typo": ("from experiments import demo\n\ndef get_config(variant=''):\n"
                   "  c = demo.get_config(variant)\n  c.train.stepz = 3\n  return c\n",
                   "train_typo.py:5: unknown config key 'train.stepz'; did you mean 'train.steps'"),
    "eval_typo": ("from experiments import demo\n\ndef get_config(variant=''):\n"
                  "  c = demo.get_config(variant)\n  c.eval.foo = 1\n  return c\n",
                  "eval_typo.py:5: unknown config key 'eval.foo'"),
    "top_level": ("from experiments import demo\n\ndef get_config(variant=''):\n"
                  "  c = demo.get_config(variant)\n  c.bogus = 3\n  return c\n",
                  "top_level.py:5: unknown config key 'bogus'; did you mean 'browse'? valid: augment, "
                  "browse, data, eval"),
    "nan_lr": ("from experiments import demo\n\ndef get_config(variant=''):\n"
               "  c = demo.get_config(variant)\n  c.optim.lr = float('nan')\n  return c\n",
               "error: optim.lr=nan: expected a finite number"),
    "predict_typo": ("from experiments import demo\n\ndef get_config(variant=''):\n"
                     "  c = demo.get_config(variant)\n  c.predict.batchsize = 3\n  return c\n",
                     "unknown config key 'predict.batchsize'; did you mean 'predict.batch_size'"),
}


@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_broken_experiment_file_is_one_line_with_file_and_line(name, tmp_path, capsys,
                                                               no_preparation):
  source, message = EXPERIMENTS[name]
  path = tmp_path / f"{name}.py"
  path.write_text(source)
  status, err = _main(["--exp", str(path), "--workdir", str(tmp_path / "w")], capsys)
  assert status == 2
  line = _one_line(err, message)
  assert str(path) in line or name == "nan_lr"  # A value's problem names its key.
  assert not (tmp_path / "w").exists()


def test_debug_prints_the_traceback_of_a_broken_experiment(tmp_path, capsys):
  path = tmp_path / "raises.py"
  path.write_text(EXPERIMENTS["raises"][0])
  status, err = _main(["--exp", str(path), "--debug", "--print_config"], capsys)
  assert status == 2
  assert "Traceback" in err and "ZeroDivisionError" in err
  assert err.strip().splitlines()[-1].startswith(f"error: experiment file {path}:5:")


def test_unknown_variant_and_missing_file(tmp_path, capsys):
  status, err = _main(["--exp", "demo:smok", "--print_config"], capsys)
  assert status == 2
  _one_line(err, "unknown variant 'smok'; did you mean 'smoke'")
  status, err = _main(["--exp", str(tmp_path / "nope.py"), "--print_config"], capsys)
  assert status == 2
  _one_line(err, "nope.py: no such experiment file")


# --- predict: nothing to read is an error, not "wrote 0" ----------------------------

def test_predict_on_an_empty_folder(tmp_path, capsys):
  (tmp_path / "in").mkdir()
  status, err = _main(["--mode", "predict", "--workdir", str(tmp_path / "w"),
                       "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out")],
                      capsys)
  assert status == 1
  _one_line(err, f"--input {tmp_path / 'in'} is an empty folder; expected image files")
  assert not (tmp_path / "out").exists()


def test_predict_on_files_that_are_no_images(tmp_path, capsys):
  (tmp_path / "notes.txt").write_text("not an image")
  status, err = _main(["--mode", "predict", "--workdir", str(tmp_path / "w"),
                       "--input", str(tmp_path / "notes.txt"), "--output", str(tmp_path / "o")],
                      capsys)
  assert status == 1
  _one_line(err, f"--input {tmp_path / 'notes.txt'}: not an image format PIL knows")
  folder = tmp_path / "in"
  folder.mkdir()
  for name in ("a.jpg", "b.png"):
    (folder / name).write_bytes(b"\x00garbage" * 10)
  status, err = _main(["--mode", "predict", "--workdir", str(tmp_path / "w"),
                       "--input", str(folder), "--output", str(tmp_path / "o")], capsys)
  assert status == 1
  _one_line(err, f"none of its 2 files is a readable image (e.g. {folder / 'a.jpg'}")
  assert not (tmp_path / "o").exists()


# --- a checkpoint, and what --force, eval and predict may change --------------------

@pytest.fixture(scope="module")
def saved_run(tmp_path_factory):
  """A workdir with a checkpoint at step 2 of demo:smoke's U-Net (SMALL): zero arrays in
  the state's shapes (nothing compiled) and a 6-class dataset meta; no data item."""
  workdir = tmp_path_factory.mktemp("saved") / "w"
  cfg = build_config("demo:smoke", SMALL)
  meta = synthetic_meta(6, (64, 64))
  abstract = build(cfg, meta, make_mesh(), abstract=True).state
  state = jax.tree.map(lambda s: jax.device_put(np.zeros(s.shape, s.dtype), s.sharding),
                       abstract)
  ckpt = Checkpointer(str(workdir / "checkpoints"), 3)
  # As a run saves it: with model.dtype resolved (runinfo.with_resolved_dtype).
  ckpt.save(2, state, None, runinfo.with_resolved_dtype(cfg).to_dict(), meta.to_json())
  ckpt.close()
  return str(workdir)


FORCED = [
    ("model.width=8", "the train state this config builds differs from checkpoint "),
    ("model.width=8", "params/"),
    ("optim.name=sgd", "(changed: optim.name ('adamw' -> 'sgd'))"),
    ("train.ema_decay=0.5", "ema_params/"),
    ("train.batch_size=16", "train.batch_size changed (8 -> 16) and the saved data position "
                            "counts batches of the old size"),
    ("data.shuffle_seed=3", "data.shuffle_seed changed (0 -> 3)"),
]


@pytest.mark.parametrize("override, message", FORCED)
def test_force_refuses_what_it_cannot_honour(override, message, saved_run, tmp_path, capsys,
                                             no_preparation):
  status, err = _main(["--exp", "demo:smoke", "--workdir", saved_run, "--force",
                       *_sets(SMALL + [override])], capsys)
  assert status == 2
  line = _one_line(err, message)
  assert line.startswith("error: cannot resume with --force: ") and "use a new --workdir" in line


def test_without_force_a_changed_lr_is_refused(saved_run, capsys, no_preparation):
  status, err = _main(["--exp", "demo:smoke", "--workdir", saved_run,
                       *_sets(SMALL + ["optim.lr=0.1"])], capsys)
  assert status == 2
  _one_line(err, "cannot resume: config differs from the checkpoint's in optim.lr "
                 "(0.003 -> 0.1); use a new --workdir, or --force")


def test_eval_input_sizes_the_model_cannot_take_stop_before_any_data(saved_run, capsys,
                                                                    no_preparation):
  status, err = _main(["--mode", "eval", "--workdir", saved_run, "--set", "eval.mode=slide",
                       "--set", "eval.crop_size=(30,30)"], capsys)
  assert status == 2
  _one_line(err, "eval.crop_size=(30, 30) on the dataset's 64x64 canvas: model 'unet' "
                 "cannot take a 30x30 input (unet of depth 2 needs H and W divisible by 4")


def test_eval_with_another_exp_says_so(saved_run, capsys, no_preparation):
  status, err = _main(["--exp", "demo:smoke,seed", "--mode", "eval", "--workdir", saved_run,
                       "--set", "eval.mode=slide", "--set", "eval.crop_size=(30,30)"], capsys)
  assert status == 2
  warning, error = err.strip().splitlines()
  assert warning == ("warning: --exp demo:smoke,seed is not the checkpoint's experiment "
                     "(demo:smoke); using the checkpoint's own config")
  assert error.startswith("error: eval.crop_size=(30, 30)")
  # Without --exp the checkpoint's experiment is taken without a word.
  status, err = _main(["--mode", "eval", "--workdir", saved_run, "--set", "eval.mode=slide",
                       "--set", "eval.crop_size=(30,30)"], capsys)
  assert status == 2 and "warning" not in err


def test_eval_may_not_change_the_model(saved_run, capsys, no_preparation):
  status, err = _main(["--mode", "eval", "--workdir", saved_run, "--set", "model.width=8"],
                      capsys)
  assert status == 2
  _one_line(err, "--set model.width: eval and predict rebuild the model from the checkpoint's "
                 "config (which has model.width=4)")


def test_predict_names_a_missing_checkpoint(tmp_path, capsys):
  (tmp_path / "a.txt").write_text("x")
  from PIL import Image

  Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
  status, err = _main(["--mode", "predict", "--workdir", str(tmp_path / "w"),
                       "--input", str(tmp_path / "a.png"), "--output", str(tmp_path / "o")],
                      capsys)
  assert status == 1
  _one_line(err, f"no checkpoint in {tmp_path / 'w' / 'checkpoints'}; train first")


def test_experiment_source_of_a_typo_in_a_component_section(tmp_path, capsys, no_preparation):
  path = tmp_path / "model_typo.py"
  path.write_text(textwrap.dedent("""\
      from experiments import demo

      def get_config(variant=''):
        c = demo.get_config(variant)
        c.model.widht = 8
        return c
      """))
  status, err = _main(["--exp", str(path), "--workdir", str(tmp_path / "w")], capsys)
  assert status == 2
  _one_line(err, "unknown model key 'widht'; did you mean 'width'")
  assert os.listdir(tmp_path) == ["model_typo.py"]


def test_a_moved_folder_dataset_is_named_where_it_now_lives():
  from jaxseg.config.from_checkpoint import config_from_checkpoint
  from jaxseg.errors import ConfigError

  saved = build_config("demo:smoke", ["data.name=folder", "data.folder.root=/old/place"])
  cfg = config_from_checkpoint(saved.to_dict(), ["data.folder.root=/new/place"])
  assert cfg.data.folder.root == "/new/place" and cfg.data.name == "folder"
  with pytest.raises(ConfigError, match="--set data.shuffle_seed: eval and predict rebuild"):
    config_from_checkpoint(saved.to_dict(), ["data.shuffle_seed=4"])


def test_a_corrupt_image_is_named_by_its_path_not_a_buffer():
  import io

  from PIL import Image

  from jaxseg.data.builders import imagefiles
  from jaxseg.data.errors import DatasetError

  where = "/data/images/train/a.jpg"
  with pytest.raises(DatasetError) as e:
    imagefiles.rgb_pixels(b"\x00garbage" * 10, where)
  assert str(e.value) == (f"{where}: not a readable image (not an image format PIL knows, "
                          "or its header is corrupt)")
  png = io.BytesIO()
  Image.new("RGB", (64, 64)).save(png, format="PNG")
  with pytest.raises(DatasetError) as e:
    imagefiles.rgb_pixels(png.getvalue()[:60], where)
  message = str(e.value)
  assert message.startswith(f"{where}: not a readable image (") and "BytesIO" not in message

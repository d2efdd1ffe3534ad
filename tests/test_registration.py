"""One registration mechanism and layers that point one way, checked from the source.

Every registry entry is an `@REGISTRY.register("name")` (or `REGISTRY.register(
"name")(obj)`) call at its definition site, and the module that owns the
registry imports every module that registers into it. So a new model or loss
in a file nobody imports, an import cycle (read from the source with ast, imports
inside functions included), the library importing an experiment, or config
loading importing the code that runs, fails here rather than at somebody's run.
"""

import ast
import json
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGES = ("jaxseg", "experiments")
# Registry variable -> its `run.py --list` section (listed by the module owning it).
SECTIONS = {"MODELS": "models", "DATASETS": "datasets", "LOSSES": "losses",
            "OPTIMIZERS": "optimizers", "SCHEDULES": "schedules",
            "AUGMENTATIONS": "augmentations"}


def _modules() -> dict[str, pathlib.Path]:
  found = {}
  for package in PACKAGES:
    for path in sorted((ROOT / package).rglob("*.py")):
      parts = path.relative_to(ROOT).with_suffix("").parts
      found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
  return found


def _imports(name: str, path: pathlib.Path, modules) -> set[str]:
  """Internal modules `name` imports anywhere in its source, function bodies included.

  A function-level import is still a dependency: it only hides a cycle until the
  function runs. The implicit import of a module's parent package is not an edge
  (Python finishes a package's __init__ importing its children before anything
  else runs).
  """
  is_package = path.name == "__init__.py"
  edges = set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.Import):
      for alias in node.names:
        target = alias.name
        while target and target not in modules:  # `import a.b.c` depends on a.b.c's module.
          target = target.rpartition(".")[0]
        edges.add(target)
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:
        anchor = name.split(".")[:len(name.split(".")) - node.level + is_package]
        base = ".".join(anchor + ([node.module] if node.module else []))
      for alias in node.names:
        target = f"{base}.{alias.name}"
        edges.add(target if target in modules else base)
  return {e for e in edges if e in modules and e != name}


def test_no_import_cycles():
  modules = _modules()
  graph = {name: _imports(name, path, modules) for name, path in modules.items()}
  done, stack = set(), []

  def visit(name):
    if name in stack:
      cycle = stack[stack.index(name):] + [name]
      raise AssertionError("import cycle: " + " -> ".join(cycle) + "; move what both "
                           "sides need into a module that imports neither")
    if name in done:
      return
    stack.append(name)
    for target in sorted(graph[name]):
      visit(target)
    stack.pop()
    done.add(name)

  for name in sorted(graph):
    visit(name)
  # The graph is real: the packages that complete registries import their members.
  assert "jaxseg.models.fcn" in graph["jaxseg.models"]
  assert "jaxseg.losses.region" in graph["jaxseg.losses"]
  assert "jaxseg.data.builders.voc_seg" in graph["jaxseg.data.datasets"]


def test_the_library_never_imports_an_experiment():
  """Experiments depend on jaxseg; jaxseg finds them by name (config.EXPERIMENTS_PACKAGE)."""
  modules = _modules()
  upward = sorted(f"{name} -> {target}" for name, path in modules.items()
                  if name.startswith("jaxseg") for target in _imports(name, path, modules)
                  if target.startswith("experiments"))
  assert not upward, upward


# Builds every experiment's config in a fresh interpreter and prints the jaxseg
# modules that loaded: config loading must stay below the run.
_CONFIG_ONLY = """
import json, sys
from jaxseg.config.loading import experiment_names
from jaxseg.config.resolve import build_config
for name in experiment_names():
  build_config(name)
print(json.dumps(sorted(m for m in sys.modules if m.startswith(("jaxseg", "orbax", "grain")))))
"""
# The packages that run (config loading must not import them), and what they stand on.
RUN_MODULES = ("jaxseg.training", "jaxseg.evaluation", "jaxseg.prediction", "jaxseg.runtime",
               "orbax", "grain")


def test_config_loading_imports_no_run_code():
  loaded = json.loads(subprocess.run([sys.executable, "-c", _CONFIG_ONLY], cwd=ROOT, check=True,
                                     capture_output=True, text=True).stdout)
  assert "jaxseg.models" in loaded and "jaxseg.losses" in loaded  # The probe saw the loads.
  assert not [m for m in loaded if m.startswith(RUN_MODULES)], loaded


def _registry_variables_in_source() -> set[str]:
  """Names X of every `X.register(...)` call in jaxseg/."""
  found = set()
  for path in sorted((ROOT / "jaxseg").rglob("*.py")):
    for node in ast.walk(ast.parse(path.read_text())):
      if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
          and node.func.attr == "register" and isinstance(node.func.value, ast.Name)):
        found.add(node.func.value.id)
  return found


def _lines(names: dict[str, list[str]]) -> list[str]:
  return [f"{title}: {', '.join(entries)}" for title, entries in names.items()]


# Imports every module of jaxseg (so every register() call has run), then prints
# each registry's names: what --list must show when it imports only the owners.
_EVERYTHING = """
import importlib, json, pkgutil, jaxseg
for m in pkgutil.walk_packages(jaxseg.__path__, "jaxseg."):
  importlib.import_module(m.name)
from jaxseg.config.loading import experiment_names
from jaxseg.data.augment import AUGMENTATIONS
from jaxseg.data.builders.registry import DATASETS
from jaxseg.losses.base import LOSSES
from jaxseg.models.registry import MODELS
from jaxseg.optim import OPTIMIZERS, SCHEDULES
print(json.dumps({"experiments": experiment_names(), "models": MODELS.names(),
                  "datasets": DATASETS.names(), "losses": LOSSES.names(),
                  "optimizers": OPTIMIZERS.names(), "schedules": SCHEDULES.names(),
                  "augmentations": AUGMENTATIONS.names()}))
"""


def test_list_shows_every_registered_name():
  assert _registry_variables_in_source() == set(SECTIONS), (
      "a new registry? add it to SECTIONS and _EVERYTHING here and to run.py --list")
  # Fresh interpreters: only what each one imports may count.
  run = lambda *args: subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True,
                                     text=True, check=True).stdout
  everything = json.loads(run("-c", _EVERYTHING))
  expected = _lines(everything)
  # The registries' lines come first; each experiment's variants follow them.
  listed = run("run.py", "--list").strip().splitlines()[:len(expected)]
  assert everything["models"] and everything["losses"]  # The probe itself worked.
  assert listed == expected, (
      "run.py --list differs from what importing every module registers: is a module "
      "that registers entries not imported by its registry's owner "
      "(jaxseg/models/__init__.py, jaxseg/losses/, jaxseg/data/datasets.py)?")

"""One registration mechanism and no import cycles, checked from the source.

Every registry entry is an `@REGISTRY.register("name")` (or `REGISTRY.register(
"name")(obj)`) call at its definition site, with the name a string literal, and
the module that owns the registry imports every module that registers into it.
These tests read the source (ast), so a new model or loss in a file nobody
imports, or an import cycle, fails here rather than at somebody's run.
"""

import ast
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


def _top_level_imports(name: str, path: pathlib.Path, modules) -> set[str]:
  """Internal modules `name` imports while it is itself being imported.

  Imports inside functions run later and cannot form an import-time cycle; the
  implicit import of a module's parent package is not an edge (Python finishes
  a package's __init__ importing its children before anything else runs).
  """
  is_package = path.name == "__init__.py"
  edges = set()
  nodes = list(ast.parse(path.read_text()).body)
  while nodes:
    node = nodes.pop()
    if isinstance(node, (ast.If, ast.Try)):  # Still module level.
      nodes.extend(ast.iter_child_nodes(node))
    elif isinstance(node, ast.Import):
      edges.update(a.name for a in node.names if a.name in modules)
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
  graph = {name: _top_level_imports(name, path, modules) for name, path in modules.items()}
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
  assert "jaxseg.region_losses" in graph["jaxseg.losses"]
  assert "jaxseg.data.builders.voc_seg" in graph["jaxseg.data.datasets"]


def _registered_in_source() -> dict[str, set[str]]:
  """{registry variable: names} from every `X.register(...)` call in jaxseg/."""
  names: dict[str, set[str]] = {}
  for path in sorted((ROOT / "jaxseg").rglob("*.py")):
    for node in ast.walk(ast.parse(path.read_text())):
      if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr == "register" and isinstance(node.func.value, ast.Name)):
        continue
      registry = node.func.value.id
      assert (len(node.args) == 1 and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)), (
          f"{path.relative_to(ROOT)}:{node.lineno}: {registry}.register takes the name as a "
          "string literal, so the registry can be read from the source")
      names.setdefault(registry, set()).add(node.args[0].value)
  return names


def test_list_shows_exactly_what_the_source_registers():
  registered = _registered_in_source()
  assert set(registered) == set(SECTIONS), (
      "a new registry? add it to SECTIONS here and to run.py --list")
  experiments = sorted(p.stem for p in (ROOT / "experiments").glob("*.py")
                       if p.stem != "base" and not p.stem.startswith("_"))
  expected = [f"experiments: {', '.join(experiments)}"] + [
      f"{SECTIONS[r]}: {', '.join(sorted(registered[r]))}" for r in SECTIONS]
  # A fresh interpreter: only what run.py's imports pull in may count.
  proc = subprocess.run([sys.executable, "run.py", "--list"], cwd=ROOT, capture_output=True,
                        text=True, check=True)
  listed = proc.stdout.strip().splitlines()
  order = ["experiments", "models", "datasets", "losses", "optimizers", "schedules",
           "augmentations"]
  assert [line.partition(":")[0] for line in listed] == order
  assert sorted(listed) == sorted(expected), (
      "run.py --list differs from the register() calls in the source: is a module that "
      "registers entries not imported by its registry's package (jaxseg/models/__init__.py, "
      "jaxseg/losses.py, jaxseg/data/datasets.py)?")

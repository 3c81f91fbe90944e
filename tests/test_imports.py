"""The import graph of ``jaxprune.pruning`` has no cycle (imports at module level and inside
functions both count: a function-level import does not make a cycle go away)."""

import ast
import os

import pytest

ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "jaxprune")


def _module_names() -> dict[str, str]:
  """Dotted name -> file of every module under ``jaxprune/`` (packages as their ``__init__``)."""
  out = {}
  for folder, _, files in os.walk(ROOT):
    for f in files:
      if f.endswith(".py"):
        rel = os.path.relpath(os.path.join(folder, f), os.path.dirname(ROOT))[:-3]
        parts = rel.split(os.sep)
        if parts[-1] == "__init__":
          parts = parts[:-1]
        out[".".join(parts)] = os.path.join(folder, f)
  return out


def import_graph(modules: dict[str, str]) -> dict[str, set[str]]:
  """Module -> the jaxprune modules it imports anywhere in its source (``import a.b``, ``from
  a.b import c`` where ``a.b.c`` is a module, relative imports)."""
  graph = {}
  for name, path in modules.items():
    with open(path) as f:
      tree = ast.parse(f.read(), path)
    is_pkg = path.endswith("__init__.py")
    here = name if is_pkg else name.rpartition(".")[0]
    deps = set()
    for node in ast.walk(tree):
      if isinstance(node, ast.Import):
        targets = [a.name for a in node.names]
      elif isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:
          pkg = here.split(".")
          pkg = pkg[: len(pkg) - (node.level - 1)]
          base = ".".join(pkg + ([base] if base else []))
        targets = [
          f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names
        ]
      else:
        continue
      deps.update(t for t in targets if t in modules and t != name)
    graph[name] = deps
  return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
  """The strongly connected components with more than one module (Tarjan), each sorted."""
  index, low, stack, on_stack, out = {}, {}, [], set(), []

  def visit(v):
    index[v] = low[v] = len(index)
    stack.append(v)
    on_stack.add(v)
    for w in sorted(graph.get(v, ())):
      if w not in index:
        visit(w)
        low[v] = min(low[v], low[w])
      elif w in on_stack:
        low[v] = min(low[v], index[w])
    if low[v] == index[v]:
      comp = []
      while True:
        w = stack.pop()
        on_stack.discard(w)
        comp.append(w)
        if w == v:
          break
      if len(comp) > 1:
        out.append(sorted(comp))

  for v in sorted(graph):
    if v not in index:
      visit(v)
  return out


def test_the_checker_finds_cycles():
  assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
  assert cycles({"a": {"b"}, "b": set(), "c": {"a", "b"}}) == []


def test_the_graph_sees_function_level_and_relative_imports(tmp_path):
  pkg = tmp_path / "jaxprune" / "p"
  pkg.mkdir(parents=True)
  (tmp_path / "jaxprune" / "__init__.py").write_text("")
  (pkg / "__init__.py").write_text("")
  (pkg / "a.py").write_text("def f():\n  from jaxprune.p import b\n")
  (pkg / "b.py").write_text("from .a import f\nimport jaxprune.p.c\n")
  (pkg / "c.py").write_text("")
  modules = {
    "jaxprune": str(tmp_path / "jaxprune" / "__init__.py"),
    "jaxprune.p": str(pkg / "__init__.py"),
    **{f"jaxprune.p.{m}": str(pkg / f"{m}.py") for m in "abc"},
  }
  graph = import_graph(modules)
  assert graph["jaxprune.p.a"] == {"jaxprune.p.b"}
  assert graph["jaxprune.p.b"] == {"jaxprune.p.a", "jaxprune.p.c"}
  assert cycles(graph) == [["jaxprune.p.a", "jaxprune.p.b"]]


@pytest.mark.parametrize("package", ["jaxprune.pruning"])
def test_no_import_cycle(package):
  graph = import_graph(_module_names())
  assert any(m.startswith(package + ".") for m in graph)
  bad = [c for c in cycles(graph) if any(m.startswith(package + ".") for m in c)]
  assert not bad, "import cycles: " + "; ".join(" <-> ".join(c) for c in bad)

"""The package's import layers, read from the source with `ast` (nothing is imported).

Every module of cpt_jax belongs to one layer of LAYERS (longest module-prefix match). A module
may import only modules of lower layers and of its own entry; entries of one layer are siblings
that do not import each other, except that an entry nested in another of its rank (e.g.
cpt_jax.data.probe_tasks in cpt_jax.data) is part of it and may import it, never the reverse.
FORBIDDEN adds edges that the ranks alone would allow. The module graph has no cycles. Imports
inside `if __name__ == "__main__":` are entry-point code (the `python -m cpt_jax.<verb>` files
call cpt_jax.cli from there) and do not count; imports inside functions do.
"""

from __future__ import annotations

import ast
import os
from collections.abc import Iterable, Mapping

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = "cpt_jax"

# (rank, module prefix): the layers from the bottom up. The bottom needs nothing of cpt_jax; the
# model, the loss and the mesh need only the bottom; data knows no model; training composes them;
# the embedder serves a trained run; evaluation scores any Encoder; the CLIs sit on top.
LAYERS: tuple[tuple[int, str], ...] = (
    (0, "cpt_jax.typecheck"),
    (0, "cpt_jax.batch"),
    (0, "cpt_jax.atomic"),
    (1, "cpt_jax.model"),
    (1, "cpt_jax.loss"),
    (1, "cpt_jax.parallel"),
    (2, "cpt_jax.data"),
    (2, "cpt_jax.data.probe_tasks"),  # evaluation data built from the stdlib: the training data path never needs it
    (3, "cpt_jax.checkpoint"),
    (3, "cpt_jax.interop"),
    (4, "cpt_jax.train"),
    (4, "cpt_jax.embedder"),
    (5, "cpt_jax.eval"),
    (5, "cpt_jax.interop.export"),  # exports a run loaded by the embedder
    (5, "cpt_jax.plan"),  # compiles the train step ahead of time for a target mesh; python -m via plan/__main__.py
    (6, "cpt_jax.mining"),  # hard negatives: searches with the embedder and eval's retrieval
    (6, "cpt_jax.live_eval"),  # evaluation during training: eval's tasks on a run's live parameters
    (7, "cpt_jax.cli"),
    (7, "cpt_jax.evaluate"),  # the python -m entry points
    (7, "cpt_jax.embed"),
    (7, "cpt_jax.export"),
    (7, "cpt_jax.mine"),
    (7, "cpt_jax"),  # the package root: the public API (cpt_jax.Embedder)
)
# Edges the ranks allow but the design does not: evaluation scores the Encoder protocol and
# knows no model, checkpoint or training code.
FORBIDDEN: tuple[tuple[str, str], ...] = (
    ("cpt_jax.eval", "cpt_jax.model"),
    ("cpt_jax.eval", "cpt_jax.embedder"),
    ("cpt_jax.eval", "cpt_jax.checkpoint"),
)


def module_files(root: str = ROOT) -> dict[str, str]:
    """Module name -> file path of every .py file of the package."""
    out = {}
    for folder, _, files in os.walk(os.path.join(root, PACKAGE)):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                parts = os.path.relpath(path, root)[: -len(".py")].split(os.sep)
                out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _is_main_guard(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return (isinstance(node, ast.If) and isinstance(test, ast.Compare) and isinstance(test.left, ast.Name)
            and test.left.id == "__name__")


def _imported_names(tree: ast.AST, module: str, is_package: bool) -> Iterable[str]:
    """Fully qualified names each import statement reaches (outside __main__ guards)."""
    stack = list(ast.iter_child_nodes(tree))
    while stack:
        node = stack.pop()
        if _is_main_guard(node):
            continue
        stack.extend(ast.iter_child_nodes(node))
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                package = module.split(".") if is_package else module.split(".")[:-1]
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            yield from (f"{base}.{alias.name}" for alias in node.names)


def import_graph(files: Mapping[str, str]) -> dict[str, set[str]]:
    """Module -> the package modules it imports (a name that is a module counts as that module)."""
    graph = {}
    for module, path in files.items():
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read(), path)
        targets = set()
        for name in _imported_names(tree, module, path.endswith("__init__.py")):
            if name == PACKAGE or name.startswith(PACKAGE + "."):
                while name not in files:  # `from pkg import function`: the module is pkg
                    name = name.rsplit(".", 1)[0]
                if name != module:
                    targets.add(name)
        graph[module] = targets
    return graph


def layer_of(module: str) -> tuple[int, str]:
    """(rank, entry prefix) of the longest entry of LAYERS that is the module or a parent of it."""
    matches = [(rank, prefix) for rank, prefix in LAYERS if module == prefix or module.startswith(prefix + ".")]
    if not matches:
        raise KeyError(module)
    return max(matches, key=lambda m: len(m[1]))


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def violations(graph: Mapping[str, set[str]]) -> list[str]:
    """Every import that goes up a layer, across siblings, or along a FORBIDDEN edge."""
    out = []
    for module, targets in sorted(graph.items()):
        rank, entry = layer_of(module)
        for target in sorted(targets):
            target_rank, target_entry = layer_of(target)
            if target_entry == entry or _within(module, target_entry) and target_rank >= rank:
                continue  # its own entry, the package __init__ it lives under, or the entry it is nested in
            if target_rank > rank or (target_rank == rank and target_entry != entry):
                out.append(f"{module} (layer {rank}, {entry}) imports {target} (layer {target_rank}, {target_entry})")
        for source, forbidden in FORBIDDEN:
            out.extend(f"{module} imports {t}: {source} must not import {forbidden}"
                       for t in sorted(targets) if _within(module, source) and _within(t, forbidden))
    return out


def cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """Import cycles (each as a module path that returns to its start), by depth-first search."""
    found, state = [], {}  # state: 1 on the current path, 2 done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph.get(module, ())):
            if state.get(target) == 1:
                found.append(path[path.index(target):] + [target])
            elif target not in state:
                visit(target, path + [target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph(module_files())


def test_every_module_has_a_layer(graph):
    unplaced = [m for m in graph if not any(_within(m, prefix) for _, prefix in LAYERS)]
    assert not unplaced, f"add these modules to LAYERS in {__file__} (and to WORKSPACE.md): {unplaced}"


def test_imports_go_down_the_layers_only(graph):
    assert not violations(graph), "\n".join(violations(graph))


def test_the_import_graph_has_no_cycles(graph):
    assert not cycles(graph), cycles(graph)


def test_the_model_and_the_loss_import_nothing_of_data_or_training(graph):
    for module, targets in graph.items():
        if _within(module, "cpt_jax.model") or _within(module, "cpt_jax.loss"):
            assert not {t for t in targets if _within(t, "cpt_jax.data") or _within(t, "cpt_jax.train")}, module


def test_the_checks_catch_what_they_are_for(tmp_path):
    """The checker itself: an upward import, a sibling import, a forbidden edge and a cycle, written
    as real files, are all reported; a __main__-guarded import is not."""
    pkg = tmp_path / PACKAGE
    for sub in ("model", "data", "eval", "cli"):
        (pkg / sub).mkdir(parents=True)
        (pkg / sub / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "model" / "a.py").write_text("from cpt_jax.data import b\n")  # up a layer
    (pkg / "data" / "b.py").write_text("def f():\n    import cpt_jax.model.a\n")  # closes a cycle, lazily
    (pkg / "eval" / "c.py").write_text("from cpt_jax.model.a import thing\n")  # forbidden
    (pkg / "loss.py").write_text("from cpt_jax import parallel\n")  # sibling, as a module
    (pkg / "parallel.py").write_text("")
    (pkg / "data" / "d.py").write_text("if __name__ == '__main__':\n    from cpt_jax.cli import main\n")
    (pkg / "data" / "probe_tasks.py").write_text("from cpt_jax.data import d\n")  # nested entry -> its parent
    (pkg / "data" / "e.py").write_text("from cpt_jax.data import probe_tasks\n")  # parent -> nested entry
    graph = import_graph(module_files(str(tmp_path)))
    found = "\n".join(violations(graph))
    assert "cpt_jax.model.a (layer 1, cpt_jax.model) imports cpt_jax.data.b" in found
    assert "cpt_jax.loss (layer 1, cpt_jax.loss) imports cpt_jax.parallel" in found
    assert "cpt_jax.eval.c imports cpt_jax.model.a: cpt_jax.eval must not import cpt_jax.model" in found
    assert "cpt_jax.data.d" not in found and graph["cpt_jax.data.d"] == set()
    assert "cpt_jax.data.probe_tasks (layer 2, cpt_jax.data.probe_tasks) imports" not in found
    assert "cpt_jax.data.e (layer 2, cpt_jax.data) imports cpt_jax.data.probe_tasks" in found
    assert ["cpt_jax.data.b", "cpt_jax.model.a", "cpt_jax.data.b"] in cycles(graph)

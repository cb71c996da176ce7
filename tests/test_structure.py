"""The package's import graph, read from the source (ast, imports inside functions included):
reading a trained model never imports the trainer, flags live only in the binaries, the
measurement harnesses stay outside the library, and config.py loads no TensorFlow."""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
TRAINERS = {"rnn_lm.training", "rnn_lm.train_step", "rnn_lm.schedules"}
# Modules that train, and so may import the training code.
MAY_TRAIN = {"rnn_lm.training", "rnn_lm.train_step", "rnn_lm.bin.train", "rnn_lm.diagnostics",
             "rnn_lm.bin.diagnose"}


def module_name(path):
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path, top_level=False):
    """Every module ``path`` imports, anywhere in the file or only at its top level (what importing
    it loads), as dotted names (``from a import b`` gives a and a.b)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in (tree.body if top_level else ast.walk(tree)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


LIBRARY = {module_name(p): imports(p) for p in sorted((ROOT / "rnn_lm").rglob("*.py"))}
LOADS = {module_name(p): imports(p, top_level=True) for p in sorted((ROOT / "rnn_lm").rglob("*.py"))}


def test_the_graph_was_read():
    assert {"rnn_lm.training", "rnn_lm.checkpoints", "rnn_lm.bin.eval"} <= set(LIBRARY)
    assert "rnn_lm.checkpoints" in LIBRARY["rnn_lm.bin.eval"]


@pytest.mark.parametrize("module", sorted(set(LIBRARY) - MAY_TRAIN))
def test_only_training_code_imports_the_trainer(module):
    assert not LIBRARY[module] & TRAINERS


def test_flags_only_in_the_binaries_and_no_harness_in_the_library():
    for module, names in LIBRARY.items():
        assert not any(n.startswith("rnn_lm_tools") for n in names), module
        if not module.startswith("rnn_lm.bin"):
            assert "absl.flags" not in names, module


def test_config_loads_no_tensorflow():
    """config.py checks flags before TensorFlow loads: it and what it imports stay TensorFlow-free."""
    seen, todo = set(), ["rnn_lm.config", "rnn_lm.model_dir"]
    while todo:
        module = todo.pop()
        if module in seen or module not in LOADS:
            continue
        seen.add(module)
        assert not {"tensorflow", "keras"} & LOADS[module], module
        todo.extend(n for n in LOADS[module] if n.startswith("rnn_lm"))
    assert "rnn_lm.data.corpus" in seen

"""Shared test setup: TensorFlow's C++ logging quieted before anything imports it, and the fixtures
more than one test module uses (plain helpers are in tests/helpers.py).

The shared fixtures are session-scoped and read-only (a test writes only below its own tmp_path): with
``--dist loadfile`` each pytest-xdist worker builds one the first time a module it takes asks for it,
and keeps it for the other modules it takes.
"""

import os
import pathlib
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# The modules import their helpers as ``from tests.helpers import ...``, which needs the repository root
# on sys.path: ``python -m pytest`` run there (the documented command) puts it there; appending it keeps a
# bare ``pytest``, or a run from another folder, working too.
ROOT = str(pathlib.Path(__file__).resolve().parent.parent)
if ROOT not in sys.path:
    sys.path.append(ROOT)

import pytest  # noqa: E402

from tests.helpers import TINY, resume_config, run, train_run, write_corpus  # noqa: E402


@pytest.fixture(scope="session")
def reference_run(tmp_path_factory):
    """``resume_config``'s uninterrupted run (6 steps, checkpoints at 2, 4, 6) on a 40-line corpus:
    (its config, its step losses), the losses every resume must repeat bit for bit."""
    root = tmp_path_factory.mktemp("ref")
    cfg = resume_config(write_corpus(root / "data", (40, 3, 3)))
    whole = train_run(cfg, root / "whole")
    return cfg, whole.step_losses


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """A model directory written by ``rnn-lm-train`` (flags from a flagfile, one overridden after it),
    with its SavedModel: (model_dir, data_dir, the finished process)."""
    root = tmp_path_factory.mktemp("bin")
    data = write_corpus(root / "data", (40, 4, 4))
    model_dir = str(root / "run")
    flagfile = root / "tiny.flags"  # absl flagfiles work, and flags given after them override them
    flagfile.write_text("\n".join(TINY + ["--epochs=1"]) + "\n")
    proc = run("train", f"--flagfile={flagfile}", f"--model_dir={model_dir}", f"--data_dir={data}", "--epochs=2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return model_dir, data, proc

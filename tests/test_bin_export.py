"""rnn-lm-export end to end, on a model rnn-lm-train wrote (the ``trained`` fixture): the SavedModel it
writes scores as the one training wrote; ``saved_model_cli run`` (TensorFlow's own client) scores and
generates with it.  What the SavedModel computes is checked against the model in test_export.py."""

import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tests.helpers import ENV, run


def test_export_binary_writes_a_loadable_saved_model(trained, tmp_path):
    model_dir, _, _ = trained
    out = tmp_path / "serving" / "1"
    proc = run("export", f"--model_dir={model_dir}", f"--output_dir={out}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    sentence = tf.constant(["the cake which"])
    new = tf.saved_model.load(str(out)).signatures["score"](sentences=sentence)["log_prob"]
    old = tf.saved_model.load(os.path.join(model_dir, "saved_model")).signatures["score"](sentences=sentence)
    np.testing.assert_allclose(new.numpy(), old["log_prob"].numpy(), rtol=1e-6)


def test_saved_model_cli_run_scores_and_generates(trained):
    model_dir, _, _ = trained
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    if not os.path.exists(cli):
        pytest.skip("saved_model_cli is not installed beside this interpreter")
    common = [cli, "run", "--dir", os.path.join(model_dir, "saved_model"), "--tag_set", "serve"]
    score = subprocess.run(common + ["--signature_def", "score", "--input_exprs", 'sentences=["the cake which"]'],
                           capture_output=True, text=True, env=ENV, timeout=300)
    assert score.returncode == 0, score.stderr[-2000:]
    assert "log_prob" in score.stdout and "perplexity" in score.stdout
    gen = subprocess.run(common + ["--signature_def", "generate", "--input_exprs",
                                   'prompts=["the cake"];max_tokens=5;temperature=0.0;top_k=0;top_p=1.0;seed=0'],
                         capture_output=True, text=True, env=ENV, timeout=300)
    assert gen.returncode == 0, gen.stderr[-2000:]
    assert "continuations" in gen.stdout

"""bfloat16 mixed precision: the same model to bfloat16 accuracy, float32 where it matters."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from rnn_lm import training
from rnn_lm.config import ModelConfig
from rnn_lm.model import RNNLanguageModel

CONFIG = dict(vocab_size=40, num_layers=2, hidden_size=16, embedding_size=12)


def twins(cell):
    """A float32 and a bfloat16 model with the same weights."""
    keras.utils.set_random_seed(1)
    full = RNNLanguageModel(ModelConfig(cell=cell, **CONFIG))
    mixed = RNNLanguageModel(ModelConfig(cell=cell, **CONFIG), compute_dtype="bfloat16")
    for a, b in zip(full.variables, mixed.variables, strict=True):
        b.assign(a)
    return full, mixed


@pytest.mark.parametrize("cell", ["elman", "lstm", "gru"])
def test_bfloat16_forward_matches_float32(cell):
    full, mixed = twins(cell)
    ids = tf.constant(np.random.default_rng(0).integers(0, 40, (3, 9)), tf.int32)
    want, want_state = full(ids)
    got, got_state = mixed(ids)
    assert got.dtype == tf.float32  # the loss is computed in float32
    assert all(s.dtype == tf.float32 for s in tf.nest.flatten(got_state))  # carried state stays float32
    # bfloat16 keeps 8 bits of mantissa: about 2-3 significant digits.
    np.testing.assert_allclose(got.numpy(), want.numpy(), atol=0.03 * np.abs(want.numpy()).max() + 1e-3)
    for g, w in zip(tf.nest.flatten(got_state), tf.nest.flatten(want_state)):
        np.testing.assert_allclose(g.numpy(), w.numpy(), atol=0.03)


def test_bfloat16_train_step_gives_float32_gradients_close_to_float32():
    full, mixed = twins("lstm")
    ids = tf.constant(np.random.default_rng(2).integers(0, 40, (4, 6)), tf.int32)
    results = []
    for model in (full, mixed):
        step = training.TrainStep(model, keras.optimizers.SGD(1.0), batch_size=4, max_grad_norm=0)
        metrics = step(ids, ids)
        results.append((float(metrics["loss"]), float(metrics["grad_norm"])))
        assert all(v.dtype == tf.float32 for v in model.trainable_variables)
    (loss32, norm32), (loss16, norm16) = results
    assert loss16 == pytest.approx(loss32, rel=1e-2)
    assert norm16 == pytest.approx(norm32, rel=5e-2)
    # After one SGD step with the same gradients (to bfloat16 accuracy) the weights agree too.
    for a, b in zip(full.trainable_variables, mixed.trainable_variables):
        np.testing.assert_allclose(b.numpy(), a.numpy(), atol=2e-2)

"""Mixed precision (bfloat16, and float16 with loss scaling): float32 accuracy where it matters."""

import dataclasses

import keras
import numpy as np
import pytest
import tensorflow as tf

from rnn_lm import train_step
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
        step = train_step.TrainStep(model, keras.optimizers.SGD(1.0), batch_size=4, max_grad_norm=0)
        metrics = step(ids, ids)
        results.append((float(metrics["loss"]), float(metrics["grad_norm"])))
        assert all(v.dtype == tf.float32 for v in model.trainable_variables)
    (loss32, norm32), (loss16, norm16) = results
    assert loss16 == pytest.approx(loss32, rel=1e-2)
    assert norm16 == pytest.approx(norm32, rel=5e-2)
    # After one SGD step with the same gradients (to bfloat16 accuracy) the weights agree too.
    for a, b in zip(full.trainable_variables, mixed.trainable_variables):
        np.testing.assert_allclose(b.numpy(), a.numpy(), atol=2e-2)


# float16: Keras' LossScaleOptimizer scales the loss (dynamically) so that small
# gradients do not underflow; float16 keeps 11 significant bits (about 3 digits).

def float16_twins():
    keras.utils.set_random_seed(1)
    full = RNNLanguageModel(ModelConfig(cell="lstm", **CONFIG))
    half = RNNLanguageModel(ModelConfig(cell="lstm", **CONFIG), compute_dtype="float16")
    for a, b in zip(full.variables, half.variables, strict=True):
        b.assign(a)
    return full, half


def test_float16_loss_scaled_train_step_matches_float32():
    full, half = float16_twins()
    ids = tf.constant(np.random.default_rng(2).integers(0, 40, (4, 6)), tf.int32)
    step32 = train_step.TrainStep(full, keras.optimizers.SGD(1.0), batch_size=4, max_grad_norm=0.1)
    step16 = train_step.TrainStep(half, keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(1.0)),
                                batch_size=4, max_grad_norm=0.1)
    m32, m16 = step32(ids, ids), step16(ids, ids)
    assert bool(m16["applied"]) and bool(m16["clipped"]) == bool(m32["clipped"])
    assert float(step16.optimizer.dynamic_scale) == 2.0 ** 15  # Keras' initial scale, kept after a finite step
    assert float(m16["loss"]) == pytest.approx(float(m32["loss"]), rel=2e-3)
    # The norm reported is the true gradient's, not the scaled one's.
    assert float(m16["grad_norm"]) == pytest.approx(float(m32["grad_norm"]), rel=1e-2)
    for a, b in zip(full.trainable_variables, half.trainable_variables):  # clipped to 0.1: same update
        np.testing.assert_allclose(b.numpy(), a.numpy(), atol=2e-4)


def test_float16_overflow_skips_the_step_and_halves_the_loss_scale():
    _, half = float16_twins()
    step = train_step.TrainStep(half, keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(1.0)),
                              batch_size=4, max_grad_norm=0.25)
    step.optimizer.dynamic_scale.assign(2.0 ** 60)  # scaled gradients beyond float16's 65504
    before = [v.numpy() for v in half.trainable_variables]
    ids = tf.constant(np.random.default_rng(3).integers(0, 40, (4, 6)), tf.int32)
    metrics = step(ids, ids)
    assert not bool(metrics["applied"])
    assert float(step.optimizer.dynamic_scale) == 2.0 ** 59
    for b, v in zip(before, half.trainable_variables):
        np.testing.assert_array_equal(v.numpy(), b)
    assert all(not np.any(s.numpy()) for s in step.carried_state)  # the state did not advance either


def test_float16_run_checkpoints_its_loss_scale_and_resumes_exactly(tmp_path):
    from test_training import tiny_config, write_corpus
    data = write_corpus(tmp_path / "data", (20, 3, 3))
    cfg = tiny_config(data, max_steps=4, compute_dtype="float16", deterministic=True, num_steps=5)
    whole = training.train(cfg, str(tmp_path / "a"), export=False)
    first = training.train(dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, max_steps=2)),
                           str(tmp_path / "b"), export=False)
    names = [n for n, _ in tf.train.list_variables(tf.train.latest_checkpoint(str(tmp_path / "b" / "checkpoints")))]
    assert any("dynamic_scale" in n for n in names), names
    rest = training.train(cfg, str(tmp_path / "b"), export=False)
    assert {**first.step_losses, **rest.step_losses} == whole.step_losses  # bit for bit on CPU

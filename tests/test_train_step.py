"""One training step (rnn_lm.train_step): the logged and clipped gradient norm against a dense tape
gradient, a non-finite update skipped with nothing changed, weight decay against lr·λ·w by hand, and
mixed precision (bfloat16; float16 with Keras' dynamic loss scaling) against a float32 twin: float32
gradients, the true norm, the same clipped update, an overflow skipped with the scale halved."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from rnn_lm import train_step
from rnn_lm.config import ModelConfig
from rnn_lm.model import RNNLanguageModel
from tests.helpers import mixed_twins


def test_gradient_norm_counts_a_repeated_token_once():
    """The logged (and clipped) norm is that of the dense gradient, with repeated tokens summed."""
    model = RNNLanguageModel(ModelConfig(vocab_size=7, num_layers=1, hidden_size=5, embedding_size=4))
    ids = tf.constant([[3, 3, 3, 3], [3, 1, 3, 2]])
    step = train_step.TrainStep(model, keras.optimizers.SGD(0.0), batch_size=2, max_grad_norm=0)
    with tf.GradientTape() as tape:
        logits, _ = model(ids, model.zero_state(2), training=True)
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=ids, logits=logits))
    dense = [tf.convert_to_tensor(g) for g in tape.gradient(loss, model.trainable_variables)]
    expected = np.sqrt(sum(np.sum(np.square(g.numpy().astype(np.float64))) for g in dense))
    np.testing.assert_allclose(float(step(ids, ids)["grad_norm"]), expected, rtol=1e-5)



def test_sgd_updates_only_the_embedding_rows_a_window_reads():
    """The embedding's gradient stays sparse through summing, clipping and SGD (a scatter into the rows
    the window read, no dense update of the table); the rest of the table is untouched, bit for bit.
    The forward pass reads only the rows too (ResourceGather): a whole read of a table SGD scatters
    into copies it."""
    model = RNNLanguageModel(ModelConfig(vocab_size=50, num_layers=1, hidden_size=5, embedding_size=4))
    step = train_step.TrainStep(model, keras.optimizers.SGD(0.5), batch_size=2, max_grad_norm=0.01)
    ids = tf.constant([[3, 3, 7], [9, 3, 7]])
    graph_def = step._step_fn.get_concrete_function(ids, ids).graph.as_graph_def()
    op_types = {node.op for f in graph_def.library.function for node in f.node_def}  # the update is in a tf.cond
    assert "ResourceScatterSub" in op_types
    forward = {node.op: node for node in graph_def.node}
    assert "ResourceGather" in forward and "GatherV2" not in forward
    before = model.embedding.numpy()
    assert bool(step(ids, ids)["clipped"])
    changed = np.flatnonzero(np.any(model.embedding.numpy() != before, axis=1))
    assert changed.tolist() == [3, 7, 9]


def test_skipped_update_leaves_weights_and_state_unchanged():
    model = RNNLanguageModel(ModelConfig(vocab_size=7, num_layers=1, hidden_size=5, embedding_size=4))
    step = train_step.TrainStep(model, keras.optimizers.SGD(1.0), batch_size=2, max_grad_norm=0)
    ids = tf.constant([[1, 2, 3], [4, 5, 6]])
    step(ids, ids)  # a finite step: the state moves away from zero
    before = [v.numpy() for v in model.variables + step.carried_state]
    model.b_y.assign(tf.fill([7], np.nan))  # the next loss is NaN ...
    nan_b_y = model.b_y.numpy()
    metrics = step(ids, ids)
    assert not bool(metrics["applied"])
    after = [v.numpy() for v in model.variables + step.carried_state]
    for b, a, v in zip(before, after, model.variables + step.carried_state):
        if v is not model.b_y:  # ... and nothing else changed
            np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(model.b_y.numpy(), nan_b_y)


def test_weight_decay_adds_lambda_w_to_every_gradient():
    """One SGD step with decay lambda moves every weight by lr * lambda * w further than without."""
    lr, lam = 0.5, 0.1
    config = ModelConfig(vocab_size=7, num_layers=1, hidden_size=5, embedding_size=4)
    ids = tf.constant([[1, 2, 3, 1], [4, 5, 6, 4]])
    updated = []
    for decay in (0.0, lam):
        keras.utils.set_random_seed(0)
        model = RNNLanguageModel(config)
        start = [v.numpy().astype(np.float64) for v in model.trainable_variables]
        step = train_step.TrainStep(model, keras.optimizers.SGD(lr), batch_size=2, max_grad_norm=0,
                                    weight_decay=decay)
        step(ids[:, :-1], ids[:, 1:])
        updated.append([v.numpy().astype(np.float64) for v in model.trainable_variables])
    for w0, plain, decayed in zip(start, *updated):
        np.testing.assert_allclose(plain - decayed, lr * lam * w0, rtol=1e-4, atol=1e-7)


# --- Mixed precision. float16: Keras' LossScaleOptimizer scales the loss (dynamically) so that small
# gradients do not underflow; float16 keeps 11 significant bits (about 3 digits).

def test_bfloat16_train_step_gives_float32_gradients_close_to_float32():
    full, mixed = mixed_twins("lstm", "bfloat16")
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


def test_float16_loss_scaled_train_step_matches_float32():
    full, half = mixed_twins("lstm", "float16")
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
    _, half = mixed_twins("lstm", "float16")
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

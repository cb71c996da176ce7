"""Backpropagation through time written out (rnn_lm.bptt) against TensorFlow's autodiff of the same
loop (rnn_lm.unroll), values and gradients, every cell, float32, float64 and bfloat16, from a carried
(non-zero) state, with and without sentence-mode restarts; and against central finite differences in
float64.  The model trained either way takes the same steps."""

import numpy as np
import pytest
import tensorflow as tf

from rnn_lm import bptt, cells, unroll
from tests.helpers import make_model

B, T, IN, H = 3, 6, 5, 4
CELLS = [("lstm", "tanh"), ("gru", "tanh"), ("elman", "tanh"), ("elman", "relu"), ("elman", "sigmoid")]
TOLERANCE = {tf.float64: 1e-12, tf.float32: 2e-6, tf.bfloat16: 3e-2}


def make_cell(kind, activation, dtype):
    cell = cells.make_cell(kind, H, activation=activation, dtype="float64" if dtype == tf.float64 else "float32",
                           kernel_initializer=tf.keras.initializers.RandomUniform(-0.6, 0.6, seed=1),
                           recurrent_initializer=tf.keras.initializers.RandomUniform(-0.6, 0.6, seed=2),
                           bias_initializer=tf.keras.initializers.RandomUniform(-0.3, 0.3, seed=3))
    cell.build((None, IN))
    return cell


def problem(kind, dtype, seed=0):
    """Inputs, a carried state, restarts and the weights of a loss that reads every output and the
    final state."""
    rng = np.random.default_rng(seed)
    inputs = tf.constant(rng.uniform(-1, 1, (B, T, IN)), dtype)
    state = cells.LSTMState(*(tf.constant(rng.uniform(-0.8, 0.8, (B, H)), dtype) for _ in range(2))) \
        if kind == "lstm" else tf.constant(rng.uniform(-0.8, 0.8, (B, H)), dtype)
    reset = tf.constant(rng.uniform(size=(B, T)) < 0.25)
    weights = [tf.constant(rng.normal(size=shape), dtype) for shape in ((B, T, H), (B, H), (B, H))]
    return inputs, state, reset, weights


def loss_and_gradients(cell, inputs, state, reset, weights, backward):
    with tf.GradientTape() as tape:
        tape.watch([inputs, state])
        outputs, final = unroll.unroll(cell, inputs, state, reset=reset, backward=backward)
        final = tf.nest.flatten(final)
        loss = tf.reduce_sum(tf.cast(outputs, weights[0].dtype) * weights[0])
        for f, w in zip(final, weights[1:]):
            loss += tf.reduce_sum(tf.cast(f, w.dtype) * w)
    sources = [inputs, *tf.nest.flatten(state), *cell.trainable_variables]
    return [outputs, *final], tape.gradient(loss, sources)


@pytest.mark.parametrize("dtype", [tf.float64, tf.float32, tf.bfloat16], ids=lambda d: d.name)
@pytest.mark.parametrize("restarts", [False, True])
@pytest.mark.parametrize("kind, activation", CELLS)
def test_the_written_backward_equals_autodiff(kind, activation, restarts, dtype):
    cell = make_cell(kind, activation, dtype)
    inputs, state, reset, weights = problem(kind, dtype)
    weights = [tf.cast(w, tf.float32) for w in weights] if dtype == tf.bfloat16 else weights
    reset = reset if restarts else None
    with_autodiff = loss_and_gradients(cell, inputs, state, reset, weights, "autodiff")
    written = loss_and_gradients(cell, inputs, state, reset, weights, "written")
    tol = TOLERANCE[dtype]
    for got, want in zip(written[0] + written[1], with_autodiff[0] + with_autodiff[1]):
        got, want = tf.cast(got, tf.float64).numpy(), tf.cast(want, tf.float64).numpy()
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol * max(1.0, np.abs(want).max()))
    assert all(np.abs(g.numpy()).max() > 0 for g in written[1])  # every gradient reached


@pytest.mark.parametrize("kind, activation", CELLS[:3])
def test_the_written_backward_equals_central_differences(kind, activation):
    """d loss / d U_ij for a few entries of each recurrent weight (where the written backward differs
    most from autodiff: one product over all steps), against (loss(U + e) - loss(U - e)) / 2e, float64."""
    cell = make_cell(kind, activation, tf.float64)
    inputs, state, reset, weights = problem(kind, tf.float64, seed=1)
    _, grads = loss_and_gradients(cell, inputs, state, reset, weights, "written")

    def loss():
        outputs, final = unroll.unroll(cell, inputs, state, reset=reset, backward="written")
        total = tf.reduce_sum(outputs * weights[0])
        return float(total + sum(tf.reduce_sum(f * w) for f, w in zip(tf.nest.flatten(final), weights[1:])))

    eps = 1e-6

    def central_difference(v, index):
        original, values = v.numpy(), []
        for sign in (1, -1):
            bumped = original.copy()
            bumped[index] += sign * eps
            v.assign(bumped)
            values.append(loss())
        v.assign(original)
        return (values[0] - values[1]) / (2 * eps)

    variables = dict(zip((v.name for v in cell.trainable_variables), grads[1 + len(tf.nest.flatten(state)):]))
    rng = np.random.default_rng(0)
    for v in cell.trainable_variables:
        if v.name not in cell.RECURRENT_WEIGHTS:
            continue
        for _ in range(3):
            index = tuple(int(rng.integers(0, n)) for n in v.shape)
            assert variables[v.name].numpy()[index] == pytest.approx(central_difference(v, index), rel=1e-6,
                                                                     abs=1e-8), (v.name, index)


def test_supported_windows():
    lstm = make_cell("lstm", "tanh", tf.float32)
    assert bptt.supported(lstm, 35, 100) and not bptt.supported(lstm, None, 100)
    assert not bptt.supported(lstm, 101, 100)
    # auto: written where it measured faster (larger recurrent layers), autodiff elsewhere
    assert make_model(cell="gru", hidden_size=400).backward == "written"
    assert make_model(cell="lstm", hidden_size=8).backward == "autodiff"
    assert make_model(cell="elman", hidden_size=400).backward == "autodiff"
    assert make_model(cell="elman", hidden_size=8, backward="written").backward == "written"


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_a_model_trained_with_the_written_backward_takes_autodiffs_steps(cell):
    """Two SGD steps of a whole model (embedding, 2 layers, dropout, softmax), the state carried: the
    same losses and weights either way."""
    results = []
    for backward in ("autodiff", "written"):
        model = make_model(seed=7, cell=cell, hidden_size=6, backward=backward)
        ids = np.random.default_rng(1).integers(0, model.config.vocab_size, (2, 3, 9)).astype(np.int32)
        state, losses = None, []
        for window in ids:
            with tf.GradientTape() as tape:
                logits, state = model(tf.constant(window[:, :-1]), state, training=True,
                                      dropout_seed=tf.constant([1, 2], tf.int64))
                loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(window[:, 1:], logits))
            grads = tape.gradient(loss, model.trainable_variables)
            for v, g in zip(model.trainable_variables, grads):
                v.assign_sub(0.5 * tf.convert_to_tensor(g))
            losses.append(float(loss))
        results.append((losses, [v.numpy() for v in model.trainable_variables]))
    np.testing.assert_allclose(results[1][0], results[0][0], rtol=1e-6)
    for a, b in zip(results[1][1], results[0][1]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)

"""The lecture's cost J and perplexity (rnn_lm.losses) against a two-class case computed by hand, the
slide's formula in NumPy, uniform logits (perplexity |V|) and logits too large for a naive log-softmax."""

import math

import numpy as np
import pytest
import tensorflow as tf

from rnn_lm import losses

LN3, LN7 = math.log(3.0), math.log(7.0)


def test_hand_computed_two_class_case():
    # Two classes, so softmax([a, b]) = [e^a, e^b] / (e^a + e^b) by hand:
    #   [0, ln 3] -> [1/4, 3/4]    [ln 3, 0] -> [3/4, 1/4]
    #   [0, 0]    -> [1/2, 1/2]    [0, ln 7] -> [1/8, 7/8]
    logits = tf.constant([[[0.0, LN3], [LN3, 0.0]],
                          [[0.0, 0.0], [0.0, LN7]]])  # [B=2, T=2, V=2]
    targets = tf.constant([[1, 1], [0, 0]])
    # J_t = -log y_hat[target]: ln(4/3), ln 4, ln 2, ln 8.
    per_token = [[math.log(4 / 3), math.log(4)], [math.log(2), math.log(8)]]
    got = losses.token_cross_entropy(logits, targets).numpy()
    np.testing.assert_allclose(got, per_token, rtol=1e-6)
    # J = mean over t and batch = ln(4/3 * 4 * 2 * 8) / 4 = ln(256/3) / 4; perplexity = (256/3)^(1/4).
    j = losses.sequence_cross_entropy(logits, targets)
    np.testing.assert_allclose(j.numpy(), math.log(256 / 3) / 4, rtol=1e-6)
    np.testing.assert_allclose(losses.perplexity(j).numpy(), (256 / 3) ** 0.25, rtol=1e-6)


def test_against_numpy_on_random_logits():
    rng = np.random.default_rng(0)
    b, t, v = 3, 4, 6
    logits = rng.normal(0, 3, (b, t, v))
    targets = rng.integers(0, v, (b, t))
    # The slide literally: one-hot y, J_t = -sum_j y_tj log y_hat_tj,
    # J = (1/T) sum_t J_t, then the mean over the batch.
    y = np.eye(v)[targets]
    y_hat = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    j_t = -(y * np.log(y_hat)).sum(-1)  # [B, T]
    want = np.mean([(1 / t) * j_t[i].sum() for i in range(b)])
    got = losses.sequence_cross_entropy(tf.constant(logits, tf.float32), tf.constant(targets))
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-5)
    np.testing.assert_allclose(losses.perplexity(got).numpy(), np.exp(want), rtol=1e-5)


@pytest.mark.parametrize("v", [2, 10, 10_000])
def test_uniform_prediction_has_perplexity_v(v):
    logits = tf.fill([2, 3, v], 3.7)  # any constant: softmax is 1/V everywhere
    targets = tf.constant([[0, v - 1, 1], [v // 2, 0, 1]])
    np.testing.assert_allclose(losses.perplexity(losses.sequence_cross_entropy(logits, targets)).numpy(),
                               v, rtol=1e-5)


def test_large_logits_are_stable():
    # A naive log(softmax) would give log(0) = -inf here; the loss must stay exact.
    logits = tf.constant([[[0.0, 1000.0], [1000.0, 0.0]]])
    got = losses.token_cross_entropy(logits, tf.constant([[0, 0]])).numpy()
    np.testing.assert_allclose(got, [[1000.0, 0.0]], rtol=1e-6)


@pytest.mark.parametrize("dtype", [tf.float32, tf.float64])
def test_the_gradient_is_the_softmax_minus_the_one_hot_target(dtype):
    """dJ/dz for J the mean over tokens: (y_hat - y) / N, the lecture's gradient at the output, in NumPy;
    repeated targets in a row of the batch, a weighted sum as the upstream gradient."""
    rng = np.random.default_rng(1)
    b, t, v = 2, 5, 7
    logits = rng.normal(0, 2, (b, t, v))
    targets = rng.integers(0, v, (b, t))
    weights = rng.uniform(0, 1, (b, t))
    z = tf.constant(logits, dtype)
    with tf.GradientTape() as tape:
        tape.watch(z)
        cost = tf.reduce_sum(losses.token_cross_entropy(z, tf.constant(targets)) * weights)
    y_hat = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    want = (y_hat - np.eye(v)[targets]) * weights[..., None]
    np.testing.assert_allclose(tape.gradient(cost, z).numpy(), want, rtol=1e-12 if dtype == tf.float64 else 1e-5,
                               atol=1e-7)


def test_equals_tensorflows_fused_kernel():
    """Values and gradients as tf.nn.sparse_softmax_cross_entropy_with_logits, on a vocabulary of 10,000."""
    rng = np.random.default_rng(2)
    z = tf.constant(rng.normal(0, 3, (40, 10_000)), tf.float32)
    targets = tf.constant(rng.integers(0, 10_000, 40))
    results = []
    for fn in (losses.token_cross_entropy,
               lambda logits, y: tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)):
        with tf.GradientTape() as tape:
            tape.watch(z)
            nll = fn(z, targets)
            cost = tf.reduce_mean(nll)
        results.append((nll.numpy(), tape.gradient(cost, z).numpy()))
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-6)
    np.testing.assert_allclose(results[0][1], results[1][1], rtol=1e-5, atol=1e-10)


@pytest.mark.parametrize("gap", [40.0, 90.0, 1000.0])
def test_tiny_target_probabilities_against_float64(gap):
    """A target logit `gap` below the others': p = e^-gap / (V - 1 + e^-gap) is 4e-18 (normal in
    float32), 8e-40 (below the smallest normal: the exact log-sum-exp path) or 0; -log p in float64."""
    v = 50
    logits = np.zeros((2, v))
    logits[0, 3] = -gap  # the target of row 0, far below the rest
    logits[1, 7] = 2.0   # row 1: an ordinary row in the same batch
    targets = np.array([3, 7])
    want = np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1)) + logits.max(-1) - logits[[0, 1], targets]
    with tf.GradientTape() as tape:
        z = tf.constant(logits, tf.float32)
        tape.watch(z)
        nll = losses.token_cross_entropy(z, tf.constant(targets))
    np.testing.assert_allclose(nll.numpy(), want, rtol=1e-6)
    y_hat = np.exp(logits - logits.max(-1, keepdims=True))
    y_hat /= y_hat.sum(-1, keepdims=True)
    np.testing.assert_allclose(tape.gradient(nll, z).numpy(), y_hat - np.eye(v)[targets], atol=1e-7)

"""The lecture's cost and the perplexity.

    J = (1/T) sum_t J_t,   J_t = -sum_j y_tj log y_hat_tj

with y_t the one-hot target and y_hat_t = softmax(logits_t); J is also
averaged over the batch.  Perplexity = exp(J) over every target token,
``<eos>`` included.
"""

import math

import tensorflow as tf


def token_cross_entropy(logits, targets):
    """-log y_hat[target] per token from logits [..., V] and targets [...]: [...].

        J_t = log sum_j exp(z_j) - z_target       (m = max_j z_j subtracted first, for stability)
        dJ_t/dz_j = y_hat_j - [j = target]        (the softmax minus the one-hot target)

    written out with its gradient: TensorFlow's fused kernel
    (tf.nn.sparse_softmax_cross_entropy_with_logits, the reference in tests/test_losses.py) took
    twice as long over a [400, 10000] batch on a 2-core CPU (docs/performance.md), and computes the
    gradient even when only the loss is wanted."""
    shape = tf.shape(targets)
    nll = _cross_entropy(tf.reshape(logits, [-1, tf.shape(logits)[-1]]), tf.reshape(targets, [-1]))
    return tf.reshape(nll, shape)


@tf.custom_gradient
def _cross_entropy(logits, targets):
    """logits [N, V], targets [N] -> -log softmax(logits)[target], [N]."""
    m = tf.reduce_max(logits, axis=-1, keepdims=True)
    e = tf.exp(logits - m)
    total = tf.reduce_sum(e, axis=-1, keepdims=True)
    rows = tf.stack([tf.range(tf.shape(targets)[0], dtype=targets.dtype), targets], axis=1)
    nll = tf.math.log(total[:, 0]) + m[:, 0] - tf.gather_nd(logits, rows)

    def grad(d_nll):
        d_logits = e * (d_nll[:, None] / total)  # d_nll * y_hat
        return tf.tensor_scatter_nd_sub(d_logits, rows, d_nll), None  # ... - d_nll at the target

    return nll, grad


def sequence_cross_entropy(logits, targets):
    """The lecture's J: mean over time steps and batch. logits [B, T, V], targets [B, T]."""
    return tf.reduce_mean(token_cross_entropy(logits, targets))


def perplexity(mean_cross_entropy):
    return tf.exp(mean_cross_entropy)


def text_units(lines):
    """(words, characters) of ``lines`` as the word- and character-level models count their tokens: a
    line's whitespace-separated words and its <eos>; its characters and its line break."""
    return sum(len(line.split()) + 1 for line in lines), sum(len(line) + 1 for line in lines)


def per_text_unit(nats_per_token, num_tokens, lines):
    """A subword model's figures in units that compare across levels: the text's total -log p,
    N * J (N tokens, J nats per token), spread over its words W and characters C (``text_units``):

        perplexity per word = exp(N J / W),   bits per character = N J / (C ln 2)

    Returns {"word_perplexity", "bits_per_char", "words", "chars"}."""
    words, chars = text_units(lines)
    total = nats_per_token * num_tokens
    return {"word_perplexity": math.exp(total / words), "bits_per_char": total / (chars * math.log(2)),
            "words": words, "chars": chars}

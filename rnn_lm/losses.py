"""The lecture's cost and the perplexity.

    J = (1/T) sum_t J_t,   J_t = -sum_j y_tj log y_hat_tj

with y_t the one-hot target and y_hat_t = softmax(logits_t); J is also
averaged over the batch.  Perplexity = exp(J) over every target token,
``<eos>`` included.
"""

import math

import numpy as np
import tensorflow as tf


def token_cross_entropy(logits, targets):
    """-log y_hat[target] per token from logits [..., V] and targets [...]: [...].

        y_hat = softmax(z),   J_t = -log y_hat_target
        dJ_t/dz_j = y_hat_j - [j = target]        (the softmax minus the one-hot target)

    written out with its gradient. y_hat is TensorFlow's softmax, one kernel (the maximum subtracted
    first), kept for the gradient. Where a target's probability is below the smallest normal float,
    -log of it would lose precision (or be -log 0), and the batch's J_t is then computed as
    log sum_j exp(z_j) - z_target. Loss and gradient over a [400, 10000] batch on a 2-core CPU take
    about 0.7 times the time of the same written out from exp and sums, and less than half of
    TensorFlow's fused kernel (tf.nn.sparse_softmax_cross_entropy_with_logits, the reference in
    tests/test_losses.py), which also computes the gradient when only the loss is wanted
    (docs/performance.md)."""
    shape = tf.shape(targets)
    nll = _cross_entropy(tf.reshape(logits, [-1, tf.shape(logits)[-1]]), tf.reshape(targets, [-1]))
    return tf.reshape(nll, shape)


@tf.custom_gradient
def _cross_entropy(logits, targets):
    """logits [N, V], targets [N] -> -log softmax(logits)[target], [N]."""
    y_hat = tf.nn.softmax(logits)
    rows = tf.stack([tf.range(tf.shape(targets)[0], dtype=targets.dtype), targets], axis=1)
    p_target = tf.gather_nd(y_hat, rows)
    smallest_normal = tf.constant(np.finfo(logits.dtype.as_numpy_dtype).tiny, logits.dtype)
    nll = tf.cond(tf.reduce_all(p_target >= smallest_normal),
                  lambda: -tf.math.log(p_target),
                  lambda: tf.reduce_logsumexp(logits, axis=-1) - tf.gather_nd(logits, rows))

    def grad(d_nll):
        d_logits = y_hat * d_nll[:, None]
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

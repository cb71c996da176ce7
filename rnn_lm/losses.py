"""The lecture's cost and the perplexity.

    J = (1/T) sum_t J_t,   J_t = -sum_j y_tj log y_hat_tj

with y_t the one-hot target and y_hat_t = softmax(logits_t); J is also
averaged over the batch.  Perplexity = exp(J) over every target token,
``<eos>`` included.
"""

import tensorflow as tf


def token_cross_entropy(logits, targets):
    """-log y_hat[target] per token, from logits (stable; no explicit softmax): [B, T]."""
    return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=targets, logits=logits)


def sequence_cross_entropy(logits, targets):
    """The lecture's J: mean over time steps and batch. logits [B, T, V], targets [B, T]."""
    return tf.reduce_mean(token_cross_entropy(logits, targets))


def perplexity(mean_cross_entropy):
    return tf.exp(mean_cross_entropy)

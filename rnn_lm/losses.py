"""The lecture's cost and the perplexity.

    J = (1/T) sum_t J_t,   J_t = -sum_j y_tj log y_hat_tj

with y_t the one-hot target and y_hat_t = softmax(logits_t); J is also
averaged over the batch.  Perplexity = exp(J) over every target token,
``<eos>`` included.
"""

import math

import tensorflow as tf


def token_cross_entropy(logits, targets):
    """-log y_hat[target] per token, from logits (stable; no explicit softmax): [B, T]."""
    return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=targets, logits=logits)


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

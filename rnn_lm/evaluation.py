"""Evaluation: the perplexity of a stream, sentence scores, and the no-context baseline.

- ``Evaluator``: exact corpus perplexity, every token scored once, the state
  carried across windows (as in training);
- ``sentence_log_probs``: log p(line) of a batch of lines, each from the
  start-of-sentence context (n-best rescoring); the SavedModel's ``score``
  signature runs the same function;
- ``SentenceScorer``: text lines in, (log p, tokens, unknown words) out;
- ``unigram_perplexity``: the add-one unigram model, the baseline with no context.
"""

import math

import numpy as np
import tensorflow as tf

from rnn_lm import losses
from rnn_lm import progress
from rnn_lm.data import pipeline


class Evaluator:
    """Exact corpus perplexity: every token scored once, state carried across windows."""

    def __init__(self, model, batch_size, num_steps, start_id):
        self.model = model
        self.batch_size = batch_size
        self.num_steps = num_steps
        self.start_id = start_id
        self._step = tf.function(self._eval_step)

    def _eval_step(self, inputs, targets, weights, state):
        logits, state = self.model(inputs, state, training=False)
        nll = losses.token_cross_entropy(logits, targets)  # [B, T]
        return tf.reduce_sum(nll * weights), tf.reduce_sum(weights), state

    def mean_cross_entropy(self, ids, desc="evaluation"):
        """Mean -log p per token, in nats, over all of ``ids`` (a progress bar named ``desc`` on a terminal)."""
        windows = pipeline.eval_windows(ids, self.batch_size, self.num_steps, self.start_id)
        state = None
        total, count = 0.0, 0.0
        for inputs, targets, weights in progress.bar(int(windows.cardinality()), desc, unit="window", leave=False,
                                                     iterable=windows):
            if state is None:
                state = self.model.zero_state(inputs.shape[0])
            nll, n, state = self._step(inputs, targets, weights, state)
            total += float(nll)
            count += float(n)
        return total / count

    def perplexity(self, ids, desc="evaluation"):
        nats = self.mean_cross_entropy(ids, desc)
        return math.exp(nats) if nats < 700 else math.inf


def sentence_log_probs(model, ids, lengths, eos_id):
    """log p(line) = sum_t log p(w_t | <eos>, w_1 .. w_{t-1}) of each row, the final <eos> included.

    ``ids`` [B, L] int32 are the lines' tokens (without <eos>), padded after
    ``lengths`` [B]; every line starts from h_(0) = 0 with <eos> as its first
    input.  Returns (log_prob [B] float32 in nats, num_tokens [B] int32 = lengths + 1).
    """
    batch = tf.shape(ids)[0]
    n = lengths + 1  # the line's tokens and its <eos>
    eos = tf.fill([batch, 1], tf.constant(eos_id, ids.dtype))
    inputs = tf.concat([eos, ids], axis=1)  # [B, L+1]
    targets = tf.concat([ids, tf.zeros_like(eos)], axis=1)
    targets = tf.tensor_scatter_nd_update(targets, tf.stack([tf.range(batch), n - 1], axis=1),
                                          tf.fill([batch], tf.constant(eos_id, ids.dtype)))
    logits, _ = model(inputs, training=False)
    mask = tf.sequence_mask(n, tf.shape(inputs)[1], dtype=tf.float32)
    return -tf.reduce_sum(losses.token_cross_entropy(logits, targets) * mask, axis=1), n


class SentenceScorer:
    """Text lines in, ``sentence_log_probs`` out, a batch of lines per graph call."""

    def __init__(self, model, vocab, tokenizer, batch_size=32):
        self.model = model
        self.vocab = vocab
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self._score = tf.function(lambda ids, lengths: sentence_log_probs(model, ids, lengths, vocab.eos_id)[0],
                                  reduce_retracing=True)

    def score(self, lines):
        """Yields (line, log_prob in nats, num_tokens, num_unknown) for each line, in order."""
        for start in range(0, len(lines), self.batch_size):
            batch = lines[start:start + self.batch_size]
            encoded = [self.vocab.encode(self.tokenizer.tokenize(line)[:-1]) for line in batch]  # <eos> added in the graph
            lengths = np.array([len(ids) for ids in encoded], np.int32)
            ids = np.zeros([len(batch), max(1, lengths.max())], np.int32)
            for row, line_ids in zip(ids, encoded):
                row[:len(line_ids)] = line_ids
            log_probs = self._score(ids, lengths).numpy()
            for line, line_ids, log_prob in zip(batch, encoded, log_probs):
                yield line, float(log_prob), len(line_ids) + 1, int(np.sum(line_ids == self.vocab.unk_id))


def unigram_perplexity(train_counts, eval_ids):
    """Perplexity on ``eval_ids`` of the add-one unigram model of the training counts (one per id):
    the baseline with no context."""
    counts = np.asarray(train_counts, dtype=np.float64) + 1.0
    log_p = np.log(counts / counts.sum())
    return float(np.exp(-log_p[eval_ids].mean()))

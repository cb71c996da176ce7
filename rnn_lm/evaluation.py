"""Evaluation: the perplexity of a stream, sentence scores, and the no-context baseline.

- ``Evaluator``: exact corpus perplexity, every token scored once, the state
  carried across windows (as in training);
- ``sentence_log_probs``: log p(line) of a batch of lines, each from the
  start-of-sentence context (n-best rescoring), from the zero state or from a
  start state; the SavedModel's ``score`` signature runs the same function;
- ``boundary_state``: the start state a stream-trained model does see, the
  mean state it carries into an ``<eos>`` input; ``learned_start``: the single start
  state that scores the training lines best;
- ``SentenceScorer``: text lines in, (log p, tokens, unknown words) out;
- ``unigram_perplexity``: the add-one unigram model, the baseline with no context.
"""

import math

import numpy as np
import tensorflow as tf

from rnn_lm import progress
from rnn_lm.data import pipeline
from rnn_lm.errors import RnnLmError

# boundary_state reads this much of the training text, as this many contiguous streams.
BOUNDARY_TOKENS = 200_000
BOUNDARY_STREAMS = 32
SENTENCE_BATCH = 32  # lines per graph call of SentenceScorer (docs/evaluation.md: faster than 16, 64 and 128)
# learned_start: Adam's passes over the training prefix's lines and its learning rate (on PTB a second
# pass lowered the training lines' loss by 0.3 %, docs/evaluation.md).
LEARNED_START_EPOCHS = 1
LEARNED_START_LR = 0.01


class Evaluator:
    """Corpus perplexity: every token scored once, the state carried across windows; ``batch_size``
    streams, each but the first reading up to ``warmup`` tokens before its part, unscored
    (``pipeline.eval_windows``).  Batch 1 is exact."""

    def __init__(self, model, batch_size, num_steps, start_id, warmup=0):
        self.model = model
        self.batch_size = batch_size
        self.num_steps = num_steps
        self.start_id = start_id
        self.warmup = warmup
        self._step = tf.function(self._eval_step)

    def _start(self, batch_size):
        """What one window carries to the next, before the first: the zero state."""
        return self.model.zero_state(batch_size)

    def _eval_step(self, inputs, targets, weights, state):
        """One window: ((sum of -log p, tokens), the state after it)."""
        h, state = self.model.features(inputs, state, training=False)
        nll = self.model.token_nll(h, targets)  # [B, T]
        return (tf.reduce_sum(nll * weights), tf.reduce_sum(weights)), state

    def windows(self, ids, desc="evaluation"):
        """Each window's outputs of ``_eval_step``, the carry passed on from window to window (a
        progress bar named ``desc`` on a terminal)."""
        windows = pipeline.eval_windows(ids, self.batch_size, self.num_steps, self.start_id, self.warmup)
        carry = None
        for inputs, targets, weights in progress.bar(int(windows.cardinality()), desc, unit="window", leave=False,
                                                     iterable=windows):
            if carry is None:
                carry = self._start(inputs.shape[0])
            out, carry = self._step(inputs, targets, weights, carry)
            yield out

    def mean_cross_entropy(self, ids, desc="evaluation"):
        """Mean -log p per token, in nats, over all of ``ids``."""
        total, count = 0.0, 0.0
        for nll, n in self.windows(ids, desc):
            total += float(nll)
            count += float(n)
        return total / count

    @classmethod
    def for_training(cls, model, train, start_id):
        """The evaluator of a training configuration's valid and test figures (``TrainConfig``'s
        eval_batch_size, num_steps and eval_warmup)."""
        return cls(model, train.eval_batch_size, train.num_steps, start_id, train.eval_warmup)

    def perplexity(self, ids, desc="evaluation"):
        nats = self.mean_cross_entropy(ids, desc)
        return math.exp(nats) if nats < 700 else math.inf


def sentence_log_probs(model, ids, lengths, eos_id, start=None):
    """log p(line) = sum_t log p(w_t | <eos>, w_1 .. w_{t-1}) of each row, the final <eos> included.

    ``ids`` [B, L] int32 are the lines' tokens (without <eos>), padded after
    ``lengths`` [B]; every line starts from ``start`` (one row's state, e.g.
    ``boundary_state``'s; None: h_(0) = 0) with <eos> as its first input.
    Returns (log_prob [B] float32 in nats, num_tokens [B] int32 = lengths + 1).
    """
    batch = tf.shape(ids)[0]
    n = lengths + 1  # the line's tokens and its <eos>
    eos = tf.fill([batch, 1], tf.constant(eos_id, ids.dtype))
    inputs = tf.concat([eos, ids], axis=1)  # [B, L+1]
    targets = tf.concat([ids, tf.zeros_like(eos)], axis=1)
    targets = tf.tensor_scatter_nd_update(targets, tf.stack([tf.range(batch), n - 1], axis=1),
                                          tf.fill([batch], tf.constant(eos_id, ids.dtype)))
    state = None if start is None else tf.nest.map_structure(lambda s: tf.tile(s[None], [batch, 1]), start)
    h, _ = model.features(inputs, state, training=False)
    mask = tf.sequence_mask(n, tf.shape(inputs)[1], dtype=tf.float32)
    return -tf.reduce_sum(model.token_nll(h, targets) * mask, axis=1), n


def boundary_state(model, ids, eos_id, streams=BOUNDARY_STREAMS, max_tokens=BOUNDARY_TOKENS):
    """The mean state ``model`` carries into an <eos> input over the first ``max_tokens`` of ``ids``
    (the training text, as it was trained: ``streams`` contiguous rows, the state carried), one row's
    state per layer.  Every sentence of a stream-trained model starts from such a state, never from
    h_(0) = 0, so per-sentence scores from it are closer to the stream's (docs/evaluation.md).
    """
    length = min(len(ids), max_tokens) // streams
    rows = np.asarray(ids[:length * streams], np.int32).reshape(streams, length)
    sums, count = tf.function(lambda rows: _boundary_sums(model, rows, eos_id))(tf.constant(rows))
    if float(count) == 0:
        raise RnnLmError("the training text has no sentence boundary (<eos>) to take a start state from")
    return tf.nest.map_structure(lambda s: s / count, sums)


def _boundary_sums(model, rows, eos_id):
    """(the sum over rows and steps of the state going into each <eos> input but the first column's,
    their count); the cells only, no softmax."""
    fused = model.fuse()
    state = model.zero_state(tf.shape(rows)[0])
    sums = tf.nest.map_structure(lambda s: tf.zeros_like(s[0]), state)

    def body(t, state, sums, count):
        at = tf.equal(rows[:, t], eos_id) & (t > 0)  # column 0's state is the zero start, not a boundary's
        sums = tf.nest.map_structure(lambda total, s: total + tf.reduce_sum(tf.where(at[:, None], s, 0.0), 0),
                                     sums, state)
        _, state = model.advance(rows[:, t], state, fused)
        return t + 1, state, sums, count + tf.reduce_sum(tf.cast(at, tf.float32))

    _, _, sums, count = tf.while_loop(lambda t, *_: t < tf.shape(rows)[1], body,
                                      (tf.constant(0), state, sums, tf.constant(0.0)))
    return sums, count


def learned_start(model, ids, eos_id, init, epochs=LEARNED_START_EPOCHS, lr=LEARNED_START_LR,
                  batch_size=SENTENCE_BATCH, seed=0):
    """The start state that maximises the total log-probability of the lines of ``ids`` (the training
    text, <eos>-separated) each scored on its own from it (``sentence_log_probs``), the weights fixed:
    Adam over the state alone, from ``init`` (``boundary_state``'s), ``epochs`` passes over the lines in
    batches of similar length.  The best a single start state can do (docs/evaluation.md)."""
    ids = np.asarray(ids, np.int32)
    ends = np.flatnonzero(ids == eos_id)
    lines = [ids[a + 1:b] for a, b in zip(np.concatenate([[-1], ends[:-1]]), ends)]
    if ids[0] == eos_id:
        lines = lines[1:]  # the empty "line" before a stream's leading <eos>
    if not lines:
        raise RnnLmError("the training text has no sentence boundary (<eos>) to learn a start state from")
    start = tf.nest.map_structure(lambda s: tf.Variable(s, trainable=False), init)
    variables = tf.nest.flatten(start)
    optimizer = tf.keras.optimizers.Adam(lr)

    @tf.function(reduce_retracing=True)
    def step(batch, lengths):
        with tf.GradientTape() as tape:
            tape.watch(variables)
            log_prob, n = sentence_log_probs(model, batch, lengths, eos_id, start)
            loss = -tf.reduce_sum(log_prob) / tf.cast(tf.reduce_sum(n), tf.float32)
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))

    batches = length_batches([len(line) for line in lines], batch_size)
    rng = np.random.default_rng(seed)
    for _ in progress.bar(epochs, "learning the start state", unit="epoch", leave=False, iterable=range(epochs)):
        for k in rng.permutation(len(batches)):
            step(*padded([lines[i] for i in batches[k]]))
    return tf.nest.map_structure(tf.convert_to_tensor, start)


def length_batches(lengths, batch_size):
    """Indices of lines sorted by length, cut into batches of ``batch_size``: lines of one length pad little."""
    order = np.argsort(lengths, kind="stable")
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def padded(lines):
    """Lines of ids -> (ids [B, L] int32, 0-padded, lengths [B] int32)."""
    lengths = np.array([len(line) for line in lines], np.int32)
    ids = np.zeros([len(lines), max(1, lengths.max())], np.int32)
    for row, line in zip(ids, lines):
        row[:len(line)] = line
    return ids, lengths


def sentence_start(config, vocab, model, model_dir, train_ids=None, method="boundary"):
    """Where a sentence scored on its own starts: None (zero) for a sentence-mode model, whose state
    is zero after every <eos> anyway; else ``boundary_state`` over the training text (``train_ids``,
    or read from the model's corpus), and with ``method="learned"`` ``learned_start`` from it.  An
    RnnLmError when that text cannot be read."""
    if config.model.reset_state == "eos":
        return None
    if train_ids is None:
        from rnn_lm.data import corpus as corpus_lib
        train_ids = corpus_lib.train_prefix(config.data, vocab, BOUNDARY_TOKENS, model_dir)
    start = boundary_state(model, train_ids, vocab.eos_id)
    return learned_start(model, train_ids, vocab.eos_id, start) if method == "learned" else start


class SentenceScorer:
    """Text lines in, ``sentence_log_probs`` out: the lines sorted by length into batches of up to
    ``batch_size``, one graph call each (lines of one length pad little), the results in input
    order.  ``start``: the state every line starts from (``boundary_state``'s; None: zero)."""

    def __init__(self, model, vocab, tokenizer, batch_size=SENTENCE_BATCH, start=None):
        self.model = model
        self.vocab = vocab
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self._score = tf.function(
            lambda ids, lengths: sentence_log_probs(model, ids, lengths, vocab.eos_id, start)[0],
            reduce_retracing=True)

    def score(self, lines, desc=None):
        """[(line, log_prob in nats, num_tokens, num_unknown)] for ``lines``, in their order (a progress
        bar named ``desc`` on a terminal)."""
        encoded = [self.vocab.encode(self.tokenizer.tokenize(line)[:-1]) for line in lines]  # <eos> added in the graph
        log_probs = np.zeros(len(lines))
        batches = length_batches([len(ids) for ids in encoded], self.batch_size)
        for batch in progress.bar(len(batches), desc or "scoring", unit="batch", leave=False, iterable=batches,
                                  disable=desc is None):
            log_probs[batch] = self._score(*padded([encoded[i] for i in batch])).numpy()
        return [(line, float(log_prob), len(ids) + 1, int(np.sum(ids == self.vocab.unk_id)))
                for line, ids, log_prob in zip(lines, encoded, log_probs)]


def unigram_perplexity(train_counts, eval_ids):
    """Perplexity on ``eval_ids`` of the add-one unigram model of the training counts (one per id):
    the baseline with no context."""
    counts = np.asarray(train_counts, dtype=np.float64) + 1.0
    log_p = np.log(counts / counts.sum())
    return float(np.exp(-log_p[eval_ids].mean()))

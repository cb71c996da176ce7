"""Evaluation that adapts to the text it scores, the trained model unchanged: a neural cache and
dynamic evaluation.  Both score every token before anything of it is used, so their perplexities
are honest; both carry the state across windows as ``evaluation.Evaluator`` does.

Neural cache (Grave, Joulin & Usunier 2017, "Improving neural language models with a continuous
cache").  The last ``size`` hidden states h_i of the top layer are kept with the word that followed
each, x_(i+1).  At step t,

    p_cache(w) = sum_{i in cache, x_(i+1) = w} exp(theta h_t . h_i) / sum_{i in cache} exp(theta h_t . h_i)
    p(w)       = (1 - lambda) p_model(w) + lambda p_cache(w)

a normalised distribution (both parts are); at the first token, with nothing cached, p = p_model.

Dynamic evaluation (Krause, Kahembwe, Murray & Renals 2018, "Dynamic evaluation of neural sequence
models"; Mikolov's RNNLM toolkit's ``-dynamic``).  The text is cut into segments of ``segment``
tokens; each is scored with the current weights, and only then are the weights moved by the
gradient g of that segment's mean loss:

    sgd:  theta <- theta - lr g
    rms:  theta <- theta - lr g / (sqrt(MS) + eps) + decay (theta_0 - theta) * min(RMS_norm, 1 / decay)

MS is the mean squared gradient over segments of the training text (``gradient_statistics``),
RMS_norm = sqrt(MS) / mean(sqrt(MS)) per variable, and theta_0 the trained weights (Krause et
al.'s "RMS with a global prior"; ``decay`` 0 is plain RMS-normalised SGD).  The model's weights
are restored when the evaluation ends.
"""

import numpy as np
import tensorflow as tf

from rnn_lm import progress
from rnn_lm.data import pipeline
from rnn_lm.evaluation import Evaluator

RMS_EPSILON = 1e-5
# Where a caller names none.  Dynamic evaluation: segments of 5 tokens as Krause et al. use for
# word-level PTB; the learning rates are starting points for --tune (docs/evaluation.md: sgd's
# chosen on PTB; rms at 0.0005 and above was worse than static evaluation there, so its grid lies
# below that).
DYNAMIC_DEFAULTS = {"sgd": dict(lr=0.3, decay=0.0, segment=5), "rms": dict(lr=0.0001, decay=0.02, segment=5)}
# rnn-lm-eval --tune's grids.
# The cache's size is searched too unless --cache_size names one (Grave et al. found larger caches
# better on their corpora, up to thousands of states).
CACHE_GRID = {"size": [500, 1000, 2000], "theta": [0.1, 0.3, 0.6, 1.0], "lam": [0.05, 0.1, 0.2, 0.3]}
DYNAMIC_GRID = {"sgd": {"lr": [0.03, 0.1, 0.3, 1.0], "decay": [0.0, 0.01]},
                "rms": {"lr": [0.00003, 0.0001, 0.0003], "decay": [0.0, 0.02]}}
# The RMS method's gradient statistics are gathered over the whole training text, as this many
# streams: over a part of it, a word that never occurs there has MS = 0 and, when it comes up in
# the evaluated text, a step of lr / eps (measured on PTB: 100,000 tokens made every learning rate
# diverge).
STATISTICS_BATCH = 20


# ---------------------------------------------------------------------------
# The neural cache.

def cache_attention(h, keys, usable, theta):
    """Weights over the cache for each step: h [B, T, H], keys [B, J, H], usable [B, T, J] bool ->
    (a [B, T, J], each row summing to 1 over its usable entries, 0 elsewhere; has [B, T]: any usable)."""
    scores = theta * tf.einsum("bth,bjh->btj", h, keys)
    scores = tf.where(usable, scores, tf.constant(-np.inf, scores.dtype))
    has = tf.reduce_any(usable, axis=-1)
    a = tf.nn.softmax(tf.where(has[..., None], scores, tf.zeros_like(scores)), axis=-1)
    return tf.where(usable, a, 0.0), has


def cache_distribution(log_p_model, a, has, values, lam):
    """The mixed distribution over the whole vocabulary, [B, T, V]: log_p_model [B, T, V], the
    attention ``a`` [B, T, J] of ``cache_attention`` over entries whose next words are ``values`` [B, J]."""
    vocab = tf.shape(log_p_model)[-1]
    p_cache = tf.einsum("btj,bjv->btv", a, tf.one_hot(values, vocab, dtype=a.dtype))
    lam = tf.where(has, lam, 0.0)[..., None]
    return (1.0 - lam) * tf.exp(log_p_model) + lam * p_cache


class CacheEvaluator(Evaluator):
    """Corpus perplexity with the neural cache: ``batch_size`` streams, each with its own cache, carried
    from window to window with the state (``Evaluator``'s loop)."""

    def __init__(self, model, batch_size, num_steps, start_id, size, theta, lam):
        super().__init__(model, batch_size, num_steps, start_id)
        self.size = size
        self.theta = theta
        self.lam = lam
        self._step = tf.function(self._window)

    def _start(self, batch_size):
        return (self.model.zero_state(batch_size),
                (tf.zeros([batch_size, self.size, self.model.config.hidden_size]),
                 tf.zeros([batch_size, self.size], tf.int32), tf.zeros([batch_size, self.size], tf.bool)))

    def _window(self, inputs, targets, weights, carry):
        """One window: (sum of -log p, tokens, (state, cache)).  The cache (keys [B, N, H], values [B, N],
        filled [B, N]) holds the last N (h_i, x_(i+1)) pairs, oldest first."""
        state, (keys, values, filled) = carry
        h, state = self.model.features(inputs, state, training=False)
        log_p = tf.nn.log_softmax(self.model.output_logits(h))  # [B, T, V]
        p_model = tf.exp(tf.gather(log_p, targets, batch_dims=2))  # [B, T]
        steps, size = tf.shape(inputs)[1], self.size
        all_keys = tf.concat([keys, tf.cast(h, keys.dtype)], axis=1)  # [B, N + T, H]
        all_values = tf.concat([values, targets], axis=1)
        all_filled = tf.concat([filled, weights > 0], axis=1)
        j, t = tf.range(size + steps), tf.range(steps)
        # Entry j is the pair of step j - N: usable at step t when it came before t, at most N back.
        window = (j[None, :] < size + t[:, None]) & (j[None, :] >= t[:, None])  # [T, N + T]
        usable = window[None] & all_filled[:, None, :]
        a, has = cache_attention(tf.cast(h, keys.dtype), all_keys, usable, self.theta)
        p_cache = tf.reduce_sum(a * tf.cast(all_values[:, None, :] == targets[..., None], a.dtype), axis=-1)
        lam = tf.where(has, self.lam, 0.0)
        nll = -tf.math.log((1.0 - lam) * p_model + lam * p_cache)
        cache = all_keys[:, -size:], all_values[:, -size:], all_filled[:, -size:]
        return tf.reduce_sum(nll * weights), tf.reduce_sum(weights), (state, cache)


# ---------------------------------------------------------------------------
# Dynamic evaluation.

def segments(ids, segment, start_id, batch_size=1):
    """The windows of dynamic evaluation: ``evaluation``'s stream windows of ``segment`` tokens."""
    return pipeline.eval_windows(ids, batch_size, segment, start_id)


def gradient_statistics(model, ids, segment, start_id, batch_size=STATISTICS_BATCH):
    """MS: each weight's squared gradient of a segment's mean loss, averaged over the segments of
    ``ids`` (the training text), ``batch_size`` streams of ``segment`` tokens at a time, the state
    carried (as Krause et al. collect it over training batches); a list like
    ``model.trainable_variables``."""
    sums = [tf.Variable(tf.zeros_like(v), trainable=False) for v in model.trainable_variables]

    @tf.function
    def accumulate(inputs, targets, weights, state):
        _, _, grads, state = _loss_and_gradients(model, inputs, targets, weights, state)
        for total, g in zip(sums, grads):
            total.assign_add(tf.square(g))
        return state

    n, state = 0, None
    for inputs, targets, weights in segments(ids, segment, start_id, batch_size):
        if state is None:
            state = model.zero_state(inputs.shape[0])
        state = accumulate(inputs, targets, weights, state)
        n += 1
    return [total / n for total in sums]


def _loss_and_gradients(model, inputs, targets, weights, state):
    with tf.GradientTape() as tape:
        h, new_state = model.features(inputs, state, training=False)
        nll = model.token_nll(h, targets) * weights  # [B, T]
        mean = tf.reduce_sum(nll) / tf.maximum(tf.reduce_sum(weights), 1.0)
    grads = tape.gradient(mean, model.trainable_variables)
    grads = [tf.convert_to_tensor(g) for g in grads]  # an embedding's sparse gradient, densified
    return nll, tf.reduce_sum(weights), grads, new_state


class DynamicEvaluator:
    """Corpus perplexity with dynamic evaluation (module docstring): ``method`` "sgd" or "rms"
    (``ms``: ``gradient_statistics``'s), ``lr``, ``decay`` toward the trained weights.  Each segment
    is one graph call: score, gradient, update."""

    def __init__(self, model, segment, start_id, lr, method="sgd", decay=0.0, ms=None, batch_size=1):
        if method == "rms" and ms is None:
            raise ValueError("method='rms' needs the gradient statistics ms")
        self.model = model
        self.segment = segment
        self.start_id = start_id
        self.batch_size = batch_size
        variables = model.trainable_variables
        self._trained = [tf.identity(v) for v in variables]
        self._scale = None
        self._pull = None
        if method == "rms":
            root = [tf.sqrt(m) for m in ms]
            self._scale = [1.0 / (r + RMS_EPSILON) for r in root]
            if decay:  # Krause et al.: each weight's decay in proportion to its RMS, at most 1 / decay
                self._pull = [decay * tf.minimum(r / tf.reduce_mean(r), 1.0 / decay) for r in root]
        elif decay:
            self._pull = [tf.constant(decay)] * len(variables)
        self._lr = tf.constant(lr, tf.float32)
        self._step = tf.function(self._score_and_learn)

    def _score_and_learn(self, inputs, targets, weights, state):
        """-log p of the segment with the weights as they are, then the update by its gradient."""
        nll, _, grads, state = _loss_and_gradients(self.model, inputs, targets, weights, state)
        for i, (v, g) in enumerate(zip(self.model.trainable_variables, grads)):
            step = self._lr * g * self._scale[i] if self._scale else self._lr * g
            if self._pull:
                step -= self._pull[i] * (self._trained[i] - v)
            v.assign_sub(step)
        return nll, state

    def token_nll(self, ids, desc="dynamic evaluation"):
        """-log p of every scored token, in stream order (rows of a batch concatenated), each scored
        before the update that uses it; the weights are the trained ones again afterwards."""
        windows = segments(ids, self.segment, self.start_id, self.batch_size)
        state, scored = None, []
        try:
            for inputs, targets, weights in progress.bar(int(windows.cardinality()), desc, unit="segment",
                                                         leave=False, iterable=windows):
                if state is None:
                    state = self.model.zero_state(inputs.shape[0])
                nll, state = self._step(inputs, targets, weights, state)
                scored.append((nll.numpy(), weights.numpy() > 0))
        finally:
            for v, trained in zip(self.model.trainable_variables, self._trained):
                v.assign(trained)
        if not scored:
            return np.zeros(0)
        nll = np.concatenate([n for n, _ in scored], axis=1)
        used = np.concatenate([u for _, u in scored], axis=1)
        return nll[used]

    def mean_cross_entropy(self, ids, desc="dynamic evaluation"):
        return float(np.mean(self.token_nll(ids, desc)))

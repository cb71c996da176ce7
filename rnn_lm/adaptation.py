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
RMS_norm = sqrt(MS) / m, where m is the mean over the variables of each one's mean sqrt(MS) (one
number for the whole model, as Krause et al.'s code normalises it), and theta_0 the trained weights
(their "RMS with a global prior"; ``decay`` 0 is plain RMS-normalised SGD).  The model's weights
are restored when the evaluation ends.

The two together: dynamic evaluation with a cache mixed into the distribution it scores by, the
weights still learning from the model's own loss.
"""

import numpy as np
import tensorflow as tf

from rnn_lm.data import pipeline
from rnn_lm.evaluation import Evaluator

# The RMS method's eps, and its defaults and grid below, are those of Krause et al.'s code
# (benkrause/dynamic-evaluation, dynamiceval.py: eps 2e-5, lr 5e-5, decay 0.002; its grid lr 3e-5 to
# 1e-4, decay 0.001 to 0.005), whose statistics are gathered, as here, at batch 100 and segments of 5.
RMS_EPSILON = 2e-5
# Where a caller names none.  Dynamic evaluation: segments of 5 tokens as Krause et al. use for
# word-level PTB; the learning rates are starting points for --tune (docs/evaluation.md: sgd's
# chosen on PTB).
DYNAMIC_DEFAULTS = {"sgd": dict(lr=0.3, decay=0.0, segment=5), "rms": dict(lr=0.00005, decay=0.002, segment=5)}
# rnn-lm-eval --tune's grids.
# The cache's size is searched too unless --cache_size names one (Grave et al. found larger caches
# better on their corpora, up to thousands of states).
CACHE_GRID = {"size": [500, 1000, 2000], "theta": [0.1, 0.3, 0.6, 1.0], "lam": [0.05, 0.1, 0.2, 0.3]}
DYNAMIC_GRID = {"sgd": {"lr": [0.03, 0.1, 0.3, 1.0], "decay": [0.0, 0.01]},
                "rms": {"lr": [0.00003, 0.00005, 0.0001, 0.0002], "decay": [0.0, 0.002, 0.005]}}
# The RMS method's gradient statistics are gathered over the whole training text, as this many
# streams: over a part of it, a word that never occurs there has MS = 0 and, when it comes up in
# the evaluated text, a step of lr / eps (measured on PTB: 100,000 tokens made every learning rate
# diverge).  100 streams, as Krause et al.'s code: its learning rates assume a gradient that averages
# 100 x 5 tokens.
STATISTICS_BATCH = 100


# ---------------------------------------------------------------------------
# The neural cache.

def cache_attention(h, keys, usable, theta):
    """Weights over the cache for each step: h [B, T, H], keys [B, J, H], usable [B, T, J] bool ->
    (a [B, T, J], each row summing to 1 over its usable entries, 0 elsewhere; has [B, T]: any usable)."""
    return _masked_softmax(theta * tf.einsum("bth,bjh->btj", h, keys), usable)


def _masked_softmax(scores, usable):
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


def mixed_nll(nll_model, p_cache, has, lam):
    """-log p of the scored tokens under the mixture, in float64: ``nll_model`` = -log p_model(x_t),
    ``p_cache`` = p_cache(x_t) and ``has`` (the cache held anything) of ``CacheGrid``; where the cache
    was empty, p = p_model."""
    lam = np.where(has, lam, 0.0)
    return -np.log((1.0 - lam) * np.exp(-np.asarray(nll_model, np.float64)) + lam * np.asarray(p_cache, np.float64))


class CacheGrid:
    """The neural cache at several settings at once: every size of ``sizes`` with every theta of
    ``thetas`` (``settings``, in that order), one cache of the largest size.  A step's attention
    scores h_t . h_i are computed once and shared; only the cache's probability of each target
    word is returned, which is all a perplexity needs (lambda mixes it in afterwards, ``mixed_nll``),
    so ``rnn-lm-eval --tune=cache`` tries its whole grid in one pass over the text."""

    def __init__(self, hidden_size, sizes, thetas):
        """``sizes``, ``thetas``: a value or a list of values each."""
        self.hidden_size = hidden_size
        self.settings = [(int(size), float(theta)) for size in np.atleast_1d(sizes) for theta in np.atleast_1d(thetas)]
        self.size = max(size for size, _ in self.settings)

    def empty(self, batch_size):
        """The cache before the first step: keys [B, N, H], values [B, N], filled [B, N], oldest first."""
        return (tf.zeros([batch_size, self.size, self.hidden_size]), tf.zeros([batch_size, self.size], tf.int32),
                tf.zeros([batch_size, self.size], tf.bool))

    def __call__(self, h, targets, weights, cache):
        """One window of T steps: (p_cache(x_t) [B, T, K] for the K settings, has [B, T, K], the cache
        after the window).  Entry i pairs h_i with x_(i+1); at step t the entries of steps t - size
        to t - 1 are used, so a token is scored before it enters the cache."""
        keys, values, filled = cache
        h = tf.cast(h, keys.dtype)
        n = self.size
        all_keys = tf.concat([keys, h], axis=1)  # [B, N + T, H]
        all_values = tf.concat([values, targets], axis=1)
        all_filled = tf.concat([filled, weights > 0], axis=1)
        scores = tf.einsum("bth,bjh->btj", h, all_keys)
        p_cache, has = zip(*(target_probability(scores, all_values, all_filled, targets, n, size, theta)
                             for size, theta in self.settings))
        cache = all_keys[:, -n:], all_values[:, -n:], all_filled[:, -n:]
        return tf.stack(p_cache, axis=-1), tf.stack(has, axis=-1), cache


def target_probability(scores, values, filled, targets, offset, size, theta):
    """p_cache(x_t) [B, T] and has [B, T] (the cache held anything) from the scores h_t . k_j [B, T, J]
    of the T steps over J entries, entry j pairing its key with the next word ``values`` [B, J]
    (``filled``: it holds one); step t is entry ``offset`` + t, and uses the up to ``size`` entries
    before it, so a token is scored before it enters the cache."""
    j, t = tf.range(tf.shape(scores)[2])[None, :], tf.range(tf.shape(scores)[1])[:, None]
    usable = ((j < offset + t) & (j >= offset - size + t))[None] & filled[:, None, :]
    a, has = _masked_softmax(theta * scores, usable)
    hit = values[:, None, :] == targets[..., None]  # [B, T, J]: entry j's next word is x_t
    return tf.reduce_sum(tf.where(hit, a, 0.0), axis=-1), has


class ScoredTokens:
    """Per scored token, in stream order (rows of a batch concatenated): ``nll`` = -log p_model [N],
    and with a cache, ``p_cache`` [N, K] and ``has`` [N, K] for ``CacheGrid.settings``."""

    def __init__(self, windows):
        """``windows``: per window (nll [B, T], p_cache [B, T, K] or None, has or None, used [B, T])."""
        used = np.concatenate([w[3] for w in windows], axis=1) if windows else None
        join = lambda i: np.concatenate([w[i] for w in windows], axis=1)[used]  # noqa: E731
        self.nll = join(0) if windows else np.zeros(0)
        cached = bool(windows) and windows[0][1] is not None
        self.p_cache = join(1) if cached else None
        self.has = join(2) if cached else None

    def mixed(self, k, lam):
        """-log p of each token with setting ``k`` of the cache at weight ``lam``."""
        return mixed_nll(self.nll, self.p_cache[:, k], self.has[:, k], lam)


class _TokenScorer(Evaluator):
    """An evaluator whose windows give ``ScoredTokens``' parts; ``cache``: a ``CacheGrid`` or None,
    ``lam``: the weight of its first setting in ``token_nll``."""

    cache = None
    lam = 0.0

    def scored_tokens(self, ids, desc="evaluation"):
        return ScoredTokens([[None if x is None else x.numpy() for x in out] for out in self.windows(ids, desc)])

    def token_nll(self, ids, desc="evaluation"):
        """-log p of every scored token, in stream order."""
        scored = self.scored_tokens(ids, desc)
        return scored.nll if self.cache is None or not len(scored.nll) else scored.mixed(0, self.lam)

    def mean_cross_entropy(self, ids, desc="evaluation"):
        return float(np.mean(self.token_nll(ids, desc)))


class CacheEvaluator(_TokenScorer):
    """Corpus perplexity with the neural cache: ``batch_size`` streams, each with its own cache, carried
    from window to window with the state (``Evaluator``'s loop).  ``size`` and ``theta`` may be lists
    (a ``CacheGrid``, whose every setting ``scored_tokens`` gives); the perplexity is that of the first."""

    def __init__(self, model, batch_size, num_steps, start_id, size, theta, lam, warmup=0):
        super().__init__(model, batch_size, num_steps, start_id, warmup)
        self.cache = CacheGrid(model.config.hidden_size, size, theta)
        self.lam = lam

    def _start(self, batch_size):
        return self.model.zero_state(batch_size), self.cache.empty(batch_size)

    def _eval_step(self, inputs, targets, weights, carry):
        state, cache = carry
        h, state = self.model.features(inputs, state, training=False)
        p_cache, has, cache = self.cache(h, targets, weights, cache)
        return (self.model.token_nll(h, targets), p_cache, has, weights > 0), (state, cache)


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
        _, grads, state, _ = _loss_and_gradients(model, inputs, targets, weights, state)
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
    """(-log p [B, T] of the window's tokens (0 where not scored), the gradients of their mean, the
    state after the window, the top layer's outputs h [B, T, H])."""
    with tf.GradientTape() as tape:
        h, new_state = model.features(inputs, state, training=False)
        nll = model.token_nll(h, targets) * weights  # [B, T]
        mean = tf.reduce_sum(nll) / tf.maximum(tf.reduce_sum(weights), 1.0)
    grads = tape.gradient(mean, model.trainable_variables)
    grads = [tf.convert_to_tensor(g) for g in grads]  # an embedding's sparse gradient, densified
    return nll, grads, new_state, h


class DynamicEvaluator(_TokenScorer):
    """Corpus perplexity with dynamic evaluation (module docstring): ``method`` "sgd" or "rms"
    (``ms``: ``gradient_statistics``'s), ``lr``, ``decay`` toward the trained weights.  Each segment
    is one graph call: score, gradient, update.  With ``cache`` (a ``CacheGrid``) the neural cache is
    mixed in at weight ``lam`` as well (its keys are the states as the adapting model computed them;
    the weights learn from the model's own loss, so the cache does not change how they move)."""

    def __init__(self, model, segment, start_id, lr, method="sgd", decay=0.0, ms=None, batch_size=1, cache=None,
                 lam=0.0, warmup=0):
        if method == "rms" and ms is None:
            raise ValueError("method='rms' needs the gradient statistics ms")
        super().__init__(model, batch_size, segment, start_id, warmup)
        self.segment = segment
        self.cache = cache
        self.lam = lam
        variables = model.trainable_variables
        self._trained = [tf.identity(v) for v in variables]
        self._scale = None
        self._pull = None
        if method == "rms":
            root = [tf.sqrt(m) for m in ms]
            self._scale = [1.0 / (r + RMS_EPSILON) for r in root]
            if decay:  # Krause et al.: each weight's decay in proportion to its RMS, at most 1 / decay
                mean_root = tf.add_n([tf.reduce_mean(r) for r in root]) / len(root)
                self._pull = [decay * tf.minimum(r / mean_root, 1.0 / decay) for r in root]
        elif decay:
            self._pull = [tf.constant(decay)] * len(variables)
        self._lr = tf.constant(lr, tf.float32)

    def _start(self, batch_size):
        return self.model.zero_state(batch_size), None if self.cache is None else self.cache.empty(batch_size)

    def _eval_step(self, inputs, targets, weights, carry):
        """-log p of the segment with the weights as they are, then the update by its gradient."""
        state, cache = carry
        nll, grads, state, h = _loss_and_gradients(self.model, inputs, targets, weights, state)
        for i, (v, g) in enumerate(zip(self.model.trainable_variables, grads)):
            step = self._lr * g * self._scale[i] if self._scale else self._lr * g
            if self._pull:
                step -= self._pull[i] * (self._trained[i] - v)
            v.assign_sub(step)
        if cache is None:
            return (nll, None, None, weights > 0), (state, None)
        p_cache, has, cache = self.cache(h, targets, weights, cache)
        return (nll, p_cache, has, weights > 0), (state, cache)

    def scored_tokens(self, ids, desc="dynamic evaluation"):
        """As ``_TokenScorer``'s, each token scored before the update that uses it; the weights are the
        trained ones again afterwards."""
        try:
            return super().scored_tokens(ids, desc)
        finally:
            for v, trained in zip(self.model.trainable_variables, self._trained):
                v.assign(trained)

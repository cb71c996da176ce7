"""Evaluation that adapts (rnn_lm.adaptation): the neural cache's distribution sums to 1 and equals a
float64 NumPy transcription of Grave et al.'s equations, step by step and over a windowed stream;
dynamic evaluation scores its first segment as static evaluation does, never lets a token influence
its own score, moves the weights by the update rule written out by hand (SGD with decay, RMS with the
global prior), and gives the trained weights back."""

import math

import numpy as np
import pytest
import tensorflow as tf

from rnn_lm import adaptation, evaluation
from tests.helpers import make_model

EOS = 1


def stream(n=40, seed=0, vocab=7):
    ids = np.random.default_rng(seed).integers(1, vocab, n).astype(np.int32)
    ids[::6] = EOS
    return ids


def features64(model, ids):
    """(h [n, H], log p_model [n, V]) of the stream <eos> ids[:-1] -> ids, one call from h_(0) = 0, float64."""
    inputs = np.concatenate([[EOS], ids[:-1]])
    h, _ = model.features(tf.constant(inputs[None]))
    log_p = tf.nn.log_softmax(tf.cast(model.output_logits(h)[0], tf.float64)).numpy()
    return h[0].numpy().astype(np.float64), log_p


def numpy_cache_nll(model, ids, size, theta, lam):
    """-log p of each token under the cache mixture, as the paper writes it, one token after another."""
    h, log_p = features64(model, ids)
    nll = []
    for t in range(len(ids)):
        p = np.exp(log_p[t])
        entries = range(max(0, t - size), t)
        if entries:
            scores = np.array([theta * h[t] @ h[i] for i in entries])
            a = np.exp(scores - scores.max())
            a /= a.sum()
            p_cache = np.zeros_like(p)
            for weight, i in zip(a, entries):
                p_cache[ids[i]] += weight  # entry i: h_i and the word that followed it, ids[i]
            p = (1 - lam) * p + lam * p_cache
            assert math.isclose(p.sum(), 1.0, rel_tol=1e-9)
        nll.append(-math.log(p[ids[t]]))
    return np.array(nll)


def test_the_cache_distribution_sums_to_one_and_matches_numpy_at_a_step():
    model = make_model(seed=1, hidden_size=6)
    ids = stream(12)
    h, log_p = features64(model, ids)
    t, theta, lam = 9, 0.7, 0.3
    keys = tf.constant(h[None, :t], tf.float32)
    a, has = adaptation.cache_attention(tf.constant(h[None, t:t + 1], tf.float32), keys,
                                        tf.ones([1, 1, t], tf.bool), theta)
    mixed = adaptation.cache_distribution(tf.constant(log_p[None, t:t + 1], tf.float32), a, has,
                                          tf.constant(ids[None, :t]), lam).numpy()[0, 0]
    assert mixed.sum() == pytest.approx(1.0, abs=1e-6)
    scores = theta * h[:t] @ h[t]
    weights = np.exp(scores - scores.max()) / np.exp(scores - scores.max()).sum()
    want = (1 - lam) * np.exp(log_p[t]) + lam * np.bincount(ids[:t], weights, minlength=len(mixed))
    np.testing.assert_allclose(mixed, want, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("num_steps", [3, 7])
def test_the_cache_evaluator_equals_the_transcription_over_a_windowed_stream(num_steps):
    """Windows shorter and longer than the cache (4 entries): the cache is carried across windows."""
    model = make_model(seed=2, hidden_size=6)
    ids = stream(40, seed=3)
    got = adaptation.CacheEvaluator(model, 1, num_steps, EOS, size=4, theta=0.5, lam=0.25).mean_cross_entropy(ids)
    assert got == pytest.approx(numpy_cache_nll(model, ids, 4, 0.5, 0.25).mean(), rel=1e-5)
    plain = evaluation.Evaluator(model, 1, num_steps, EOS).mean_cross_entropy(ids)
    no_cache = adaptation.CacheEvaluator(model, 1, num_steps, EOS, size=4, theta=0.5, lam=0.0)
    assert no_cache.mean_cross_entropy(ids) == pytest.approx(plain, rel=1e-6)


def numpy_cache_mixture(h, ids, nll_model, size, theta, lam):
    """-log p of each token: p_model = exp(-nll_model) mixed with the cache over the states ``h`` [n, H]
    (entry i: h_i and the word that followed it, ids[i]), one token after another, float64."""
    nll = []
    for t in range(len(ids)):
        p = math.exp(-nll_model[t])
        entries = np.arange(max(0, t - size), t)
        if len(entries):
            scores = theta * h[entries] @ h[t]
            a = np.exp(scores - scores.max())
            p = (1 - lam) * p + lam * a[ids[entries] == ids[t]].sum() / a.sum()
        nll.append(-math.log(p))
    return np.array(nll)


@pytest.mark.parametrize("batch_size", [1, 2])
def test_a_cache_grid_scores_every_setting_in_one_pass(batch_size):
    """Two sizes x two thetas at once, each with two lambdas, against the transcription (two streams:
    each its own cache, the second starting empty)."""
    model = make_model(seed=5, hidden_size=6)
    ids = stream(40, seed=6)
    grid = adaptation.CacheEvaluator(model, batch_size, 6, EOS, size=[2, 4], theta=[0.5, 1.5], lam=0.0)
    scored = grid.scored_tokens(ids)
    assert [s for s in grid.cache.settings] == [(2, 0.5), (2, 1.5), (4, 0.5), (4, 1.5)]
    rows = np.array_split(np.arange(len(ids)), batch_size)
    for k, (size, theta) in enumerate(grid.cache.settings):
        for lam in (0.1, 0.4):
            want = np.concatenate([numpy_cache_nll(model, ids[r], size, theta, lam) if i == 0 else
                                   cache_nll_after(model, ids, r, size, theta, lam) for i, r in enumerate(rows)])
            np.testing.assert_allclose(scored.mixed(k, lam), want, rtol=1e-5)


def cache_nll_after(model, ids, rows, size, theta, lam):
    """The transcription for a stream of ids[rows] that starts from the zero state and an empty cache
    with ids[rows[0] - 1] as its first input (evaluation.eval_windows' later rows)."""
    inputs = ids[rows - 1]
    h, _ = model.features(tf.constant(inputs[None]))
    log_p = tf.nn.log_softmax(tf.cast(model.output_logits(h)[0], tf.float64)).numpy()
    targets = ids[rows]
    return numpy_cache_mixture(h[0].numpy().astype(np.float64), targets, -log_p[np.arange(len(rows)), targets],
                               size, theta, lam)


def static_nll(model, ids):

    _, log_p = features64(model, ids)
    return -log_p[np.arange(len(ids)), ids]


def test_dynamic_evaluation_scores_before_it_learns():
    """The first segment scores as static evaluation does; a token's score does not change when the
    tokens after it do (so nothing was learnt from it before it was scored); the weights come back."""
    model = make_model(seed=3, hidden_size=6)
    before = [v.numpy().copy() for v in model.trainable_variables]
    ids = stream(30, seed=4)
    dynamic = adaptation.DynamicEvaluator(model, segment=5, start_id=EOS, lr=0.5)
    nll = dynamic.token_nll(ids)
    assert len(nll) == len(ids)
    np.testing.assert_allclose(nll[:5], static_nll(model, ids)[:5], rtol=1e-5)
    assert np.abs(nll[5:] - static_nll(model, ids)[5:]).max() > 1e-3  # it did adapt
    for k in (7, 12):  # the middle and the start of a segment
        changed = ids.copy()
        changed[k + 1:] = np.where(changed[k + 1:] == 2, 3, 2)
        np.testing.assert_allclose(dynamic.token_nll(changed)[:k + 1], nll[:k + 1], rtol=1e-6)
    for v, b in zip(model.trainable_variables, before):
        np.testing.assert_array_equal(v.numpy(), b)


@pytest.mark.parametrize("method, decay", [("sgd", 0.0), ("sgd", 0.1), ("rms", 0.0), ("rms", 0.02)])
def test_dynamic_evaluation_updates_by_the_rule(method, decay):
    """Three segments: each scored with the weights that the rule, written out here in float64, gives
    after the segments before it (the gradient of each segment's mean loss, the state carried)."""
    model = make_model(seed=4, hidden_size=6, embedding_size=0)  # one-hot: every gradient is dense
    ids = stream(15, seed=5)
    lr, segment = 0.3, 5
    theta0 = [v.numpy().astype(np.float64) for v in model.trainable_variables]
    # Each variable's statistics on its own scale, so that the decay's one normalising number (the mean
    # over the variables of each one's mean sqrt(MS), as Krause et al.'s code has it) shows.
    ms = [np.random.default_rng(i).uniform(0.1, 2.0, t.shape) * 4.0 ** i for i, t in enumerate(theta0)]
    nll = adaptation.DynamicEvaluator(model, segment, EOS, lr, method, decay,
                                      ms=[tf.constant(m, tf.float32) for m in ms]).token_nll(ids)
    if method == "sgd":
        scale, pull = [1.0] * len(ms), [decay] * len(ms)
    else:
        scale = [1 / (np.sqrt(m) + adaptation.RMS_EPSILON) for m in ms]
        mean_root = np.mean([np.sqrt(m).mean() for m in ms])
        pull = [decay * np.minimum(np.sqrt(m) / mean_root, 1 / decay) if decay else 0.0 for m in ms]
    inputs = np.concatenate([[EOS], ids[:-1]])
    theta, state, want = [t.copy() for t in theta0], None, []
    for s in range(3):
        for v, t in zip(model.trainable_variables, theta):
            v.assign(t)
        part = slice(s * segment, (s + 1) * segment)
        with tf.GradientTape() as tape:
            logits, state = model(tf.constant(inputs[None, part]), state)
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(ids[None, part], logits))
        want.extend(-tf.nn.log_softmax(tf.cast(logits[0], tf.float64)).numpy()[np.arange(segment), ids[part]])
        grads = [g.numpy().astype(np.float64) for g in tape.gradient(loss, model.trainable_variables)]
        theta = [t - lr * g * c + p * (t0 - t) for t, g, c, p, t0 in zip(theta, grads, scale, pull, theta0)]
    np.testing.assert_allclose(nll, want, rtol=2e-4)


def test_gradient_statistics_are_the_mean_squared_segment_gradient():
    """Against a loop over the same windows (2 streams of segments of 4, the state carried) in eager mode."""
    model = make_model(seed=6, hidden_size=6)
    ids = stream(33, seed=7)
    got = adaptation.gradient_statistics(model, ids, 4, EOS, batch_size=2)
    sums, n, state = None, 0, None
    for inputs, targets, weights in adaptation.segments(ids, 4, EOS, 2):
        state = state or model.zero_state(2)
        with tf.GradientTape() as tape:
            logits, state = model(inputs, state)
            nll = tf.nn.sparse_softmax_cross_entropy_with_logits(targets, logits) * weights
            loss = tf.reduce_sum(nll) / tf.reduce_sum(weights)
        squares = [tf.square(tf.convert_to_tensor(g)).numpy() for g in tape.gradient(loss, model.trainable_variables)]
        sums = squares if sums is None else [a + b for a, b in zip(sums, squares)]
        n += 1
    assert n > 2  # several segments, the state carried across them
    for g, want in zip(got, sums):
        np.testing.assert_allclose(g.numpy(), want / n, rtol=1e-5, atol=1e-12)


def test_dynamic_evaluation_with_a_cache_mixes_the_adapting_model_and_its_states():
    """SGD on three segments written out in float64 (as above), the adapted model's states h kept, and
    the cache over them mixed in by the transcription; the model's own scores are dynamic evaluation's
    without a cache (the cache does not change how the weights move); the weights come back."""
    model = make_model(seed=4, hidden_size=6, embedding_size=0)
    ids = stream(15, seed=5)
    lr, segment, size, theta, lam = 0.3, 5, 4, 0.7, 0.3
    theta0 = [v.numpy() for v in model.trainable_variables]
    grid = adaptation.CacheGrid(6, [size], [theta])
    dynamic = adaptation.DynamicEvaluator(model, segment, EOS, lr, cache=grid, lam=lam)
    scored = dynamic.scored_tokens(ids)
    np.testing.assert_allclose(scored.nll, adaptation.DynamicEvaluator(model, segment, EOS, lr).token_nll(ids),
                               rtol=1e-6)
    inputs = np.concatenate([[EOS], ids[:-1]])
    state, hs, nll_model = None, [], []
    for s in range(3):
        part = slice(s * segment, (s + 1) * segment)
        with tf.GradientTape() as tape:
            h, state = model.features(tf.constant(inputs[None, part]), state)
            logits = model.output_logits(h)
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(ids[None, part], logits))
        hs.append(h[0].numpy().astype(np.float64))
        nll_model.extend(-tf.nn.log_softmax(tf.cast(logits[0], tf.float64)).numpy()[np.arange(segment), ids[part]])
        for v, g in zip(model.trainable_variables, tape.gradient(loss, model.trainable_variables)):
            v.assign_sub(lr * g)
    want = numpy_cache_mixture(np.concatenate(hs), ids, np.array(nll_model), size, theta, lam)
    np.testing.assert_allclose(scored.mixed(0, lam), want, rtol=2e-4)
    assert np.abs(want - np.array(nll_model)).max() > 1e-3  # the cache did change the scores
    for v, t0 in zip(model.trainable_variables, theta0):
        v.assign(t0)
    changed = ids.copy()
    changed[8:] = np.where(changed[8:] == 2, 3, 2)
    np.testing.assert_allclose(dynamic.token_nll(changed)[:8], dynamic.token_nll(ids)[:8], rtol=1e-6)
    for v, t0 in zip(model.trainable_variables, theta0):
        np.testing.assert_array_equal(v.numpy(), t0)

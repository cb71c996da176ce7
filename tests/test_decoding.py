"""Decoding (rnn_lm.decoding) against NumPy: the filtered sampling distributions (chi-squared on
sample frequencies), top-k 1 and beam width 1 equal to greedy, beam search against brute-force
enumeration of every hypothesis and the length penalty's formula, outputs as wide as the tokens
produced, and XLA decoding equal to the plain graph."""

import itertools
import types

import numpy as np
import pytest
import tensorflow as tf

from rnn_lm import decoding
from tests.helpers import make_model

EOS = 0


class TableModel:
    """A stand-in for RNNLanguageModel whose logits are a fixed table: logits = table[last token]."""

    def __init__(self, table):
        self.table = tf.constant(table, tf.float32)
        self.config = types.SimpleNamespace(vocab_size=len(table[0]))

    def fuse(self):
        return []

    def zero_state(self, batch_size):
        return [tf.zeros([batch_size, 1])]

    def step(self, ids, state, fused=None):
        return tf.gather(self.table, ids), state


def log_softmax(x):
    x = np.asarray(x, np.float64)
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def np_filtered(logits, temperature, top_k, top_p):
    """The distribution filter_logits samples from, written directly: [V] -> probabilities [V]."""
    p = np.exp(log_softmax(np.asarray(logits) / temperature))
    order = np.argsort(-p)
    keep = np.zeros(len(p), bool)
    keep[order[:top_k or len(p)]] = True
    p = np.where(keep, p, 0.0) / p[keep].sum()
    if top_p < 1:
        mass_before = np.cumsum(p[order]) - p[order]
        keep[order[1:][mass_before[1:] >= top_p]] = False
    return np.where(keep, p, 0.0) / p[keep].sum()


def prompts(batch=3, vocab=7, seed=0):
    """Right-padded prompts of lengths 1..batch, each starting from <eos>."""
    rng = np.random.default_rng(seed)
    ids = np.zeros([batch, batch], np.int32)
    ids[:, 0] = EOS
    for b in range(batch):
        ids[b, 1:b + 1] = rng.integers(1, vocab, b)
    return tf.constant(ids), tf.constant(np.arange(1, batch + 1, dtype=np.int32))


@pytest.fixture(scope="module")
def lstm():
    return make_model(vocab_size=7, hidden_size=8, embedding_size=5)


# Sampling.

FIXED = np.random.default_rng(0).normal(0, 1.5, 10)  # one logit table for every step


def test_filters_off_is_plain_temperature():
    logits = tf.constant(np.random.default_rng(0).normal(size=[4, 9]), tf.float32)
    for temperature in (1.0, 0.6):  # bit for bit: sampling without the filters is unchanged
        np.testing.assert_array_equal(decoding.filter_logits(logits, temperature), logits / temperature)


@pytest.mark.parametrize("temperature, top_k, top_p, kept", [
    (1.0, 0, 1.0, 10), (0.7, 3, 1.0, 3), (1.0, 0, 0.8, None), (1.5, 5, 0.6, None), (1.0, 4, 0.0, 1)])
def test_sample_frequencies_match_the_filtered_distribution(temperature, top_k, top_p, kept):
    n = 40000
    expected = np_filtered(FIXED, temperature, top_k, top_p)
    if kept is None:  # a top-p case that cuts the distribution somewhere inside
        assert 1 < np.count_nonzero(expected) < (top_k or 10)
    else:
        assert np.count_nonzero(expected) == kept
    model = TableModel(np.tile(FIXED, [10, 1]))
    ids, _ = decoding.sample(model, tf.zeros([n, 1], tf.int32), tf.ones([n], tf.int32), 1,
                             temperature, 7, -1, top_k=top_k, top_p=top_p)
    counts = np.bincount(ids.numpy()[:, 0], minlength=10)
    assert np.all(counts[expected == 0] == 0), counts  # excluded tokens never appear
    live = expected > 0
    chi2 = ((counts[live] - n * expected[live]) ** 2 / (n * expected[live])).sum()
    df = live.sum() - 1
    assert chi2 <= df + 5 * np.sqrt(2 * df), (chi2, counts / n, expected)


def test_top_p_keeps_at_least_the_top_token():
    logits = tf.constant(np.random.default_rng(1).normal(size=[6, 8]), tf.float32)
    for top_p in (0.0, 1e-6):
        kept = np.isfinite(decoding.filter_logits(logits, 1.0, 0, top_p).numpy())
        np.testing.assert_array_equal(kept, np.eye(8, dtype=bool)[np.argmax(logits, -1)])


def test_top_k_1_is_greedy(lstm):
    ids, lengths = prompts()
    greedy = decoding.sample(lstm, ids, lengths, 8, 0.0, 0, EOS)
    for seed in (0, 1):
        top1 = decoding.sample(lstm, ids, lengths, 8, 1.3, seed, EOS, top_k=1)
        np.testing.assert_array_equal(top1[0], greedy[0])
        np.testing.assert_array_equal(top1[1], greedy[1])


def test_sampling_is_reproducible_with_a_seed(lstm):
    ids, lengths = tf.zeros([16, 1], tf.int32), tf.ones([16], tf.int32)
    run = lambda seed: decoding.sample(lstm, ids, lengths, 6, 1.0, seed, EOS, top_k=5, top_p=0.95)[0].numpy()
    np.testing.assert_array_equal(run(5), run(5))
    assert np.any(run(5) != run(6))


def test_choosing_token_by_token_draws_what_sample_draws(lstm):
    ids, lengths = prompts()
    expected, n = decoding.sample(lstm, ids, lengths, 6, 0.9, 3, EOS, top_k=4, top_p=0.9)
    logits, state = decoding.prime(lstm, ids, lengths)
    assert expected.shape[1] == max(n.numpy()) <= 6  # as wide as the steps taken
    for t in range(expected.shape[1]):
        token = decoding.choose(logits, 0.9, 4, 0.9, tf.constant([3, t], tf.int64))
        live = t < n.numpy()  # sample pads with <eos> after a row's end
        np.testing.assert_array_equal(token.numpy()[live], expected.numpy()[live, t])
        logits, state = lstm.step(token, state)


def test_sampling_in_pieces_draws_what_one_call_draws(lstm):
    ids, lengths = prompts()
    expected, n = decoding.sample(lstm, ids, lengths, 9, 1.2, 4, EOS, top_k=5)
    for piece in (1, 2, 4):
        logits, state = decoding.prime(lstm, ids, lengths)
        flags, t, tokens = decoding.sampling_start(lengths), 0, []
        while t < 9 and not np.all(flags[0]):
            t, logits, state, flags, drawn = decoding.sample_steps(
                lstm, logits, state, flags, t, min(t + piece, 9), 1.2, 4, EOS, top_k=5)
            t = int(t)
            tokens.append(drawn.numpy())
        np.testing.assert_array_equal(np.concatenate(tokens, axis=1), expected)
        np.testing.assert_array_equal(flags[2], n)


def test_tensor_arguments_inside_a_tf_function(lstm):
    ids, lengths = prompts()
    scalar = lambda dtype: tf.TensorSpec([], dtype)

    @tf.function(input_signature=[scalar(tf.float32), scalar(tf.int32), scalar(tf.float32), scalar(tf.int64),
                                  scalar(tf.float32)])
    def run(temperature, top_k, top_p, seed, length_penalty):
        return (decoding.sample(lstm, ids, lengths, 7, temperature, seed, EOS, top_k, top_p),
                decoding.beam_search(lstm, ids, lengths, 4, 3, EOS, length_penalty))

    for args in [(0.8, 3, 0.9, 4, 0.0), (1.0, 0, 1.0, 4, 1.0), (0.0, 2, 0.5, 9, 0.5), (1.0, 0, 0.5, 4, 0.0)]:
        (graph_ids, graph_lengths), beams = run(*[tf.constant(a, s.dtype) for a, s in
                                                  zip(args, run.input_signature)])
        t, k, p, seed, alpha = args
        eager_ids, eager_lengths = decoding.sample(lstm, ids, lengths, 7, t, seed, EOS, k, p)
        np.testing.assert_array_equal(graph_ids, eager_ids)
        np.testing.assert_array_equal(graph_lengths, eager_lengths)
        for got, want in zip(beams, decoding.beam_search(lstm, ids, lengths, 4, 3, EOS, alpha)):
            np.testing.assert_allclose(got, want, rtol=1e-6)
    assert len(run._list_all_concrete_functions()) == 1  # one trace for all values


# Beam search.


def brute_force(log_probs, vocab, max_tokens, alpha):
    """Every hypothesis (ends at <eos>, or has max_tokens tokens), best first: [(score, tokens)].

    log_probs(prefix) -> log p(. | prompt, prefix) [V]; score = sum log p / ((5 + n) / 6) ** alpha.
    """
    hypotheses = {seq[:seq.index(EOS) + 1] if EOS in seq else seq
                  for seq in itertools.product(range(vocab), repeat=max_tokens)}
    scored = [(sum(log_probs(h[:i])[h[i]] for i in range(len(h))) / ((5 + len(h)) / 6) ** alpha, h)
              for h in hypotheses]
    return sorted(scored, reverse=True)


def table_log_probs(table, prompt):
    return lambda prefix: log_softmax(table[(tuple(prompt) + prefix)[-1]])


def model_log_probs(model, prompt, vocab, max_tokens):
    """log p(. | prompt, prefix) of the model's own full-sequence call, for every prefix."""
    seqs = list(itertools.product(range(vocab), repeat=max_tokens))
    logits, _ = model(tf.constant([list(prompt) + list(s) for s in seqs]))
    lp = log_softmax(logits.numpy()[:, len(prompt) - 1:])  # [V^T, T+1, V]
    rows = {s: lp[i] for i, s in enumerate(seqs)}
    return lambda prefix: rows[prefix + (0,) * (max_tokens - len(prefix))][len(prefix)]


def assert_beams_match(ids, lengths, scores, expected, max_tokens):
    """One prompt's beams against brute force's best len(scores) hypotheses."""
    expected = expected[:len(scores)]
    np.testing.assert_allclose(scores, [s for s, _ in expected], rtol=1e-5)
    np.testing.assert_array_equal(lengths, [len(h) for _, h in expected])
    width = np.shape(ids)[-1]  # the steps taken by the whole batch
    assert max(len(h) for _, h in expected) <= width <= max_tokens
    np.testing.assert_array_equal(ids, [list(h) + [EOS] * (width - len(h)) for _, h in expected])


def test_beam_width_1_is_greedy(lstm):
    ids, lengths = prompts(4)
    greedy_ids, greedy_lengths = decoding.sample(lstm, ids, lengths, 9, 0.0, 0, EOS)
    beam_ids, beam_lengths, _ = decoding.beam_search(lstm, ids, lengths, 9, 1, EOS)
    np.testing.assert_array_equal(beam_ids[:, 0], greedy_ids)
    np.testing.assert_array_equal(beam_lengths[:, 0], greedy_lengths)


# After the start <eos>: a (0.5) looks best, but b -> c -> <eos> (0.4 * 0.85 * 0.9) beats a -> <eos> (0.5 * 0.32).
PEAKED = np.log([[0.1, 0.5, 0.4, 1e-3],
                 [0.32, 0.28, 0.2, 0.2],
                 [0.05, 0.05, 0.05, 0.85],
                 [0.9, 0.04, 0.03, 0.03]])


def test_beam_search_finds_the_best_sequence_where_greedy_does_not():
    model, prompt = TableModel(PEAKED), tf.constant([[EOS]])
    expected = brute_force(table_log_probs(PEAKED, [EOS]), 4, 3, 0.0)
    assert expected[0][1] == (2, 3, EOS)
    greedy, greedy_length = decoding.sample(model, prompt, tf.constant([1]), 3, 0.0, 0, EOS)
    assert tuple(greedy[0, :greedy_length[0]].numpy()) == (1, EOS)
    ids, lengths, scores = decoding.beam_search(model, prompt, tf.constant([1]), 3, 2, EOS)
    assert_beams_match(ids[0], lengths[0], scores[0], expected, 3)


@pytest.mark.parametrize("alpha", [0.0, 1.5])
def test_a_wide_beam_ranks_like_brute_force(alpha):
    """K = V^(T-1) keeps every prefix, so the beams are exactly the K best hypotheses, in order."""
    vocab, max_tokens = 4, 3
    model = make_model(seed=2, vocab_size=vocab, hidden_size=8, embedding_size=5)
    ids, lengths = prompts(2, vocab, seed=1)  # prompts of lengths 1 and 2: the LSTM's state matters
    k = vocab ** (max_tokens - 1)
    beam_ids, beam_lengths, scores = decoding.beam_search(model, ids, lengths, max_tokens, k, EOS, alpha)
    for b in range(2):
        prompt = ids[b, :lengths[b]].numpy()
        expected = brute_force(model_log_probs(model, prompt, vocab, max_tokens), vocab, max_tokens, alpha)
        assert len({len(h) for _, h in expected[:k]}) > 1  # hypotheses of several lengths compete
        assert_beams_match(beam_ids[b], beam_lengths[b], scores[b], expected, max_tokens)
        assert np.all(np.diff(scores[b]) <= 0)  # best first


# <eos> at once (0.5) beats a -> <eos> (0.45 * 0.9) by the plain sum, not with ((5 + n) / 6) ** 2.
EARLY_EOS = np.log([[0.5, 0.45, 0.05], [0.9, 0.05, 0.05], [0.9, 0.05, 0.05]])


def test_the_length_penalty_changes_the_ranking_as_the_formula_says():
    model, prompt = TableModel(EARLY_EOS), tf.constant([[EOS]])
    short, long = np.log(0.5), np.log(0.45 * 0.9)
    for alpha, best, score in [(0.0, (EOS,), short), (2.0, (1, EOS), long / (7 / 6) ** 2)]:
        ids, lengths, scores = decoding.beam_search(model, prompt, tf.constant([1]), 4, 3, EOS, alpha)
        assert tuple(ids[0, 0, :lengths[0, 0]].numpy()) == best
        np.testing.assert_allclose(scores[0, 0], score, rtol=1e-6)
        # A beam of 3 is not exhaustive: only its best is sure to be brute force's best.
        expected = brute_force(table_log_probs(EARLY_EOS, [EOS]), 3, 4, alpha)
        assert_beams_match(ids[0, :1], lengths[0, :1], scores[0, :1], expected, 4)


def test_xla_decoding_gives_the_same_logits_and_tokens(lstm):
    """The one-token model call compiled with XLA (``--jit_compile``) against the plain graph.

    XLA may fuse and reorder float32 arithmetic: logits agree to 1e-5, and the
    tokens (greedy, seeded sampling, beam search) are the same.
    """
    ids, lengths = prompts(batch=4)
    xla = decoding.xla_step(lstm)
    plain_logits, plain_state = tf.function(lambda: decoding.prime(lstm, ids, lengths))()
    xla_logits, xla_state = tf.function(lambda: decoding.prime(lstm, ids, lengths, step=xla))()
    np.testing.assert_allclose(xla_logits.numpy(), plain_logits.numpy(), atol=1e-5)
    for a, b in zip(tf.nest.flatten(xla_state), tf.nest.flatten(plain_state)):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5)
    for temperature, seed in ((0.0, 0), (1.0, 7)):
        run = lambda step: tf.function(lambda: decoding.sample(
            lstm, ids, lengths, 12, temperature, seed, EOS, top_k=5, step=step))()
        (want, want_n), (got, got_n) = run(None), run(xla)
        np.testing.assert_array_equal(got.numpy(), want.numpy())
        np.testing.assert_array_equal(got_n.numpy(), want_n.numpy())
    beam = lambda step: tf.function(lambda: decoding.beam_search(lstm, ids, lengths, 6, 3, EOS, step=step))()
    (want, _, want_scores), (got, _, got_scores) = beam(None), beam(xla)
    np.testing.assert_array_equal(got.numpy(), want.numpy())
    np.testing.assert_allclose(got_scores.numpy(), want_scores.numpy(), rtol=1e-5)


# Output width: the steps taken, not max_tokens.

# Greedy from <eos>: 1, 2, <eos>; from 2: <eos> at once.
QUICK_EOS = np.log([[0.05, 0.8, 0.1, 0.05],
                    [0.05, 0.05, 0.85, 0.05],
                    [0.9, 0.04, 0.03, 0.03],
                    [0.9, 0.04, 0.03, 0.03]])


def test_outputs_are_as_wide_as_the_tokens_produced_not_max_tokens():
    model = TableModel(QUICK_EOS)
    prompt, lengths = tf.constant([[EOS, 0], [EOS, 2]]), tf.constant([1, 2])
    huge = 10 ** 6  # padded to max_tokens, the ids alone would be 8 MB here, 4 GB a row at 10 ** 9
    ids, n = decoding.sample(model, prompt, lengths, huge, 0.0, 0, EOS)
    np.testing.assert_array_equal(n, [3, 1])
    np.testing.assert_array_equal(ids, [[1, 2, EOS], [EOS, EOS, EOS]])
    # The same through a graph with max_tokens a tensor (the Generator and SavedModel path).
    graph = tf.function(lambda m: decoding.sample(model, prompt, lengths, m, 1.0, 3, EOS, top_k=1))
    ids, n = graph(tf.constant(huge))
    assert ids.shape == (2, 3) and n.numpy().tolist() == [3, 1]
    beam_ids, beam_lengths, _ = decoding.beam_search(model, prompt, lengths, huge, 2, EOS)
    assert beam_ids.shape[:2] == (2, 2)
    assert beam_ids.shape[2] == int(tf.reduce_max(beam_lengths)) < 10
    np.testing.assert_array_equal(beam_ids[0, 0, :3], [1, 2, EOS])
    np.testing.assert_array_equal(beam_ids[1, 0, :1], [EOS])
    # A model that never emits <eos> stops at max_tokens, and the width is max_tokens.
    never = TableModel(np.log([[1e-6, 0.5, 0.5], [1e-6, 0.5, 0.5], [1e-6, 0.5, 0.5]]))
    ids, n = decoding.sample(never, prompt[:, :1], tf.constant([1, 1]), 7, 1.0, 0, EOS)
    assert ids.shape == (2, 7) and n.numpy().tolist() == [7, 7]
    assert decoding.beam_search(never, prompt[:, :1], tf.constant([1, 1]), 5, 3, EOS)[0].shape == (2, 3, 5)


# From <eos>: <eos> again (0.6) or the word 1 (0.4); after 1: <eos> (0.9).
BLANK_LINES = np.log([[0.6, 0.4], [0.9, 0.1]])


def test_an_unprompted_row_ends_at_eos_only_after_a_word():
    """A model that most often follows <eos> with <eos> (blank lines) still gives text from an empty
    prompt: the leading <eos> draws are kept and the row goes on; a prompted row ends at once."""
    model, batch = TableModel(BLANK_LINES), 256
    prompt = tf.constant([[EOS, 1]] * batch)
    lengths = tf.constant([1] * (batch - 1) + [2])  # every row unprompted but the last
    ids, n = decoding.sample(model, prompt, lengths, 50, 1.0, 5, EOS)
    ids, n = ids.numpy(), n.numpy()
    leading = []
    for row, k in zip(ids[:-1], n[:-1]):
        words = np.flatnonzero(row[:k] != EOS)
        assert len(words) and row[k - 1] == EOS and k <= 50, row[:k]
        assert np.all(row[words[-1] + 1:k] == EOS) and np.all(row[k:] == EOS)
        leading.append(words[0])
    # Leading <eos> draws follow the geometric law of 0.6: P(none) = 0.4, P(one) = 0.24.
    counts = np.bincount(leading, minlength=3) / len(leading)
    np.testing.assert_allclose(counts[:2], [0.4, 0.24], atol=0.1)
    assert ids[-1, 0] in (EOS, 1) and (ids[-1, 0] != EOS or n[-1] == 1)  # prompted: <eos> ends it

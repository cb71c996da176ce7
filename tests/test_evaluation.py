"""Scoring text (rnn_lm.evaluation): the Evaluator's corpus perplexity against one full-sequence call
of the model over the whole stream (every token scored exactly once, however it is windowed), sentence
scores against one call per sentence in float64 (from the zero state and from a start state), a
sentence-mode model's sentence scores against its stream score, the boundary start state against a
token-by-token loop, and the add-one unigram baseline by hand."""

import math

import numpy as np
import pytest
import tensorflow as tf

from rnn_lm import checkpoints
from rnn_lm import evaluation
from rnn_lm.data import corpus as corpus_lib
from rnn_lm.data.tokenizers import EOS, UNK, WordTokenizer
from rnn_lm.data.vocab import Vocabulary
from tests.helpers import make_model, sentence_log_prob, tiny_config, train_run, write_corpus


def test_evaluator_scores_every_token_exactly(tmp_path):
    """One stream: perplexity equals one pass over the whole text, however it is windowed.

    With several streams each row starts from h_(0) = 0, so the reference is
    each row's own pass, from the tokens of its warm-up on.
    """
    data = write_corpus(tmp_path / "data", (30, 5, 5))
    train_run(tiny_config(data, max_steps=5), tmp_path / "run")
    config, vocab, model = checkpoints.load_model(str(tmp_path / "run"))
    ids = corpus_lib.load_corpus(config.data, vocab).valid
    stream = np.concatenate([[vocab.eos_id], ids])

    def nll(row):  # -log p of row[1:] given row[:-1], from h_(0) = 0, in one call
        logits, _ = model(tf.constant(row[None, :-1]))
        log_p = tf.nn.log_softmax(tf.cast(logits[0], tf.float64)).numpy()
        return -log_p[np.arange(len(row) - 1), row[1:]]

    reference = math.exp(nll(stream).mean())
    for num_steps in (7, 64):
        got = evaluation.Evaluator(model, 1, num_steps, vocab.eos_id).perplexity(ids)
        np.testing.assert_allclose(got, reference, rtol=1e-5)
    rows = np.array_split(np.arange(len(ids)), 3)  # 65 targets -> rows of 22, 22, 21
    per_row = np.concatenate([nll(stream[r[0]:r[-1] + 2]) for r in rows])
    got = evaluation.Evaluator(model, 3, 5, vocab.eos_id).perplexity(ids)
    np.testing.assert_allclose(got, math.exp(per_row.mean()), rtol=1e-5)
    # A warm-up: each row reads up to 4 tokens before its part, unscored, from h_(0) = 0.
    warm = np.concatenate([nll(stream[max(0, r[0] - 4):r[-1] + 2])[-len(r):] for r in rows])
    got = evaluation.Evaluator(model, 3, 5, vocab.eos_id, warmup=4).perplexity(ids)
    np.testing.assert_allclose(got, math.exp(warm.mean()), rtol=1e-5)
    # A warm-up as long as the text: every row carries the whole stream before it, as batch 1 does.
    got = evaluation.Evaluator(model, 3, 5, vocab.eos_id, warmup=len(ids)).perplexity(ids)
    np.testing.assert_allclose(got, reference, rtol=1e-5)


def test_sentence_scores_equal_one_call_per_sentence():
    """Lines of several lengths (the empty one and an unknown word included), padded into batches of 2."""
    vocab = Vocabulary([UNK, EOS, "a", "b", "c", "d", "e"])
    model = make_model(seed=4)
    lines = ["a b c", "", "e d zebra a a b", "c", "b a"]
    scorer = evaluation.SentenceScorer(model, vocab, WordTokenizer(), batch_size=2)
    rows = list(scorer.score(lines))
    assert [r[0] for r in rows] == lines
    assert [r[2] for r in rows] == [4, 1, 7, 2, 3]  # the words and <eos>
    assert [r[3] for r in rows] == [0, 0, 1, 0, 0]  # zebra
    for line, log_prob, num_tokens, _ in rows:
        expected, n = sentence_log_prob(model, vocab, line)
        assert num_tokens == n
        assert log_prob == pytest.approx(expected, rel=1e-5), line


LINES = ["a b c", "", "e d zebra a a b", "c", "b a", "d d e a"]


def stream_of(vocab, lines):
    """<eos> line <eos> line ... <eos>: the ids of a stream that holds ``lines``."""
    tokenizer = WordTokenizer()
    return np.concatenate([[vocab.eos_id]] + [vocab.encode(tokenizer.tokenize(line)) for line in lines])


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_a_sentence_mode_models_sentence_scores_add_up_to_its_stream_score(cell):
    """reset_state=eos: the lines scored one by one (batched, padded) total the stream's log-probability
    of the same lines, whatever state the stream carried in."""
    vocab = Vocabulary([UNK, EOS, "a", "b", "c", "d", "e"])
    model = make_model(seed=5, cell=cell, reset_state="eos")
    total = sum(r[1] for r in evaluation.SentenceScorer(model, vocab, WordTokenizer(), batch_size=4).score(LINES))
    stream = stream_of(vocab, LINES)
    carried_in = model(tf.constant([[3, 4, 5]]))[1]
    logits, _ = model(tf.constant(stream[None, :-1]), carried_in)
    log_p = tf.nn.log_softmax(tf.cast(logits[0], tf.float64)).numpy()
    assert total == pytest.approx(log_p[np.arange(len(stream) - 1), stream[1:]].sum(), rel=2e-6)


def test_boundary_state_is_the_mean_state_going_into_eos():
    """Against a token-by-token loop in eager mode over the same rows (the first column excluded)."""
    vocab = Vocabulary([UNK, EOS, "a", "b", "c", "d", "e"])
    model = make_model(seed=6, cell="lstm")
    ids = np.tile(stream_of(vocab, LINES), 5)[:90]
    got = evaluation.boundary_state(model, ids, vocab.eos_id, streams=3, max_tokens=80)
    rows = ids[:78].reshape(3, 26)  # 80 // 3 = 26 tokens a row
    state, seen = model.zero_state(3), []
    for t in range(26):
        for b in np.flatnonzero((rows[:, t] == vocab.eos_id) & (t > 0)):
            seen.append([np.concatenate([np.ravel(part[b]) for part in layer]) for layer in state])
        _, state = model.step(tf.constant(rows[:, t]), state)
    assert len(seen) > 5
    for layer, want in zip(got, np.mean(seen, axis=0)):
        np.testing.assert_allclose(np.concatenate([np.ravel(part) for part in layer]), want, rtol=1e-5, atol=1e-6)


def test_sentence_scores_from_a_start_state_equal_one_call_from_it():
    vocab = Vocabulary([UNK, EOS, "a", "b", "c", "d", "e"])
    model = make_model(seed=7, cell="gru")
    start = evaluation.boundary_state(model, np.tile(stream_of(vocab, LINES), 4), vocab.eos_id, streams=2)
    rows = list(evaluation.SentenceScorer(model, vocab, WordTokenizer(), batch_size=4, start=start).score(LINES))
    zero = list(evaluation.SentenceScorer(model, vocab, WordTokenizer(), batch_size=4).score(LINES))
    for (line, log_prob, _, _), (_, from_zero, _, _) in zip(rows, zero):
        ids = stream_of(vocab, [line])
        logits, _ = model(tf.constant(ids[None, :-1]), [tf.nest.map_structure(lambda s: s[None], layer)
                                                         for layer in start])
        log_p = tf.nn.log_softmax(tf.cast(logits[0], tf.float64)).numpy()
        assert log_prob == pytest.approx(log_p[np.arange(len(ids) - 1), ids[1:]].sum(), rel=1e-5), line
        assert log_prob != pytest.approx(from_zero, rel=1e-4), line  # the start state matters


def test_unigram_perplexity_is_the_add_one_model_by_hand():
    # Counts 3, 0, 1 plus one: p = 4/7, 1/7, 2/7.  Targets 0, 2, 2, 1: (4 * 2 * 2 * 1 / 7^4)^(-1/4).
    got = evaluation.unigram_perplexity([3, 0, 1], np.array([0, 2, 2, 1]))
    assert got == pytest.approx((7 ** 4 / 16) ** 0.25, rel=1e-12)


def test_the_learned_start_is_a_minimum_of_the_lines_loss():
    """``learned_start`` on a stream of lines: the lines' loss, each scored on its own by the scorer,
    is lower from it than from zero or the boundary state, and no step of 0.05 along a random direction
    in the state lowers it by more than Adam's last steps move it (a minimum, checked on the loss itself)."""
    vocab = Vocabulary([UNK, EOS, "a", "b", "c", "d", "e"])
    model = make_model(seed=8, cell="lstm")
    ids = np.tile(stream_of(vocab, LINES), 6)
    boundary = evaluation.boundary_state(model, ids, vocab.eos_id, streams=2)
    learned = evaluation.learned_start(model, ids, vocab.eos_id, boundary, epochs=300, lr=0.05, batch_size=8)

    def loss(start):
        return -sum(r[1] for r in evaluation.SentenceScorer(model, vocab, WordTokenizer(), start=start).score(LINES))

    best = loss(learned)
    assert best < loss(boundary) - 0.05 and best < loss(None) - 0.05
    rng = np.random.default_rng(0)
    for _ in range(4):
        direction = tf.nest.map_structure(lambda s: rng.standard_normal(s.shape).astype(np.float32), learned)
        for sign in (1.0, -1.0):
            moved = tf.nest.map_structure(lambda s, d: s + sign * 0.05 * d / np.sqrt(len(LINES)), learned, direction)
            assert loss(moved) > best - 0.01

"""The adaptive softmax (rnn_lm/adaptive.py): its distribution against a float64 NumPy transcription of
Grave et al.'s equations, normalised over the whole vocabulary; the training loss of each token equal to
its log-probability; gradients against finite differences; a model with it trained, scored, sampled and
exported through the binaries; and one-line errors for bad cutoffs."""

import json
import os
import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from rnn_lm import diagnostics
from rnn_lm.adaptive import AdaptiveSoftmax, cluster_bounds, projection_sizes
from rnn_lm.config import ModelConfig
from rnn_lm.errors import RnnLmError
from tests.helpers import TINY, assert_one_line_error, make_model, run, write_corpus

V, CUTOFFS = 30, "6,15"


def log_softmax(x):
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def numpy_log_probs(layer, h):
    """log p(w) for every w, in float64, written from the module docstring's equations."""
    w = {v.name: v.numpy().astype(np.float64) for v in layer.trainable_variables}
    h = h.astype(np.float64)
    head = log_softmax(h @ w["V_head"] + w["b_head"])
    c1 = layer.cutoffs[0]
    out = np.empty(h.shape[:-1] + (layer.vocab_size,))
    out[..., :c1] = head[..., :c1]
    for i, (start, end) in enumerate(cluster_bounds(layer.cutoffs, layer.vocab_size), start=1):
        tail = log_softmax((h @ w[f"P_{i}"]) @ w[f"V_{i}"] + w[f"b_{i}"])
        out[..., start:end] = head[..., c1 + i - 1:c1 + i] + tail
    return out


@pytest.fixture(scope="module")
def model():
    return make_model(vocab_size=V, hidden_size=8, softmax="adaptive", adaptive_cutoffs=CUTOFFS)


def test_the_layers_shapes_follow_the_cutoffs_and_the_factor(model):
    layer = model.adaptive_softmax
    shapes = {v.name: tuple(v.shape) for v in layer.trainable_variables}
    # head: 6 words + 2 cluster tokens; cluster 1: ids 6..14 through 8 / 4 = 2 units; cluster 2: 15..29, 8 / 16 -> 1.
    assert shapes == {"V_head": (8, 8), "b_head": (8,), "P_1": (8, 2), "V_1": (2, 9), "b_1": (9,),
                      "P_2": (8, 1), "V_2": (1, 15), "b_2": (15,)}
    assert projection_sizes(200, 3, 4.0) == [50, 12, 3]
    assert diagnostics.parameter_count(model.config) == sum(int(np.prod(v.shape)) for v in model.trainable_variables)


def test_log_probs_are_normalised_and_match_numpy(model):
    ids = tf.constant(np.random.default_rng(0).integers(0, V, (3, 5)), tf.int32)
    h, _ = model.features(ids)
    log_p, _ = model(ids)  # the model's logits are the adaptive softmax's log-probabilities
    expected = numpy_log_probs(model.adaptive_softmax, h.numpy())
    np.testing.assert_allclose(log_p.numpy(), expected, atol=2e-6)
    np.testing.assert_allclose(np.exp(expected).sum(-1), 1.0, atol=1e-12)
    np.testing.assert_allclose(np.exp(log_p.numpy().astype(np.float64)).sum(-1), 1.0, atol=1e-5)
    # Their softmax is themselves: every reader of logits (sampling, beam search, the cache) gets p.
    np.testing.assert_allclose(tf.nn.log_softmax(log_p).numpy(), log_p.numpy(), atol=1e-6)


def test_each_tokens_loss_is_its_log_prob(model):
    rng = np.random.default_rng(1)
    ids = tf.constant(rng.integers(0, V, (4, 9)), tf.int32)
    targets = np.array([list(range(0, 9)), list(range(9, 18)), list(range(18, 27)), [27, 28, 29, 0, 5, 6, 14, 15, 29]])
    h, _ = model.features(ids)
    nll = model.token_nll(h, tf.constant(targets, tf.int32)).numpy()
    expected = -np.take_along_axis(numpy_log_probs(model.adaptive_softmax, h.numpy()), targets[..., None], -1)[..., 0]
    np.testing.assert_allclose(nll, expected, rtol=1e-5, atol=1e-6)


def float64_layer(seed=0):
    keras.utils.set_random_seed(seed)
    layer = AdaptiveSoftmax(8, V, (6, 15), 4.0, lambda: keras.initializers.RandomUniform(-0.8, 0.8),
                            compute_dtype="float64", dtype="float64")
    for v in layer.trainable_variables:  # biases too, so that no gradient is checked at a zero point only
        v.assign(np.random.default_rng(seed).uniform(-0.8, 0.8, v.shape))
    return layer


def test_gradients_match_finite_differences():
    layer = float64_layer()
    rng = np.random.default_rng(2)
    h = tf.Variable(rng.normal(size=(7, 8)))
    targets = tf.constant([0, 5, 6, 14, 15, 29, 20], tf.int32)  # head, both ends of each cluster
    loss = lambda: tf.reduce_sum(layer.nll(h, targets))
    with tf.GradientTape() as tape:
        value = loss()
    variables = [h] + list(layer.trainable_variables)
    grads = [tf.convert_to_tensor(g).numpy() for g in tape.gradient(value, variables)]
    eps = 1e-6
    for var, grad in zip(variables, grads):
        flat = var.numpy().reshape(-1)
        for k in rng.choice(flat.size, size=min(6, flat.size), replace=False):
            bumped = flat.copy()
            bumped[k] += eps
            var.assign(bumped.reshape(var.shape))
            up = loss().numpy()
            bumped[k] -= 2 * eps
            var.assign(bumped.reshape(var.shape))
            down = loss().numpy()
            var.assign(flat.reshape(var.shape))
            assert (up - down) / (2 * eps) == pytest.approx(grad.reshape(-1)[k], rel=1e-5, abs=1e-8), (var.name, k)


def test_a_cluster_no_target_falls_in_gets_no_gradient():
    layer = float64_layer()
    h = tf.constant(np.random.default_rng(3).normal(size=(4, 8)))
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer.nll(h, tf.constant([0, 3, 7, 14], tf.int32)))  # head and cluster 1 only
    grads = dict(zip([v.name for v in layer.trainable_variables], tape.gradient(loss, layer.trainable_variables)))
    assert np.abs(grads["V_1"].numpy()).max() > 0
    for name in ("P_2", "V_2", "b_2"):
        assert np.abs(tf.convert_to_tensor(grads[name]).numpy()).max() == 0, name


@pytest.mark.parametrize("cutoffs, vocab, problem", [
    ("8,4", 30, "positive and increasing"), ("0,4", 30, "positive and increasing"),
    ("4,x", 30, "comma-separated integers"), ("4,30", 30, "below the vocabulary size 30")])
def test_bad_cutoffs_are_refused(cutoffs, vocab, problem):
    with pytest.raises(RnnLmError, match=problem):
        ModelConfig(vocab_size=vocab, softmax="adaptive", adaptive_cutoffs=cutoffs).validate()


def test_default_cutoffs_are_those_below_the_vocabulary():
    assert ModelConfig(vocab_size=33278, softmax="adaptive").cutoffs == (2000, 10000)
    assert ModelConfig(vocab_size=267735, softmax="adaptive").cutoffs == (2000, 10000, 50000)
    with pytest.raises(RnnLmError, match="too small for the default"):
        ModelConfig(vocab_size=1500, softmax="adaptive").validate()
    with pytest.raises(RnnLmError, match="needs model.softmax=full"):
        ModelConfig(vocab_size=30, softmax="adaptive", tie_embeddings=True).validate()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A model with an adaptive softmax trained by rnn-lm-train (13 tokens: a head of 4, clusters of ids 4-7
    and 8-12 read through 16 / 2 and 16 / 4 units)."""
    root = tmp_path_factory.mktemp("adaptive")
    data = write_corpus(root / "data")
    model_dir = root / "lm"
    proc = run("train", f"--data_dir={data}", f"--model_dir={model_dir}", *TINY, "--epochs=8",
               "--softmax=adaptive", "--adaptive_cutoffs=4,8", "--adaptive_factor=2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return model_dir, data


def test_an_adaptive_model_trains_scores_samples_and_serves(trained):
    model_dir, data = trained
    config = json.loads((model_dir / "config.json").read_text())["model"]
    assert (config["softmax"], config["adaptive_cutoffs"]) == ("adaptive", "4,8")
    stream = run("eval", f"--model_dir={model_dir}", "--split=test")
    assert stream.returncode == 0, stream.stderr[-2000:]
    assert float(re.search(r"perplexity ([0-9.]+)", stream.stdout).group(1)) < 1.2  # the 12-word cycle is learned
    evaluated = run("eval", f"--model_dir={model_dir}", f"--text_file={os.path.join(data, 'test.txt')}",
                    "--per_sentence", "--sentence_start=zero")
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    scores = [json.loads(line) for line in evaluated.stdout.splitlines()]
    served = tf.saved_model.load(str(model_dir / "saved_model"))
    served.sentence_start.assign(tf.zeros_like(served.sentence_start))  # as --sentence_start=zero
    text = open(os.path.join(data, "test.txt")).readline().strip()
    log_prob = served.signatures["score"](sentences=tf.constant([text]))["log_prob"].numpy()[0]
    assert log_prob == pytest.approx(scores[0]["log_prob"], abs=1e-4)
    # Greedy, after one sentence (from the zero state, which a stream-trained model never saw, the first
    # words are uncertain).
    generated = run("generate", f"--model_dir={model_dir}", f"--prompt={text} <eos> the", "--max_tokens=12",
                    "--temperature=0")
    assert generated.returncode == 0, generated.stderr[-2000:]
    assert generated.stdout.strip() == f"{text} <eos> {text}"


def test_bad_cutoffs_through_the_binary_are_one_line(trained, tmp_path):
    _, data = trained
    proc = run("train", f"--data_dir={data}", f"--model_dir={tmp_path / 'a'}", *TINY, "--softmax=adaptive",
               "--adaptive_cutoffs=4,20")
    assert_one_line_error(proc, "--adaptive_cutoffs", "below the vocabulary size 13")
    assert not (tmp_path / "a" / "checkpoints").exists()
    proc = run("train", f"--data_dir={data}", f"--model_dir={tmp_path / 'b'}", *TINY, "--adaptive_cutoffs=4")
    assert_one_line_error(proc, "--adaptive_cutoffs", "--softmax=adaptive")

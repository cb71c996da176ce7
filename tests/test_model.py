"""The language model (rnn_lm.model) against a NumPy transcription, and its state handling."""

import numpy as np
import pytest
import tensorflow as tf

from rnn_lm.config import ModelConfig
from rnn_lm.errors import RnnLmError
from rnn_lm.model import RNNLanguageModel

VOCAB, B, T = 7, 2, 5


def make_model(seed=0, **overrides):
    """A tiny model whose every variable (biases included) holds distinct random values."""
    config = ModelConfig(**{**dict(vocab_size=VOCAB, cell="lstm", num_layers=2, hidden_size=4,
                                   embedding_size=3), **overrides})
    config.validate()
    model = RNNLanguageModel(config)
    rng = np.random.default_rng(seed)
    for v in model.trainable_variables:
        v.assign(rng.uniform(-0.7, 0.7, v.shape))
    return model


def params(model):
    """float64 weights keyed by path below the model: "embedding", "lstm_1/W_xi", "V", "b_y"."""
    return {v.path.split("/", 1)[1]: np.array(v.numpy(), np.float64) for v in model.trainable_variables}


def sample_ids(t=T, seed=1):
    return tf.constant(np.random.default_rng(seed).integers(0, VOCAB, (B, t)), tf.int32)


def sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def np_lstm_lm(p, ids, num_layers, tied=False):
    """The model's docstring in NumPy: E[w] -> LSTM layers (the slides) -> h V + b_y."""
    x = p["embedding"][ids]  # [B, T, E]
    states = []
    for layer in range(num_layers):
        w = {k.split("/")[1]: v for k, v in p.items() if k.startswith(f"lstm_{layer + 1}/")}
        h = c = np.zeros((ids.shape[0], w["b_i"].shape[0]))
        outs = []
        for t in range(ids.shape[1]):
            gate = lambda g: x[:, t] @ w[f"W_x{g}"] + h @ w[f"W_h{g}"] + w[f"b_{g}"]
            c = sigmoid(gate("f")) * c + sigmoid(gate("i")) * np.tanh(gate("g"))
            h = sigmoid(gate("o")) * np.tanh(c)
            outs.append(h)
        x = np.stack(outs, 1)  # [B, T, H]
        states.append((h, c))
    out = p["embedding"].T if tied else p["V"]
    return x @ out + p["b_y"], states


def assert_state_close(got, want):
    for g, w in zip(tf.nest.flatten(got), tf.nest.flatten(want), strict=True):
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=1e-5, atol=1e-6)


def test_forward_matches_numpy():
    model = make_model()
    ids = sample_ids()
    logits, state = model(ids)
    want_logits, want_state = np_lstm_lm(params(model), ids.numpy(), 2)
    assert logits.shape == (B, T, VOCAB)
    np.testing.assert_allclose(logits.numpy(), want_logits, rtol=1e-5, atol=1e-5)
    assert_state_close([tuple(s) for s in state], want_state)


def test_variable_names():
    names = lambda m: set(params(m))
    cell_vars = {f"lstm_{l}/{n}" for l in (1, 2) for n in
                 [f"W_x{g}" for g in "ifog"] + [f"W_h{g}" for g in "ifog"] + [f"b_{g}" for g in "ifog"]}
    assert names(make_model()) == {"embedding", "V", "b_y"} | cell_vars
    assert names(make_model(embedding_size=0)) == {"V", "b_y"} | cell_vars
    assert names(make_model(embedding_size=4, tie_embeddings=True)) == {"embedding", "b_y"} | cell_vars


def test_tied_embeddings_use_the_embedding_transposed():
    model = make_model(embedding_size=4, hidden_size=4, tie_embeddings=True)
    assert not hasattr(model, "V")
    ids = sample_ids()
    want, _ = np_lstm_lm(params(model), ids.numpy(), 2, tied=True)
    np.testing.assert_allclose(model(ids)[0].numpy(), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cell", ["elman", "lstm", "gru"])
def test_one_hot_input_equals_identity_embedding(cell):
    one_hot = make_model(cell=cell, embedding_size=0, seed=2)
    embedded = make_model(cell=cell, embedding_size=VOCAB, seed=3)
    source = params(one_hot)
    for v in embedded.trainable_variables:
        name = v.path.split("/", 1)[1]
        v.assign(np.eye(VOCAB) if name == "embedding" else source[name])
    ids = sample_ids()
    np.testing.assert_allclose(one_hot(ids)[0].numpy(), embedded(ids)[0].numpy(), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("cell", ["elman", "lstm", "gru"])
def test_state_carried_across_calls_equals_one_call(cell):
    model = make_model(cell=cell)
    ids = sample_ids(t=6)
    logits, state = model(ids)
    first, mid = model(ids[:, :3])
    second, state2 = model(ids[:, 3:], mid)
    np.testing.assert_allclose(tf.concat([first, second], 1).numpy(), logits.numpy(),
                               rtol=1e-5, atol=1e-6)
    assert_state_close(state2, state)


@pytest.mark.parametrize("cell", ["elman", "lstm", "gru"])
def test_step_token_by_token_equals_call(cell):
    model = make_model(cell=cell, embedding_size=0)  # one-hot through step as well
    ids = sample_ids()
    logits, state = model(ids)
    step_state = model.zero_state(B)
    steps = []
    for t in range(T):
        step_logits, step_state = model.step(ids[:, t], step_state)
        steps.append(step_logits)
    np.testing.assert_allclose(tf.stack(steps, 1).numpy(), logits.numpy(), rtol=1e-5, atol=1e-6)
    assert_state_close(step_state, state)


def test_dropout_only_in_training():
    model = make_model(dropout=0.5)
    ids = sample_ids()
    want, _ = np_lstm_lm(params(model), ids.numpy(), 2)
    np.testing.assert_allclose(model(ids, training=False)[0].numpy(), want, rtol=1e-5, atol=1e-5)
    a, b = model(ids, training=True)[0].numpy(), model(ids, training=True)[0].numpy()
    assert np.max(np.abs(a - want)) > 1e-2
    assert np.max(np.abs(a - b)) > 1e-2  # a fresh mask per call
    # A given dropout_seed fixes the masks, so a resumed run redraws the same ones.
    seeded = lambda seed: model(ids, training=True, dropout_seed=tf.constant(seed, tf.int64))[0].numpy()
    np.testing.assert_array_equal(seeded([1, 2]), seeded([1, 2]))
    assert np.max(np.abs(seeded([1, 2]) - seeded([1, 3]))) > 1e-2


@pytest.mark.parametrize("bad", [
    dict(hidden_size=-1), dict(hidden_size=0), dict(embedding_size=-1), dict(num_layers=0),
    dict(init_scale=-0.1), dict(dropout=1.0), dict(dropout=-0.1),
    dict(tie_embeddings=True, embedding_size=3, hidden_size=4), dict(cell="rnn"),
    dict(activation="softmax"),
], ids=lambda d: ",".join(f"{k}={v}" for k, v in d.items()))
def test_config_validation(bad):
    config = ModelConfig(**{**dict(vocab_size=VOCAB, hidden_size=4, embedding_size=4), **bad})
    with pytest.raises(RnnLmError) as e:
        config.validate()
    assert "\n" not in str(e.value)  # the binaries print it as one line


def test_model_needs_a_vocabulary():
    with pytest.raises(ValueError, match="vocab_size"):
        RNNLanguageModel(ModelConfig(vocab_size=0))

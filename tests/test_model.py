"""The language model (rnn_lm.model) against a float64 NumPy transcription of its docstring
(E[w] -> LSTM layers (the slides) -> h V + b_y): the forward pass, variable names, tied and one-hot
embeddings, state carried across calls and token by token, every dropout only in training (locked and
embedding dropout against their definitions), and bfloat16 compute against a float32 twin."""

import numpy as np
import pytest
import tensorflow as tf

from rnn_lm.config import ModelConfig
from rnn_lm.model import RNNLanguageModel
from tests.helpers import make_model, mixed_twins, sigmoid

VOCAB, B, T = 7, 2, 5  # make_model's vocabulary
SEED = tf.constant([3, 4], tf.int64)


def params(model):
    """float64 weights keyed by path below the model: "embedding", "lstm_1/W_xi", "V", "b_y"."""
    return {v.path.split("/", 1)[1]: np.array(v.numpy(), np.float64) for v in model.trainable_variables}


def sample_ids(t=T, seed=1):
    return tf.constant(np.random.default_rng(seed).integers(0, VOCAB, (B, t)), tf.int32)


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


@pytest.mark.parametrize("cell", ["elman", "lstm", "gru"])
def test_sentence_mode_scores_each_sentence_as_if_it_stood_alone(cell):
    """reset_state=eos: from each <eos> input on, the logits are those of that part alone from
    h_(0) = 0, whatever state came in; token by token (step) too."""
    model = make_model(cell=cell, reset_state="eos")
    ids = np.array([[3, 1, 4, 5, 1, 2, 6], [1, 2, 2, 1, 1, 3, 4]], np.int32)  # <eos> is 1
    start = model.call(tf.constant([[5, 6], [4, 2]]))[1]  # a state that is not zero
    logits, state = model(tf.constant(ids), start)
    for b, row in enumerate(ids):
        cuts = [t for t in range(len(row)) if row[t] == 1] + [len(row)]
        for a, z in zip(cuts, cuts[1:]):
            alone, _ = model(tf.constant(row[None, a:z]))
            np.testing.assert_allclose(logits[b, a:z].numpy(), alone[0].numpy(), rtol=1e-5, atol=1e-6)
    assert not np.allclose(logits[0, 0], model(tf.constant(ids[:1, :1]))[0][0, 0])  # before an <eos>: carried
    step_state = start
    for t in range(ids.shape[1]):
        step_logits, step_state = model.step(tf.constant(ids[:, t]), step_state)
        np.testing.assert_allclose(step_logits.numpy(), logits[:, t].numpy(), rtol=1e-5, atol=1e-6)
    assert_state_close(step_state, state)


# --- Dropout: ptb_small_plus's variants (locked, input, embedding) as well as plain dropout.

@pytest.mark.parametrize("overrides", [
    dict(dropout=0.5),
    dict(dropout=0.4, input_dropout=0.6, locked_dropout=True, embedding_dropout=0.2, embedding_size=4,
         hidden_size=4, tie_embeddings=True),
], ids=["dropout", "every_variant"])
def test_dropout_only_in_training(overrides):
    model = make_model(**overrides)
    ids = sample_ids()
    want, _ = np_lstm_lm(params(model), ids.numpy(), 2, tied=overrides.get("tie_embeddings", False))
    np.testing.assert_allclose(model(ids, training=False)[0].numpy(), want, rtol=1e-5, atol=1e-5)
    a, b = model(ids, training=True)[0].numpy(), model(ids, training=True)[0].numpy()
    assert np.max(np.abs(a - want)) > 1e-2
    assert np.max(np.abs(a - b)) > 1e-2  # a fresh mask per call
    # A given dropout_seed fixes the masks, so a resumed run redraws the same ones.
    seeded = lambda seed: model(ids, training=True, dropout_seed=tf.constant(seed, tf.int64))[0].numpy()
    np.testing.assert_array_equal(seeded([1, 2]), seeded([1, 2]))
    assert np.max(np.abs(seeded([1, 2]) - seeded([1, 3]))) > 1e-2
    np.testing.assert_array_equal(seeded([3, 4]), model(ids, training=True, dropout_seed=SEED)[0].numpy())
    assert np.max(np.abs(seeded([3, 4]) - want)) > 1e-2


@pytest.mark.parametrize("locked", [True, False])
def test_locked_dropout_keeps_one_mask_for_the_window(locked):
    model = make_model(dropout=0.5, locked_dropout=locked)
    x = tf.ones([4, 9, 300])
    y = model._dropout(x, 0.5, 1, SEED).numpy()
    assert set(np.unique(y)) == {0.0, 2.0}  # dropped, or kept and scaled by 1 / (1 - p)
    assert abs(np.mean(y == 0) - 0.5) < 0.03
    same_over_time = all(np.array_equal(y[:, t], y[:, 0]) for t in range(9))
    assert same_over_time == locked  # per-step masks differ from step to step
    # Each stream draws its own mask.
    assert not np.array_equal(y[0, 0], y[1, 0])


def test_embedding_dropout_drops_word_types():
    p = 0.3
    model = make_model(vocab_size=1000, embedding_size=5, embedding_dropout=p)
    ids = tf.constant(np.random.default_rng(0).integers(0, 1000, (8, 50)), tf.int32)
    x = model.embed(ids)
    y = model._embedding_dropout(ids, x, SEED).numpy()
    x, ids = x.numpy(), ids.numpy()
    kept = np.all(np.isclose(y, x / (1 - p), rtol=1e-6), axis=-1)
    dropped = np.all(y == 0, axis=-1)
    assert np.all(kept ^ dropped)  # each position: the whole vector kept (scaled) or zero
    # A word is dropped everywhere in the step or nowhere.
    for word in np.unique(ids):
        assert len(set(dropped[ids == word])) == 1, word
    rate = np.mean([dropped[ids == w][0] for w in np.unique(ids)])
    assert abs(rate - p) < 0.07  # about 990 types drawn


# --- bfloat16 compute.

@pytest.mark.parametrize("cell", ["elman", "lstm", "gru"])
def test_bfloat16_forward_matches_float32(cell):
    full, mixed = mixed_twins(cell, "bfloat16")
    ids = tf.constant(np.random.default_rng(0).integers(0, 40, (3, 9)), tf.int32)
    want, want_state = full(ids)
    got, got_state = mixed(ids)
    assert got.dtype == tf.float32  # the loss is computed in float32
    assert all(s.dtype == tf.float32 for s in tf.nest.flatten(got_state))  # carried state stays float32
    # bfloat16 keeps 8 bits of mantissa: about 2-3 significant digits.
    np.testing.assert_allclose(got.numpy(), want.numpy(), atol=0.03 * np.abs(want.numpy()).max() + 1e-3)
    for g, w in zip(tf.nest.flatten(got_state), tf.nest.flatten(want_state)):
        np.testing.assert_allclose(g.numpy(), w.numpy(), atol=0.03)


def test_model_needs_a_vocabulary():
    with pytest.raises(ValueError, match="vocab_size"):
        RNNLanguageModel(ModelConfig(vocab_size=0))

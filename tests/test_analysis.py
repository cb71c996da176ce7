"""What rnn_lm.analysis measures, against independent computations: the gradient flow through time
against the Elman formula in float64, finite differences, and gradient probes on the slide-form cells run
by the Keras protocol (every layer and lag, on both of rnn_lm.unroll's loops); spectral norms against
NumPy's SVD; the keep gates (f or z) and the state's relative change against a NumPy transcription."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from rnn_lm import analysis, unroll as unroll_lib
from rnn_lm.config import ModelConfig
from rnn_lm.model import RNNLanguageModel

V, H, T = 9, 6, 7


def elman_numpy_flow(model, ids):
    """|dJ_T/dh_t| from the slides' formula: dJ_T/dh_T prod diag(f'(a_s)) U^T, in float64."""
    cell = model.cells[0]
    W, U, b = (np.float64(v.numpy()) for v in (cell.W, cell.U, cell.b))
    E, Vo, by = (np.float64(v.numpy()) for v in (model.embedding, model.V, model.b_y))
    h = np.zeros((ids.shape[0], H))
    pre = []
    for t in range(T):
        a = E[ids[:, t]] @ W + h @ U + b
        h = np.tanh(a)
        pre.append(a)
    logits = h @ Vo + by
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    onehot = np.eye(V)[ids[:, -1]]
    g = (p - onehot) @ Vo.T / ids.shape[0]  # dJ_T/dh_T, J_T averaged over the batch
    norms = [np.linalg.norm(g)]
    for t in range(T - 1, 0, -1):  # dJ/dh_{t-1} = (dJ/dh_t * f'(a_t)) U^T
        g = (g * (1 - np.tanh(pre[t]) ** 2)) @ U.T
        norms.append(np.linalg.norm(g))
    return np.array(norms)


def test_elman_flow_matches_the_formula():
    keras.utils.set_random_seed(3)
    model = RNNLanguageModel(ModelConfig(vocab_size=V, cell="elman", num_layers=1, hidden_size=H,
                                         embedding_size=5, init_scale=0.6))
    ids = np.random.default_rng(0).integers(0, V, (3, T)).astype(np.int32)
    (flow,) = analysis.gradient_flow(model, ids, ids)
    np.testing.assert_allclose(flow, elman_numpy_flow(model, ids), rtol=1e-4)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_flow_matches_finite_differences(cell):
    """|dJ_T/dh_t| of layer 1 equals the norm of a finite-difference gradient, taken by
    perturbing h_t in a loop written with the slide-form cells (Keras protocol)."""
    keras.utils.set_random_seed(4)
    model = RNNLanguageModel(ModelConfig(vocab_size=V, cell=cell, num_layers=2, hidden_size=H,
                                         embedding_size=5, init_scale=0.5))
    ids = np.random.default_rng(1).integers(0, V, (2, T)).astype(np.int32)
    flows = analysis.gradient_flow(model, ids, ids)
    assert len(flows) == 2 and all(f.shape == (T,) for f in flows)
    assert np.all(np.isfinite(flows[0])) and flows[0][0] > 0
    # Independent check of one lag: J_T as a function of a perturbation of h_t (layer 1).
    lag = 3
    t = T - 1 - lag

    def cost(delta):
        x = model.embed(tf.constant(ids))
        c1, c2 = model.cells
        state = model.zero_state(2)
        outs = []
        s = state[0]
        for step in range(T):
            h, s = c1(x[:, step], s if cell == "lstm" else [s])
            s = s if cell == "lstm" else s[0]
            if step == t:
                h = h + delta
                s = s._replace(h=h) if cell == "lstm" else h
            outs.append(h)
        h2, _ = keras.layers.RNN(c2, return_sequences=True, return_state=True)(tf.stack(outs, 1))[:2]
        logits = model.output_logits(h2[:, -1])
        return float(tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(ids[:, -1], logits)))

    eps = 1e-2
    grad = np.zeros((2, H))
    for i in range(2):
        for j in range(H):
            delta = np.zeros((2, H), np.float32)
            delta[i, j] = eps
            grad[i, j] = (cost(delta) - cost(-delta)) / (2 * eps)
    np.testing.assert_allclose(flows[0][lag], np.linalg.norm(grad), rtol=1e-2)


def test_spectral_norms_are_the_largest_singular_values():
    model = RNNLanguageModel(ModelConfig(vocab_size=V, cell="gru", num_layers=1, hidden_size=H,
                                         embedding_size=5))
    norms = analysis.spectral_norms(model)
    assert sorted(norms) == ["layer_1/W_hg", "layer_1/W_hr", "layer_1/W_hz"]
    np.testing.assert_allclose(norms["layer_1/W_hz"],
                               np.linalg.svd(model.cells[0].W_hz.numpy(), compute_uv=False)[0], rtol=1e-5)


@pytest.mark.parametrize("cell", ["lstm", "gru", "elman"])
def test_gate_statistics_against_the_slides(cell):
    """The keep gate (f or z) recomputed from the slide-named weights in NumPy."""
    keras.utils.set_random_seed(5)
    model = RNNLanguageModel(ModelConfig(vocab_size=V, cell=cell, num_layers=1, hidden_size=H,
                                         embedding_size=5, init_scale=0.8))
    ids = np.random.default_rng(3).integers(0, V, (2, T)).astype(np.int32)
    (stats,) = analysis.gate_statistics(model, ids)
    c = model.cells[0]
    w = {v.name: np.float64(v.numpy()) for v in c.trainable_variables}
    x = np.float64(model.embedding.numpy())[ids]
    sig = lambda a: 1 / (1 + np.exp(-a))
    h = cc = np.zeros((2, H))
    keeps, changes = [], []
    for t in range(T):
        xt = x[:, t]
        if cell == "lstm":
            gate = lambda g: xt @ w[f"W_x{g}"] + h @ w[f"W_h{g}"] + w[f"b_{g}"]
            f = sig(gate("f"))
            cc = f * cc + sig(gate("i")) * np.tanh(gate("g"))
            new = sig(gate("o")) * np.tanh(cc)
            keeps.append(f)
        elif cell == "gru":
            z = sig(xt @ w["W_xz"] + h @ w["W_hz"] + w["b_z"])
            r = sig(xt @ w["W_xr"] + h @ w["W_hr"] + w["b_r"])
            new = z * h + (1 - z) * np.tanh(xt @ w["W_xg"] + (r * h) @ w["W_hg"] + w["b_g"])
            keeps.append(z)
        else:
            new = np.tanh(xt @ w["W"] + h @ w["U"] + w["b"])
        if t > 0:
            changes.append(np.linalg.norm(new - h, axis=-1) / np.linalg.norm(h, axis=-1))
        h = new
    np.testing.assert_allclose(stats["change"], np.mean(changes), rtol=1e-4)
    np.testing.assert_allclose(stats["change<0.1"], np.mean(np.array(changes) < 0.1))
    if cell == "elman":
        assert "keep" not in stats
    else:
        np.testing.assert_allclose(stats["keep"], np.mean(keeps), rtol=1e-4)
        np.testing.assert_allclose(stats["keep>0.9"], np.mean(np.array(keeps) > 0.9), atol=1e-6)


# --- Every layer and every step, on both of rnn_lm.unroll's loops, against the slide-form cells.

@pytest.fixture(params=[100, 0], ids=["python-unrolled", "while_loop"])
def either_loop(request, monkeypatch):
    """Runs the test once on each of rnn_lm.unroll's two loops."""
    monkeypatch.setattr(unroll_lib, "MAX_STATIC_UNROLL", request.param)


def two_layer_case(cell, seed, batch=2):
    """A two-layer model of ``cell`` and ids [batch, T], both from ``seed``."""
    keras.utils.set_random_seed(seed)
    model = RNNLanguageModel(ModelConfig(vocab_size=V, cell=cell, num_layers=2, hidden_size=H,
                                         embedding_size=5, init_scale=0.7))
    return model, np.random.default_rng(seed).integers(0, V, (batch, T)).astype(np.int32)


def run_slide_cells(model, ids, step_fn):
    """The model's layers run by the Keras protocol, one ``cell(x_t, states)`` per step (not rnn_lm.unroll).

    ``step_fn(layer, t, x_t, h_prev, h)`` may return a replacement for h.  Returns the top layer's h [B, T, H].
    """
    x = model.embed(tf.constant(ids))
    for layer, (cell, state) in enumerate(zip(model.cells, model.zero_state(ids.shape[0]))):
        states, outs = tf.nest.flatten(state), []
        for t in range(T):
            h_prev = states[0]
            h, states = cell(x[:, t], states)
            states = tf.nest.flatten(states)
            states[0] = h = step_fn(layer, t, x[:, t], h_prev, h)
            outs.append(h)
        x = tf.stack(outs, 1)
    return x


@pytest.mark.usefixtures("either_loop")
@pytest.mark.parametrize("cell", ["elman", "lstm", "gru"])
def test_flow_of_every_layer_and_lag_equals_probes_on_the_slide_cells(cell):
    model, ids = two_layer_case(cell, 6, batch=3)
    flows = analysis.gradient_flow(model, ids, ids)
    probes = [[tf.zeros([3, H]) for _ in range(T)] for _ in model.cells]
    with tf.GradientTape() as tape:
        tape.watch(probes)
        top = run_slide_cells(model, ids, lambda layer, t, x_t, h_prev, h: h + probes[layer][t])
        logits = model.output_logits(top[:, -1])
        cost = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(ids[:, -1], logits))
    want = [np.array([np.linalg.norm(g) for g in reversed(layer)]) for layer in tape.gradient(cost, probes)]
    assert len(flows) == 2
    for got, w in zip(flows, want):
        np.testing.assert_allclose(got, w, rtol=1e-4)


@pytest.mark.usefixtures("either_loop")
@pytest.mark.parametrize("cell", ["elman", "lstm", "gru"])
def test_gate_trace_of_every_layer_equals_the_slide_cells(cell):
    """The whole keep and change arrays of both layers; the keep gate from the slide-named weights."""
    model, ids = two_layer_case(cell, 7)
    traces = analysis.gate_trace(model, ids)
    keeps, changes = [[], []], [[], []]

    def record(layer, t, x_t, h_prev, h):
        c = model.cells[layer]
        if cell != "elman":
            g = {"lstm": "f", "gru": "z"}[cell]
            a = x_t.numpy() @ getattr(c, f"W_x{g}").numpy() + h_prev.numpy() @ getattr(c, f"W_h{g}").numpy()
            keeps[layer].append(1 / (1 + np.exp(-(a + getattr(c, f"b_{g}").numpy()))))
        if t > 0:
            changes[layer].append(np.linalg.norm(h - h_prev, axis=-1) / np.linalg.norm(h_prev, axis=-1))
        return h

    run_slide_cells(model, ids, record)
    assert len(traces) == 2
    for layer, trace in enumerate(traces):
        np.testing.assert_allclose(trace["change"], np.array(changes[layer]), rtol=1e-5)
        if cell == "elman":
            assert "keep" not in trace
        else:
            assert trace["keep"].shape == (T, 2, H)
            np.testing.assert_allclose(trace["keep"], np.array(keeps[layer]), rtol=1e-5, atol=1e-6)


def test_flow_of_one_model_at_several_lengths():
    """A second length retraces _flow_graph with T unknown; the loop then runs to the tensor's length."""
    model, _ = two_layer_case("gru", 8)
    rng = np.random.default_rng(8)
    for t in (T, 4, 9):
        ids = rng.integers(0, V, (2, t)).astype(np.int32)
        flows = analysis.gradient_flow(model, ids, ids)
        assert [f.shape for f in flows] == [(t,), (t,)] and all(np.all(np.isfinite(f)) for f in flows)

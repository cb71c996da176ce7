"""Gradient flow through time, against finite differences and the Elman formula."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from rnn_lm import analysis
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

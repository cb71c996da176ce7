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

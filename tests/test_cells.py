"""The lecture's cells (rnn_lm.cells) against a float64 NumPy transcription of the slides.

Every variable gets its own random values, so a swapped gate, a transposed
matrix or a bias added to the wrong gate changes the numbers.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from rnn_lm import cells, config
from rnn_lm.unroll import unroll
from tests.helpers import sigmoid

B, T, IN, H = 2, 4, 3, 5

CASES = [("elman", "tanh"), ("elman", "relu"), ("elman", "sigmoid"), ("lstm", None), ("gru", None)]
IDS = ["elman-tanh", "elman-relu", "elman-sigmoid", "lstm", "gru"]


# --- The slides in NumPy (row vectors: x @ W). A state is a tuple: (h,) or (h, c).

NP_ACTIVATIONS = {"tanh": np.tanh, "relu": lambda a: np.maximum(a, 0.0), "sigmoid": sigmoid}


def np_elman(p, x, state, activation):
    (h,) = state
    outs = []
    for t in range(x.shape[1]):
        h = NP_ACTIVATIONS[activation](x[:, t] @ p["W"] + h @ p["U"] + p["b"])
        outs.append(h)
    return np.stack(outs, 1), (h,)


def np_lstm(p, x, state):
    h, c = state
    outs = []
    for t in range(x.shape[1]):
        x_t = x[:, t]
        i = sigmoid(x_t @ p["W_xi"] + h @ p["W_hi"] + p["b_i"])
        f = sigmoid(x_t @ p["W_xf"] + h @ p["W_hf"] + p["b_f"])
        o = sigmoid(x_t @ p["W_xo"] + h @ p["W_ho"] + p["b_o"])
        g = np.tanh(x_t @ p["W_xg"] + h @ p["W_hg"] + p["b_g"])
        c = f * c + i * g
        h = o * np.tanh(c)
        outs.append(h)
    return np.stack(outs, 1), (h, c)


def np_gru(p, x, state, reset_after=False):
    """The lecture's GRU; reset_after=True is Keras'/cuDNN's form with a zero recurrent bias."""
    (h,) = state
    outs = []
    for t in range(x.shape[1]):
        x_t = x[:, t]
        z = sigmoid(x_t @ p["W_xz"] + h @ p["W_hz"] + p["b_z"])
        r = sigmoid(x_t @ p["W_xr"] + h @ p["W_hr"] + p["b_r"])
        if reset_after:
            g = np.tanh(x_t @ p["W_xg"] + p["b_g"] + r * (h @ p["W_hg"]))
        else:
            g = np.tanh(x_t @ p["W_xg"] + (r * h) @ p["W_hg"] + p["b_g"])
        h = z * h + (1.0 - z) * g
        outs.append(h)
    return np.stack(outs, 1), (h,)


def reference(kind, activation):
    if kind == "elman":
        return lambda p, x, s: np_elman(p, x, s, activation)
    return {"lstm": np_lstm, "gru": np_gru}[kind]


# --- Helpers.

def make(kind, activation, dtype="float32", seed=0):
    """A built cell whose every variable holds distinct random values; returns (cell, float64 params)."""
    cell = cells.make_cell(kind, H, activation=activation or "tanh", dtype=dtype)
    cell.build((None, IN))
    rng = np.random.default_rng(seed)
    for v in cell.trainable_variables:
        v.assign(rng.uniform(-0.9, 0.9, v.shape))
    # Read back so the reference sees exactly the (possibly float32-rounded) weights.
    return cell, {v.name: np.array(v.numpy(), np.float64) for v in cell.trainable_variables}


def make_inputs(kind, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, (B, T, IN))  # [B, T, in]
    state = tuple(rng.uniform(-0.8, 0.8, (B, H)) for _ in range(2 if kind == "lstm" else 1))
    return x, state


def cell_state(kind, arrays):
    """A tuple of arrays as the cell's own state structure."""
    return cells.LSTMState(*arrays) if kind == "lstm" else arrays[0]


def run_call(cell, x, state):
    """The Keras protocol, one `cell(x_t, states)` per step, states as the flat list Keras passes."""
    states = tf.nest.flatten(state)
    outs = []
    for t in range(x.shape[1]):
        h, states = cell(x[:, t], states)
        states = tf.nest.flatten(states)
        outs.append(h)
    return tf.stack(outs, 1), states


def run_fast(cell, x, state):
    """The fast path driven by hand (not through rnn_lm.unroll)."""
    fused = cell.fuse()
    x_proj = cell.project_inputs(x, fused)  # [B, T, G*H]
    outs = []
    for t in range(x.shape[1]):
        h, state = cell.step(x_proj[:, t], state, fused)
        outs.append(h)
    return tf.stack(outs, 1), tf.nest.flatten(state)


def assert_close(got, want, **tol):
    np.testing.assert_allclose(np.asarray(got, np.float64), want, **tol)


# --- Tests.

@pytest.mark.parametrize("kind,activation", CASES, ids=IDS)
def test_call_and_fast_path_match_numpy_eager_and_in_graph(kind, activation):
    cell, p = make(kind, activation)
    x, state = make_inputs(kind)
    want_out, want_state = reference(kind, activation)(p, x, state)

    def both(x, state):
        state = cell_state(kind, state)
        return run_call(cell, x, state), run_fast(cell, x, state)

    args = tf.constant(x, tf.float32), [tf.constant(s, tf.float32) for s in state]
    for fn in (both, tf.function(both)):
        for out, final in fn(*args):
            assert_close(out, want_out, rtol=1e-5, atol=2e-6)
            assert len(final) == len(want_state)
            for got, want in zip(final, want_state):
                assert_close(got, want, rtol=1e-5, atol=2e-6)


EXPECTED_VARIABLES = {
    "elman": {"W": (IN, H), "U": (H, H), "b": (H,)},
    "lstm": {**{f"W_x{g}": (IN, H) for g in "ifog"}, **{f"W_h{g}": (H, H) for g in "ifog"},
             **{f"b_{g}": (H,) for g in "ifog"}},
    "gru": {**{f"W_x{g}": (IN, H) for g in "zrg"}, **{f"W_h{g}": (H, H) for g in "zrg"},
            **{f"b_{g}": (H,) for g in "zrg"}},
}


@pytest.mark.parametrize("kind", ["elman", "lstm", "gru"])
def test_variables_are_exactly_the_slides_symbols(kind):
    cell = cells.make_cell(kind, H)
    cell.build((None, IN))
    got = [(v.name, tuple(v.shape)) for v in cell.trainable_variables]
    assert dict(got) == EXPECTED_VARIABLES[kind]
    assert len(got) == len(EXPECTED_VARIABLES[kind])  # no second variable under a repeated name
    assert not cell.non_trainable_variables
    assert (cell.state_size, cell.output_size) == ((H, H) if kind == "lstm" else H, H)
    for s in cell.get_initial_state(batch_size=B):  # Keras protocol: flat list of zeros
        assert_close(s, np.zeros((B, H)))


@pytest.mark.parametrize("kind", ["elman", "lstm", "gru"])
def test_default_initialisers(kind):
    cell = cells.make_cell(kind, H)
    cell.build((None, IN))
    glorot_limit = np.sqrt(6.0 / (IN + H))
    for v in cell.trainable_variables:
        w = v.numpy()
        if v.name == "b_f":
            assert_close(w, np.ones(H))  # forget-gate bias starts at 1 (Gers et al.)
        elif v.name.startswith("b"):
            assert_close(w, np.zeros(H))
        elif v.shape[0] == IN:
            assert np.all(np.abs(w) <= glorot_limit) and np.std(w) > 0
        else:  # recurrent: orthogonal
            assert_close(w.T @ w, np.eye(H), atol=1e-5)


def test_lstm_forget_bias_is_one_whatever_the_bias_initialiser():
    cell = cells.LSTMCell(H, kernel_initializer="zeros", recurrent_initializer="ones",
                          bias_initializer=keras.initializers.Constant(0.3))
    cell.build((None, IN))
    got = {v.name: v.numpy() for v in cell.trainable_variables}
    assert_close(got.pop("b_f"), np.ones(H))
    for name, w in got.items():
        want = 0.3 if name.startswith("b_") else {"W_x": 0.0, "W_h": 1.0}[name[:3]]
        assert_close(w, np.full(w.shape, want))


@pytest.mark.parametrize("kind,activation", CASES, ids=IDS)
def test_gradients_match_finite_differences(kind, activation):
    # float64 cell for the tape; the finite differences run the NumPy transcription.
    cell, p = make(kind, activation, dtype="float64")
    x, state = make_inputs(kind)
    state = [s.copy() for s in state]
    rng = np.random.default_rng(2)
    r_out = rng.standard_normal((B, T, H))
    r_state = [rng.standard_normal((B, H)) for _ in state]
    ref = reference(kind, activation)

    def loss_np():
        out, final = ref(p, x, state)
        return np.sum(out * r_out) + sum(np.sum(s * r) for s, r in zip(final, r_state))

    def numeric_grad(a, eps=1e-6):  # central differences, perturbing `a` in place
        g = np.zeros_like(a)
        for i in np.ndindex(a.shape):
            old = a[i]
            a[i] = old + eps
            up = loss_np()
            a[i] = old - eps
            g[i] = (up - loss_np()) / (2 * eps)
            a[i] = old
        return g

    variables = cell.trainable_variables
    want = [numeric_grad(p[v.name]) for v in variables] + [numeric_grad(s) for s in state]
    for run in (run_call, run_fast):
        s0 = [tf.constant(s) for s in state]
        with tf.GradientTape() as tape:
            tape.watch(s0)
            out, final = run(cell, tf.constant(x), cell_state(kind, s0))
            loss = tf.reduce_sum(out * r_out) + tf.add_n(
                [tf.reduce_sum(s * r) for s, r in zip(final, r_state)])
        got = tape.gradient(loss, variables + s0)
        for g, w, name in zip(got, want, [v.name for v in variables] + ["h0", "c0"]):
            np.testing.assert_allclose(g.numpy(), w, rtol=1e-6, atol=1e-8,
                                       err_msg=f"{run.__name__}: d loss / d {name}")


@pytest.mark.parametrize("kind,activation", CASES, ids=IDS)
def test_inside_keras_rnn_equals_unroll(kind, activation):
    cell, _ = make(kind, activation)
    x, state = make_inputs(kind)
    x = tf.constant(x, tf.float32)
    state = [tf.constant(s, tf.float32) for s in state]
    out, *final = keras.layers.RNN(cell, return_sequences=True, return_state=True)(
        x, initial_state=state)
    want_out, want_final = unroll(cell, x, cell_state(kind, state))
    assert_close(out, want_out.numpy(), rtol=1e-5, atol=2e-6)
    for got, want in zip(final, tf.nest.flatten(want_final), strict=True):
        assert_close(got, want.numpy(), rtol=1e-5, atol=2e-6)


def _run_keras_gru(p, x, h0, reset_after):
    """Keras' own GRU (gate order z, r, h) loaded with the slides' weights; recurrent bias 0."""
    k = keras.layers.GRUCell(H, reset_after=reset_after, dtype="float64")
    k.build((None, IN))
    k.kernel.assign(np.concatenate([p["W_xz"], p["W_xr"], p["W_xg"]], 1))
    k.recurrent_kernel.assign(np.concatenate([p["W_hz"], p["W_hr"], p["W_hg"]], 1))
    b = np.concatenate([p["b_z"], p["b_r"], p["b_g"]])
    k.bias.assign(np.stack([b, np.zeros_like(b)]) if reset_after else b)
    rnn = keras.layers.RNN(k, return_sequences=True, dtype="float64")
    return rnn(x, initial_state=[h0]).numpy()


def test_gru_is_the_reset_before_form_not_keras_default():
    # The docstring's claim: the lecture's GRU applies r before W_hg; Keras' default
    # (reset_after=True, cuDNN's) is a different function of the same weights.
    cell, p = make("gru", None, dtype="float64")
    x, state = make_inputs("gru")
    got = unroll(cell, tf.constant(x), tf.constant(state[0]))[0].numpy()
    lecture, _ = np_gru(p, x, state)
    after, _ = np_gru(p, x, state, reset_after=True)
    assert_close(got, lecture, rtol=1e-10, atol=1e-12)
    assert np.max(np.abs(got - after)) > 1e-2
    # The two transcriptions are Keras' two forms, so neither is a straw man.
    assert_close(_run_keras_gru(p, x, state[0], reset_after=False), lecture, rtol=1e-10, atol=1e-12)
    assert_close(_run_keras_gru(p, x, state[0], reset_after=True), after, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("build", [
    lambda: cells.ElmanCell(H, activation="softmax"),
    lambda: cells.make_cell("elman", H, activation="linear"),
    lambda: cells.ElmanCell(0),
    lambda: cells.LSTMCell(-1),
    lambda: cells.GRUCell(0),
    lambda: cells.make_cell("rnn", H),
], ids=["elman-softmax", "make_cell-linear", "elman-0", "lstm-neg", "gru-0", "unknown-kind"])
def test_invalid_arguments_raise_value_error(build):
    with pytest.raises(ValueError):
        build()


@pytest.mark.parametrize("kind", ["elman", "lstm", "gru"])
def test_every_weight_starts_with_its_own_values(kind):
    """A shared Keras initialiser repeats its values; each gate matrix must get its own."""
    keras.utils.set_random_seed(5)
    cell = cells.make_cell(kind, 6)
    cell.build((None, 6))  # square input weights, so they are comparable with the recurrent ones
    matrices = [v.numpy() for v in cell.trainable_variables if v.shape.rank == 2]
    for i, a in enumerate(matrices):
        for b in matrices[i + 1:]:
            assert not np.allclose(a, b)
    keras.utils.set_random_seed(5)
    again = cells.make_cell(kind, 6)
    again.build((None, 6))
    for a, b in zip(cell.trainable_variables, again.trainable_variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())  # reproducible from the global seed


@pytest.mark.parametrize("kind", ["elman", "lstm", "gru"])
def test_keep_gate_is_the_slides_f_or_z(kind):
    """keep_gate from the fast path's arguments equals f (LSTM) or z (GRU) in NumPy; Elman has none."""
    cell, p = make(kind, "tanh")
    x, state = make_inputs(kind)
    x_t, h = x[:, 0], state[0]  # [B, in], [B, H]
    fused = cell.fuse()
    x_proj = cell.project_inputs(tf.constant(x_t, tf.float32), fused)
    keep = cell.keep_gate(x_proj, cell_state(kind, [tf.constant(s, tf.float32) for s in state]), fused)
    if kind == "elman":
        assert keep is None
        return
    g = {"lstm": "f", "gru": "z"}[kind]
    assert_close(keep, sigmoid(x_t @ p[f"W_x{g}"] + h @ p[f"W_h{g}"] + p[f"b_{g}"]), rtol=1e-5, atol=2e-6)


@pytest.mark.parametrize("kind,gates", [("elman", 1), ("lstm", 4), ("gru", 3)])
def test_gate_count_is_the_width_of_the_fused_matrices(kind, gates):
    cell = cells.make_cell(kind, H)
    cell.build((None, IN))
    assert cells.CELLS[kind].GATES == type(cell).GATES == gates
    fused = cell.fuse()
    assert fused["W_x"].shape == (IN, gates * H) and fused["b"].shape == (gates * H,)
    assert sum(w.shape[-1] for name, w in fused.items() if name != "W_x" and w.shape.rank == 2) == gates * H


def test_names_are_the_configs():
    """The cell and activation names have one home, rnn_lm.config (which imports no TensorFlow)."""
    assert tuple(cells.CELLS) == config.CELL_TYPES
    assert tuple(cells.ACTIVATIONS) == config.ACTIVATIONS
    assert {name: type(cells.make_cell(name, H)) for name in config.CELL_TYPES} == {
        "elman": cells.ElmanCell, "lstm": cells.LSTMCell, "gru": cells.GRUCell}
    for name, f in cells.ACTIVATIONS.items():
        a = np.linspace(-3, 3, 7)
        assert_close(f(tf.constant(a)), NP_ACTIVATIONS[name](a), rtol=1e-12)

"""The time loop (rnn_lm.unroll) with a cell whose answer is known, and with the real cells."""

import numpy as np
import pytest
import tensorflow as tf

from rnn_lm import cells, unroll as unroll_lib
from rnn_lm.unroll import unroll

B, T, IN, H = 2, 6, 3, 4


class CounterCell:
    """h_t = h_{t-1} + x_t, with a step counter in the state: unroll must give the running sum.

    The state is a (total, count) tuple so that a structured state has to survive
    the loop, and `fused["one"]` has to reach `step` for the count to advance.
    """

    def __init__(self):
        self.calls = {"fuse": 0, "project_inputs": 0}

    def fuse(self, dtype=None):
        self.calls["fuse"] += 1
        return {"one": tf.constant(1.0)}

    def project_inputs(self, x, fused):
        self.calls["project_inputs"] += 1
        return x

    def step(self, x_proj, state, fused):
        total, count = state
        total = total + x_proj
        return total, (total, count + fused["one"])


def counter_inputs(t=T):
    rng = np.random.default_rng(0)
    x = rng.integers(-5, 6, (B, t, IN)).astype(np.float32)  # small integers: sums are exact
    return x, rng.integers(-5, 6, (B, IN)).astype(np.float32)


@pytest.mark.parametrize("max_static", [100, 0], ids=["python-unrolled", "while_loop"])
def test_counter_gives_the_running_sum(max_static, monkeypatch):
    monkeypatch.setattr(unroll_lib, "MAX_STATIC_UNROLL", max_static)
    x, h0 = counter_inputs()
    cell = CounterCell()
    out, (total, count) = unroll(cell, tf.constant(x), (tf.constant(h0), tf.zeros([B])))
    want = h0[:, None, :] + np.cumsum(x, axis=1)  # [B, T, in]
    np.testing.assert_array_equal(out.numpy(), want)
    np.testing.assert_array_equal(total.numpy(), want[:, -1])
    np.testing.assert_array_equal(count.numpy(), np.full(B, T))
    # The fast path's promise: fuse and project once per sequence, not per step.
    assert cell.calls == {"fuse": 1, "project_inputs": 1}


def test_counter_with_unknown_time_dimension_runs_the_while_loop():
    x, h0 = counter_inputs()

    @tf.function(input_signature=[tf.TensorSpec([None, None, IN]), tf.TensorSpec([None, IN])])
    def run(x, h0):
        assert x.shape[1] is None  # so unroll cannot take the Python-unrolled path
        out, (total, count) = unroll(CounterCell(), x, (h0, tf.zeros(tf.shape(x)[:1])))
        return out, total, count

    for t in (T, 1):  # one trace serves both lengths
        out, total, count = run(x[:, :t], h0)
        np.testing.assert_array_equal(out.numpy(), h0[:, None, :] + np.cumsum(x[:, :t], axis=1))
        np.testing.assert_array_equal(count.numpy(), np.full(B, t))


def test_counter_split_in_two_calls_equals_one_call():
    x, h0 = counter_inputs()
    state = (tf.constant(h0), tf.zeros([B]))
    whole, (total, count) = unroll(CounterCell(), tf.constant(x), state)
    first, state = unroll(CounterCell(), tf.constant(x[:, :T // 2]), state)
    second, (total2, count2) = unroll(CounterCell(), tf.constant(x[:, T // 2:]), state)
    np.testing.assert_array_equal(tf.concat([first, second], 1).numpy(), whole.numpy())
    np.testing.assert_array_equal(total2.numpy(), total.numpy())
    np.testing.assert_array_equal(count2.numpy(), count.numpy())


# --- The step hook.

@pytest.mark.parametrize("max_static", [100, 0], ids=["python-unrolled", "while_loop"])
def test_hook_that_replaces_h_changes_the_outputs_as_by_hand(max_static, monkeypatch):
    """A hook adding t + 10 to h_t (and to the total carried on): out_t = h0 + sum_(s<=t) (x_s + s + 10)."""
    monkeypatch.setattr(unroll_lib, "MAX_STATIC_UNROLL", max_static)
    x, h0 = counter_inputs()

    def add(step):
        total, count = step.prev_state
        # The hook sees the step's input projection, the state going in, the fused matrices and the step's result.
        tf.debugging.assert_equal(step.h, total + step.x_proj)
        tf.debugging.assert_equal(step.state[1], count + step.fused["one"])
        bump = tf.cast(step.t, tf.float32) + 10.0
        return step.h + bump, (step.state[0] + bump, step.state[1])

    out, (total, count) = unroll(CounterCell(), tf.constant(x), (tf.constant(h0), tf.zeros([B])), step_hook=add)
    want = h0[:, None, :] + np.cumsum(x + (np.arange(T) + 10.0)[None, :, None], axis=1)
    np.testing.assert_array_equal(out.numpy(), want)
    np.testing.assert_array_equal(total.numpy(), want[:, -1])
    np.testing.assert_array_equal(count.numpy(), np.full(B, T))


def test_hook_in_graph_with_unknown_time_dimension():
    x, h0 = counter_inputs()

    def add_t(step):  # step.t is a tensor here
        bump = tf.cast(step.t, tf.float32)
        return step.h + bump, (step.state[0] + bump, step.state[1])

    @tf.function(input_signature=[tf.TensorSpec([None, None, IN]), tf.TensorSpec([None, IN])])
    def run(x, h0):
        return unroll(CounterCell(), x, (h0, tf.zeros(tf.shape(x)[:1])), step_hook=add_t)[0]

    np.testing.assert_array_equal(run(x, h0).numpy(),
                                  h0[:, None, :] + np.cumsum(x + np.arange(T)[None, :, None], axis=1))


def test_observing_hook_sees_every_step_and_changes_nothing():
    x, h0 = counter_inputs()
    seen = []
    state = (tf.constant(h0), tf.zeros([B]))
    out, (total, _) = unroll(CounterCell(), tf.constant(x), state, step_hook=lambda step: seen.append(step))
    np.testing.assert_array_equal(out.numpy(), unroll(CounterCell(), tf.constant(x), state)[0].numpy())
    assert [step.t for step in seen] == list(range(T))
    for t, step in enumerate(seen):
        np.testing.assert_array_equal(step.x_proj.numpy(), x[:, t])
        np.testing.assert_array_equal(step.h.numpy(), out[:, t].numpy())
        np.testing.assert_array_equal(step.prev_state[0].numpy(), out[:, t - 1].numpy() if t else h0)


# --- Real cells.

def real_cell(kind):
    cell = cells.make_cell(kind, H)
    cell.build((None, IN))
    rng = np.random.default_rng(3)
    for v in cell.trainable_variables:  # distinct random values, biases included
        v.assign(rng.uniform(-0.8, 0.8, v.shape))
    return cell


def real_inputs(kind):
    rng = np.random.default_rng(4)
    x = tf.constant(rng.uniform(-1, 1, (B, T, IN)), tf.float32)
    state = [tf.constant(rng.uniform(-0.5, 0.5, (B, H)), tf.float32)
             for _ in range(2 if kind == "lstm" else 1)]
    return x, cells.LSTMState(*state) if kind == "lstm" else state[0]


def assert_nested_close(a, b):
    for x, y in zip(tf.nest.flatten(a), tf.nest.flatten(b), strict=True):
        np.testing.assert_allclose(x.numpy(), y.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", ["elman", "lstm", "gru"])
def test_real_cell_split_in_two_calls_equals_one_call(kind):
    cell = real_cell(kind)
    x, state = real_inputs(kind)
    whole, final = unroll(cell, x, state)
    first, mid = unroll(cell, x[:, :T // 2], state)
    second, final2 = unroll(cell, x[:, T // 2:], mid)
    assert_nested_close(tf.concat([first, second], 1), whole)
    assert_nested_close(final2, final)
    assert type(final2) is type(final)  # LSTMState stays an LSTMState


@pytest.mark.parametrize("kind", ["elman", "lstm", "gru"])
def test_python_unrolled_and_while_loop_agree_with_gradients(kind, monkeypatch):
    cell = real_cell(kind)
    x, state = real_inputs(kind)

    def run():
        with tf.GradientTape() as tape:
            out, final = unroll(cell, x, state)
            loss = (tf.reduce_sum(out * tf.range(1.0, T + 1.0)[:, None])
                    + tf.reduce_sum(tf.nest.flatten(final)[-1]))
        return out, final, tape.gradient(loss, cell.trainable_variables)

    static = run()
    monkeypatch.setattr(unroll_lib, "MAX_STATIC_UNROLL", 0)
    looped = run()
    assert_nested_close(looped, static)

    # And with the time dimension unknown when the graph is traced.
    spec = tf.TensorSpec([None, None, IN], tf.float32)
    state_spec = tf.nest.map_structure(lambda _: tf.TensorSpec([None, H]), state)
    graph = tf.function(lambda x, state: unroll(cell, x, state), input_signature=[spec, state_spec])
    assert_nested_close(graph(x, state), static[:2])


@pytest.mark.parametrize("max_static", [100, 0], ids=["python-unrolled", "while_loop"])
def test_reset_restarts_the_running_sum_from_zero(max_static, monkeypatch):
    """Sentence mode's restart: where reset[b, t], the state going into step t is zero, so the sum
    starts again at x_t (by hand: a cumulative sum cut at the resets)."""
    monkeypatch.setattr(unroll_lib, "MAX_STATIC_UNROLL", max_static)
    x, h0 = counter_inputs()
    reset = np.zeros([B, T], bool)
    reset[0, [2, 3]] = True
    reset[1, 0] = True
    out, (total, count) = unroll(CounterCell(), tf.constant(x), (tf.constant(h0), tf.zeros([B])),
                                 reset=tf.constant(reset))
    want = np.zeros_like(x)
    for b in range(B):
        running, n = h0[b], 0.0
        for t in range(T):
            if reset[b, t]:
                running, n = np.zeros(IN, np.float32), 0.0
            running = running + x[b, t]
            n += 1
            want[b, t] = running
        assert count.numpy()[b] == n  # the count restarted too: every part of the state
    np.testing.assert_array_equal(out.numpy(), want)
    np.testing.assert_array_equal(total.numpy(), want[:, -1])

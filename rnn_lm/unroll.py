"""The one time loop: runs any rnn_lm cell over a sequence, inside the graph."""

import collections

import tensorflow as tf

from rnn_lm import bptt

# Longer static sequences use tf.while_loop; shorter ones are unrolled in
# Python, which measured as fast or faster for the BPTT windows used here.
MAX_STATIC_UNROLL = 100

Step = collections.namedtuple("Step", ["t", "x_proj", "fused", "prev_state", "h", "state"])
Step.__doc__ = """What a ``step_hook`` of ``unroll`` sees at time step t.

t: the step (a Python int in the Python-unrolled loop, a scalar tensor in the
tf.while_loop); x_proj [B, G*H]: the step's input projection; fused: the
cell's fused matrices; prev_state: the state going in; h [B, H] and state:
what ``cell.step`` returned.
"""


def unroll(cell, inputs, initial_state, step_hook=None, reset=None, backward="autodiff"):
    """Runs ``cell`` over ``inputs`` [B, T, in] from ``initial_state``.

    What it computes, as pseudo-code (the fast path of the cell):

        fused = cell.fuse()                       # gate matrices, once
        x_proj = cell.project_inputs(inputs)      # [B, T, G*H], one matmul
        state = initial_state
        for t in range(T):
            if reset is not None:                 # sentence mode: a row restarts from h_(0) = 0
                state = where(reset[:, t], 0, state)
            h_t, new_state = cell.step(x_proj[:, t], state, fused)
            if step_hook:                         # analysis only; None in the model
                replaced = step_hook(Step(t, x_proj[:, t], fused, state, h_t, new_state))
                if replaced is not None:
                    h_t, new_state = replaced
            h[:, t], state = h_t, new_state
        return h, state                           # [B, T, H], final state

    The returned state is what the caller carries into the next window; since
    the next window is a separate call, backpropagation stops at the window
    edge (truncated BPTT).

    The loop computes in the dtype of ``inputs`` (float32, or bfloat16 for
    mixed precision).

    Args:
      step_hook: optional; called once per step with a ``Step``.  It may
        observe (return None) or return a replacement ``(h_t, new_state)``
        (``rnn_lm.analysis`` adds gradient probes this way and records gates).
        A hook that appends to Python lists works in eager mode and in the
        Python-unrolled loop, not inside a traced tf.while_loop.
      reset: optional bool [B, T]; where true, the state going into step t
        is the zero state (nothing before it reaches that step, gradients
        included).
      backward: "autodiff" (TensorFlow differentiates the loop), or "written":
        ``rnn_lm.bptt``'s backward pass written out, where it applies (no
        ``step_hook``, a static window of at most MAX_STATIC_UNROLL steps;
        elsewhere autodiff).  The two compute the same values and gradients.

    Returns:
      (outputs [B, T, H], final_state), the state in the cell's own structure.
    """
    fused = cell.fuse(inputs.dtype)
    x_proj = cell.project_inputs(inputs, fused)  # [B, T, G*H]
    x_proj = tf.transpose(x_proj, [1, 0, 2])  # [T, B, G*H]
    num_steps = inputs.shape[1]
    state = tf.nest.map_structure(lambda s: tf.cast(s, inputs.dtype), initial_state)
    if reset is not None:
        reset = tf.transpose(reset)  # [T, B]
    if backward == "written" and step_hook is None and bptt.supported(cell, num_steps, MAX_STATIC_UNROLL):
        outputs, state = bptt.window(cell, x_proj, state, fused, reset)
        return tf.transpose(outputs, [1, 0, 2]), state
    if num_steps is not None and num_steps <= MAX_STATIC_UNROLL:
        outputs = []
        for t, x_t in enumerate(tf.unstack(x_proj, num=num_steps)):
            state = restart(state, reset[t]) if reset is not None else state
            h, state = _step(cell, t, x_t, state, fused, step_hook)
            outputs.append(h)
        return tf.stack(outputs, axis=1), state

    steps = tf.shape(x_proj)[0]
    outputs = tf.TensorArray(x_proj.dtype, size=steps)

    def body(t, state, outputs):
        state = restart(state, reset[t]) if reset is not None else state
        h, state = _step(cell, t, x_proj[t], state, fused, step_hook)
        return t + 1, state, outputs.write(t, h)

    _, state, outputs = tf.while_loop(
        lambda t, *_: t < steps, body, (tf.constant(0), state, outputs))
    return tf.transpose(outputs.stack(), [1, 0, 2]), state


def restart(state, rows):
    """``state`` with the rows where ``rows`` [B] is true set to zero (any state structure, any rank)."""
    def zeroed(s):
        where = tf.reshape(rows, [-1] + [1] * (s.shape.rank - 1))
        return tf.where(where, tf.zeros_like(s), s)
    return tf.nest.map_structure(zeroed, state)


def _step(cell, t, x_t, state, fused, step_hook):
    h, new_state = cell.step(x_t, state, fused)
    if step_hook is not None:
        replaced = step_hook(Step(t, x_t, fused, state, h, new_state))
        if replaced is not None:
            h, new_state = replaced
    return h, new_state

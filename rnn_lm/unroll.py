"""The one time loop: runs any rnn_lm cell over a sequence, inside the graph."""

import tensorflow as tf

# Longer static sequences use tf.while_loop; shorter ones are unrolled in
# Python, which measured as fast or faster for the BPTT windows used here.
MAX_STATIC_UNROLL = 100


def unroll(cell, inputs, initial_state):
    """Runs ``cell`` over ``inputs`` [B, T, in] from ``initial_state``.

    What it computes, as pseudo-code (the fast path of the cell):

        fused = cell.fuse()                       # gate matrices, once
        x_proj = cell.project_inputs(inputs)      # [B, T, G*H], one matmul
        state = initial_state
        for t in range(T):
            h[:, t], state = cell.step(x_proj[:, t], state, fused)
        return h, state                           # [B, T, H], final state

    The returned state is what the caller carries into the next window; since
    the next window is a separate call, backpropagation stops at the window
    edge (truncated BPTT).

    The loop computes in the dtype of ``inputs`` (float32, or bfloat16 for
    mixed precision).

    Returns:
      (outputs [B, T, H], final_state), the state in the cell's own structure.
    """
    fused = cell.fuse(inputs.dtype)
    x_proj = cell.project_inputs(inputs, fused)  # [B, T, G*H]
    x_proj = tf.transpose(x_proj, [1, 0, 2])  # [T, B, G*H]
    num_steps = inputs.shape[1]
    state = tf.nest.map_structure(lambda s: tf.cast(s, inputs.dtype), initial_state)
    if num_steps is not None and num_steps <= MAX_STATIC_UNROLL:
        outputs = []
        for x_t in tf.unstack(x_proj, num=num_steps):
            h, state = cell.step(x_t, state, fused)
            outputs.append(h)
        return tf.stack(outputs, axis=1), state

    steps = tf.shape(x_proj)[0]
    outputs = tf.TensorArray(x_proj.dtype, size=steps)

    def body(t, state, outputs):
        h, state = cell.step(x_proj[t], state, fused)
        return t + 1, state, outputs.write(t, h)

    _, state, outputs = tf.while_loop(
        lambda t, *_: t < steps, body, (tf.constant(0), state, outputs))
    return tf.transpose(outputs.stack(), [1, 0, 2]), state

"""Backpropagation through time written out, as the lecture draws it: one window of a cell, forward
over the time steps, then backward over them in reverse, each weight's gradient formed at the end
in one product over all steps.

Autodiff through the unrolled loop (``rnn_lm.unroll``) computes the same gradients, but it adds up
the recurrent weights' gradient one time step at a time, T products of [H, B] x [B, G*H]: with
B = 20 rows their inner dimension is 20, which a CPU's matmul runs far below its rate.  Here the
backward pass keeps each step's gate gradient dz_t [B, G*H] and forms

    dJ/dU = sum_t h_{t-1}^T dz_t = [h_0; ...; h_{T-1}]^T [dz_1; ...; dz_T]

as one [H, T*B] x [T*B, G*H] product at the end.  The per-step work is only what the recurrence
needs: dh_{t-1} = dz_t U^T (and the cell's elementwise terms).  The input projection's gradient
is dz itself (x_proj = x W_x + b was computed for all steps at once, so autodiff forms dJ/dW_x in
one product already).

Each window is a ``tf.custom_gradient`` function of (x_proj [T, B, G*H], the initial state, the
recurrent matrices); dropout, embedding and softmax stay with autodiff around it.  ``supported``
says when it applies (a static window of at most ``unroll.MAX_STATIC_UNROLL`` steps); elsewhere
``unroll`` uses autodiff.  tests/test_bptt.py proves both equal, values and gradients, for every
cell, in float32, float64 and bfloat16, with a carried state and sentence-mode resets, and against
central finite differences.

Per step t (row vectors; * is elementwise; a' the derivative of a gate's activation):

    LSTM  dh = dJ/dh_t + dh_next
          do = dh * tanh(c_t)                dc = dh * o * (1 - tanh(c_t)^2) + dc_next
          di = dc * g    df = dc * c_{t-1}   dg = dc * i
          dz_t = [di * i(1 - i), df * f(1 - f), do * o(1 - o), dg * (1 - g^2)]
          dh_next = dz_t U^T                 dc_next = dc * f
    GRU   dz = dh * (h_{t-1} - g)            dg = dh * (1 - z)      da_g = dg * (1 - g^2)
          d(r h_{t-1}) = da_g W_hg^T         dr = d(r h_{t-1}) * h_{t-1}
          da_zr = [dz * z(1 - z), dr * r(1 - r)]
          dh_next = dh * z + d(r h_{t-1}) * r + da_zr U_zr^T
          dW_hg = sum_t (r_t h_{t-1})^T da_g,t and dU_zr = sum_t h_{t-1}^T da_zr,t (one product each)
    Elman da = dh * f'(a_t)  (from h_t: tanh 1 - h^2, sigmoid h(1 - h), relu h > 0)
          dh_next = da U^T

A sentence-mode restart (``reset``) zeroes the state going into step t for its rows, so no gradient
passes back through it: dh_next (and dc_next) are zeroed there too.
"""

import tensorflow as tf

from rnn_lm import cells as cells_lib

# The Elman activations' derivatives, written from their outputs h = f(a).
_ELMAN_DERIVATIVE = {
    "tanh": lambda h: 1.0 - h * h,
    "sigmoid": lambda h: h * (1.0 - h),
    "relu": lambda h: tf.cast(h > 0, h.dtype),
}


# backward="auto": the written backward for these cells from this many hidden units on, autodiff
# below and for the Elman cell, as measured (docs/performance.md, "Backpropagation through time
# written out"): at H = 650 it was 1.08-1.09x autodiff for the LSTM and 1.19-1.20x for the GRU; at
# H = 200, where the softmax part is most of the step, 0.95-0.98x and 1.00-1.04x; the Elman cell
# within the noise at both.
AUTO_FROM_HIDDEN = {"lstm": 400, "gru": 400}


def resolve(backward, cell_type, hidden_size):
    """"autodiff" or "written" for TrainConfig.backward (auto: by ``AUTO_FROM_HIDDEN``)."""
    if backward != "auto":
        return backward
    return "written" if hidden_size >= AUTO_FROM_HIDDEN.get(cell_type, float("inf")) else "autodiff"


def supported(cell, num_steps, max_steps):
    """Whether ``window`` runs ``cell`` over a window of ``num_steps`` (a static int or None)."""
    return num_steps is not None and 0 < num_steps <= max_steps and isinstance(
        cell, (cells_lib.LSTMCell, cells_lib.GRUCell, cells_lib.ElmanCell))


def window(cell, x_proj, state, fused, reset=None):
    """The cell over one window with the backward pass above: x_proj [T, B, G*H] (time-major, the
    inputs projected), ``state`` in the cell's structure and ``x_proj``'s dtype, ``fused`` the cell's
    ``fuse()``; reset [T, B] bool or None.  Returns (h [T, B, H], the final state)."""
    num_steps = x_proj.shape[0]
    keep = None if reset is None else [tf.cast(~r, x_proj.dtype)[:, None] for r in tf.unstack(reset, num=num_steps)]
    if isinstance(cell, cells_lib.LSTMCell):
        h, c = _lstm(num_steps, keep)(x_proj, state.h, state.c, fused["U"])
        return h, cells_lib.LSTMState(h[-1], c)
    if isinstance(cell, cells_lib.GRUCell):
        h = _gru(num_steps, keep)(x_proj, state, fused["U_zr"], fused["W_hg"])
        return h, h[-1]
    h = _elman(num_steps, keep, cell._f, _ELMAN_DERIVATIVE[cell.activation])(x_proj, state, fused["U"])
    return h, h[-1]


def _restarted(x, keep, t):
    return x if keep is None else x * keep[t]


def _weight_gradient(inputs, grads):
    """sum_t inputs_t^T grads_t as one product: lists of [B, in] and [B, out] -> [in, out]."""
    return tf.matmul(tf.concat(inputs, axis=0), tf.concat(grads, axis=0), transpose_a=True)


def _zeros_if_none(g, like):
    return tf.zeros_like(like) if g is None else g


def _upstream(dh_all, like, num_steps):
    """The gradient arriving at each step's output h_t, [B, H] each (zeros where none arrives)."""
    return [tf.zeros_like(like)] * num_steps if dh_all is None else tf.unstack(dh_all, num=num_steps)


def _lstm(num_steps, keep):
    @tf.custom_gradient
    def lstm(x_proj, h0, c0, U):
        steps = tf.unstack(x_proj, num=num_steps)
        h_prev, c_prev = h0, c0
        saved, outputs = [], []
        for t, x_t in enumerate(steps):
            h_prev, c_prev = _restarted(h_prev, keep, t), _restarted(c_prev, keep, t)
            i, f, o, g = tf.split(x_t + tf.matmul(h_prev, U), 4, axis=-1)
            i, f, o, g = tf.sigmoid(i), tf.sigmoid(f), tf.sigmoid(o), tf.tanh(g)
            c = f * c_prev + i * g
            tanh_c = tf.tanh(c)
            h = o * tanh_c
            saved.append((h_prev, c_prev, i, f, o, g, tanh_c))
            outputs.append(h)
            h_prev, c_prev = h, c

        def grad(dh_all, dc_last):
            dh_all = _upstream(dh_all, h0, num_steps)
            dh_next, dc_next = tf.zeros_like(h0), _zeros_if_none(dc_last, c0)
            dz = [None] * len(steps)
            for t in reversed(range(len(steps))):
                h_prev_t, c_prev_t, i, f, o, g, tanh_c = saved[t]
                dh = dh_all[t] + dh_next
                dc = dh * o * (1.0 - tanh_c * tanh_c) + dc_next
                dz[t] = tf.concat([dc * g * i * (1.0 - i), dc * c_prev_t * f * (1.0 - f),
                                   dh * tanh_c * o * (1.0 - o), dc * i * (1.0 - g * g)], axis=-1)
                dh_next = _restarted(tf.matmul(dz[t], U, transpose_b=True), keep, t)
                dc_next = _restarted(dc * f, keep, t)
            return tf.stack(dz), dh_next, dc_next, _weight_gradient([s[0] for s in saved], dz)

        return (tf.stack(outputs), c), grad

    return lstm


def _gru(num_steps, keep):
    @tf.custom_gradient
    def gru(x_proj, h0, U_zr, W_hg):
        steps = tf.unstack(x_proj, num=num_steps)
        H = h0.shape[-1]
        h_prev, saved, outputs = h0, [], []
        for t, x_t in enumerate(steps):
            h_prev = _restarted(h_prev, keep, t)
            z, r = tf.split(tf.sigmoid(x_t[:, :2 * H] + tf.matmul(h_prev, U_zr)), 2, axis=-1)
            rh = r * h_prev
            g = tf.tanh(x_t[:, 2 * H:] + tf.matmul(rh, W_hg))
            h = z * h_prev + (1.0 - z) * g
            saved.append((h_prev, z, r, rh, g))
            outputs.append(h)
            h_prev = h

        def grad(dh_all):
            dh_all = _upstream(dh_all, h0, num_steps)
            dh_next = tf.zeros_like(h0)
            da_zr, da_g = [None] * len(steps), [None] * len(steps)
            for t in reversed(range(len(steps))):
                h_prev_t, z, r, rh, g = saved[t]
                dh = dh_all[t] + dh_next
                da_g[t] = dh * (1.0 - z) * (1.0 - g * g)
                d_rh = tf.matmul(da_g[t], W_hg, transpose_b=True)
                da_zr[t] = tf.concat([dh * (h_prev_t - g) * z * (1.0 - z), d_rh * h_prev_t * r * (1.0 - r)], axis=-1)
                dh_next = _restarted(dh * z + d_rh * r + tf.matmul(da_zr[t], U_zr, transpose_b=True), keep, t)
            dx = tf.stack([tf.concat([a, b], axis=-1) for a, b in zip(da_zr, da_g)])
            return (dx, dh_next, _weight_gradient([s[0] for s in saved], da_zr),
                    _weight_gradient([s[3] for s in saved], da_g))

        return tf.stack(outputs), grad

    return gru


def _elman(num_steps, keep, f, derivative):
    @tf.custom_gradient
    def elman(x_proj, h0, U):
        steps = tf.unstack(x_proj, num=num_steps)
        h_prev, inputs, outputs = h0, [], []
        for t, x_t in enumerate(steps):
            h_prev = _restarted(h_prev, keep, t)
            h = f(x_t + tf.matmul(h_prev, U))
            inputs.append(h_prev)
            outputs.append(h)
            h_prev = h

        def grad(dh_all):
            dh_all = _upstream(dh_all, h0, num_steps)
            dh_next = tf.zeros_like(h0)
            da = [None] * len(steps)
            for t in reversed(range(len(steps))):
                da[t] = (dh_all[t] + dh_next) * derivative(outputs[t])
                dh_next = _restarted(tf.matmul(da[t], U, transpose_b=True), keep, t)
            return tf.stack(da), dh_next, _weight_gradient(inputs, da)

        return tf.stack(outputs), grad

    return elman

"""The lecture's three recurrent cells as Keras 3 layers.

Every cell has two faces over the same variables:

* ``call(x_t, states)`` is the Keras RNN-cell protocol and the slides written
  out literally, one ``tf.matmul`` per symbol, so ``keras.layers.RNN(cell)``
  works and the code reads like the lecture;
* ``fuse()`` / ``project_inputs()`` / ``step()`` is the fast path that
  ``rnn_lm.unroll`` drives: the gate matrices are concatenated once per
  sequence, the input projections of all time steps are one matmul before the
  loop, and each time step does one matmul against the concatenated recurrent
  weights.  Tests prove the two faces equal.

Row-vector convention throughout (``x @ W``): ``x_t`` is ``[B, in]``, ``h`` is
``[B, H]``.  The trainable parameters are exactly the slides' symbols.
"""

import collections

import keras
import tensorflow as tf

from rnn_lm import config as config_lib

# The names live in rnn_lm.config (checked there before TensorFlow loads); each is a tf.nn function.
ACTIVATIONS = {name: getattr(tf.nn, name) for name in config_lib.ACTIVATIONS}

LSTMState = collections.namedtuple("LSTMState", ["h", "c"])
LSTMState.__doc__ = "State of an LSTM layer: hidden state h [B, H] and memory cell c [B, H]."


def dense(x, w):
    """x [..., in] @ w [in, out] as one 2-D matmul.

    tf.matmul on a rank-3 x broadcasts w as a batched matmul, whose weight
    gradient is far slower than one [B*T, in] x [in, out] product.
    """
    if x.shape.rank == 2:
        return tf.matmul(x, w)
    flat = tf.matmul(tf.reshape(x, [-1, tf.shape(x)[-1]]), w)
    out = tf.reshape(flat, tf.concat([tf.shape(x)[:-1], tf.shape(w)[-1:]], axis=0))
    out.set_shape(x.shape[:-1].concatenate(w.shape[-1:]))
    return out


def distinct_initializer(initializer):
    """A copy of ``initializer`` that draws new values on every call.

    A Keras 3 initializer seeded with an int, or unseeded, returns the same
    values each time it is called: shared by the gate matrices of a cell it
    would make W_xi, W_xf, W_xo and W_xg identical, and the gates redundant.
    Seeding the copy with a SeedGenerator (itself seeded from Keras' global
    seed) gives each variable its own values, reproducibly.
    """
    initializer = keras.initializers.get(initializer)
    config = initializer.get_config()
    if "seed" not in config or not (config["seed"] is None or isinstance(config["seed"], int)):
        return initializer  # constant, or already drawing fresh values
    seed = config["seed"]
    config["seed"] = keras.random.SeedGenerator(seed)
    return type(initializer).from_config(config)


def _first(states):
    """Keras passes single-tensor states as a one-element list."""
    return states[0] if isinstance(states, (list, tuple)) else states


class _SlideCell(keras.layers.Layer):
    """Shared plumbing: initialisers, weight creation, zero state."""

    # Names of the input weights, recurrent weights and biases, in gate order.
    INPUT_WEIGHTS = ()
    RECURRENT_WEIGHTS = ()
    BIASES = ()
    # G, the number of gate blocks (one per input weight): the fused matrices are G*H wide.
    GATES = 0

    def __init__(self, units, kernel_initializer="glorot_uniform",
                 recurrent_initializer="orthogonal", bias_initializer="zeros",
                 **kwargs):
        super().__init__(**kwargs)
        if int(units) <= 0:
            raise ValueError(f"units must be positive, got {units}")
        self.units = int(units)
        self.kernel_initializer = distinct_initializer(kernel_initializer)
        self.recurrent_initializer = distinct_initializer(recurrent_initializer)
        self.bias_initializer = distinct_initializer(bias_initializer)

    @property
    def state_size(self):
        return self.units

    @property
    def output_size(self):
        return self.units

    def _bias_initializer(self, name):
        return self.bias_initializer

    def build(self, input_shape):
        in_dim = int(input_shape[-1])
        H = self.units
        for name in self.INPUT_WEIGHTS:
            setattr(self, name, self.add_weight(
                shape=(in_dim, H), initializer=self.kernel_initializer, name=name))
        for name in self.RECURRENT_WEIGHTS:
            setattr(self, name, self.add_weight(
                shape=(H, H), initializer=self.recurrent_initializer, name=name))
        for name in self.BIASES:
            setattr(self, name, self.add_weight(
                shape=(H,), initializer=self._bias_initializer(name), name=name))
        super().build(input_shape)

    def get_initial_state(self, batch_size=None):
        """Keras protocol: a list of zero tensors, one per state tensor."""
        return tf.nest.flatten(self.zero_state(batch_size))

    def zero_state(self, batch_size, dtype=tf.float32):
        """The cell's own (structured) zero state, h_(0) = 0."""
        return tf.zeros([batch_size, self.units], dtype)

    def get_config(self):
        config = super().get_config()
        config.update(
            units=self.units,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
            recurrent_initializer=keras.initializers.serialize(self.recurrent_initializer),
            bias_initializer=keras.initializers.serialize(self.bias_initializer))
        return config

    # Fast path.
    def fuse(self, dtype=None):
        """The gate matrices concatenated once per sequence (inside the graph).

        ``dtype`` (e.g. tf.bfloat16 for mixed precision) casts them once too;
        the variables stay float32 and receive float32 gradients.
        """
        fused = self._fuse()
        if dtype is None or dtype == tf.float32:
            return fused
        return {name: tf.cast(w, dtype) for name, w in fused.items()}

    def _fuse(self):
        raise NotImplementedError

    def project_inputs(self, x, fused):
        """Input projection and bias of every gate: ``[..., in] -> [..., G*H]``.

        Called once on all time steps ``[B, T, in]`` so the per-step work is
        only the recurrent product.
        """
        return dense(x, fused["W_x"]) + fused["b"]

    def step(self, x_proj, state, fused):
        """One time step from a projected input ``[B, G*H]``: returns (h, state)."""
        raise NotImplementedError

    def keep_gate(self, x_proj, state, fused):
        """The gate that carries the old state over at this step, [B, H]; None if the cell has none.

        Same arguments as ``step`` (the step's projected input and the state
        going in), for the analysis in ``rnn_lm.analysis``.
        """
        return None

    def _block(self, tensor, k):
        """Gate block k (0-based, in gate order) of a fused ``[..., G*H]`` tensor."""
        return tensor[..., k * self.units:(k + 1) * self.units]


class ElmanCell(_SlideCell):
    """Simple recurrent network (Elman, 1990).

        h_t = f(x_t W + h_{t-1} U + b),   f in {tanh, relu, sigmoid}

    Parameters: ``W`` [in, H], ``U`` [H, H], ``b`` [H].  The state is ``h``.

    Args:
      units: H, the size of the hidden state.
      activation: "tanh" (default), "relu" or "sigmoid".
      kernel_initializer, recurrent_initializer, bias_initializer: Keras
        initialisers for W, U and b (defaults glorot_uniform, orthogonal, zeros).
    """

    INPUT_WEIGHTS = ("W",)
    RECURRENT_WEIGHTS = ("U",)
    BIASES = ("b",)
    GATES = len(INPUT_WEIGHTS)

    def __init__(self, units, activation="tanh", **kwargs):
        super().__init__(units, **kwargs)
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        self.activation = activation
        self._f = ACTIVATIONS[activation]

    def call(self, inputs, states):
        h_prev = _first(states)
        h = self._f(tf.matmul(inputs, self.W) + tf.matmul(h_prev, self.U) + self.b)
        return h, [h]

    def _fuse(self):
        return {"W_x": tf.convert_to_tensor(self.W), "U": tf.convert_to_tensor(self.U),
                "b": tf.convert_to_tensor(self.b)}

    def step(self, x_proj, state, fused):
        h = self._f(x_proj + tf.matmul(state, fused["U"]))
        return h, h

    def get_config(self):
        return {**super().get_config(), "activation": self.activation}


class LSTMCell(_SlideCell):
    """Long short-term memory (Hochreiter & Schmidhuber, 1997), the lecture's form.

        i_t = sigmoid(x_t W_xi + h_{t-1} W_hi + b_i)      input gate
        f_t = sigmoid(x_t W_xf + h_{t-1} W_hf + b_f)      forget gate
        o_t = sigmoid(x_t W_xo + h_{t-1} W_ho + b_o)      output gate
        g_t = tanh(x_t W_xg + h_{t-1} W_hg + b_g)         candidate
        c_t = f_t * c_{t-1} + i_t * g_t
        h_t = o_t * tanh(c_t)

    Parameters: ``W_xi W_xf W_xo W_xg`` [in, H]; ``W_hi W_hf W_ho W_hg`` [H, H];
    ``b_i b_f b_o b_g`` [H].  ``b_f`` starts at 1.0 so that early in training
    the memory is kept (Gers et al., 2000); it is an initial value, not an
    extra term.  The state is ``LSTMState(h, c)``.

    Args:
      units: H, the size of h and c.
      kernel_initializer, recurrent_initializer, bias_initializer: as for
        ElmanCell; the bias initialiser applies to b_i, b_o, b_g.
    """

    INPUT_WEIGHTS = ("W_xi", "W_xf", "W_xo", "W_xg")
    RECURRENT_WEIGHTS = ("W_hi", "W_hf", "W_ho", "W_hg")
    BIASES = ("b_i", "b_f", "b_o", "b_g")
    GATES = len(INPUT_WEIGHTS)

    @property
    def state_size(self):
        return LSTMState(self.units, self.units)

    def _bias_initializer(self, name):
        return keras.initializers.Constant(1.0) if name == "b_f" else self.bias_initializer

    def zero_state(self, batch_size, dtype=tf.float32):
        zeros = tf.zeros([batch_size, self.units], dtype)
        return LSTMState(zeros, zeros)

    def call(self, inputs, states):
        h_prev, c_prev = states
        x = inputs
        i = tf.sigmoid(tf.matmul(x, self.W_xi) + tf.matmul(h_prev, self.W_hi) + self.b_i)
        f = tf.sigmoid(tf.matmul(x, self.W_xf) + tf.matmul(h_prev, self.W_hf) + self.b_f)
        o = tf.sigmoid(tf.matmul(x, self.W_xo) + tf.matmul(h_prev, self.W_ho) + self.b_o)
        g = tf.tanh(tf.matmul(x, self.W_xg) + tf.matmul(h_prev, self.W_hg) + self.b_g)
        c = f * c_prev + i * g
        h = o * tf.tanh(c)
        return h, LSTMState(h, c)

    def _fuse(self):
        return {"W_x": tf.concat([self.W_xi, self.W_xf, self.W_xo, self.W_xg], axis=1),
                "U": tf.concat([self.W_hi, self.W_hf, self.W_ho, self.W_hg], axis=1),
                "b": tf.concat([self.b_i, self.b_f, self.b_o, self.b_g], axis=0)}

    def step(self, x_proj, state, fused):
        gates = x_proj + tf.matmul(state.h, fused["U"])  # [B, G*H]
        i, f, o, g = tf.split(gates, self.GATES, axis=-1)
        c = tf.sigmoid(f) * state.c + tf.sigmoid(i) * tf.tanh(g)
        h = tf.sigmoid(o) * tf.tanh(c)
        return h, LSTMState(h, c)

    def keep_gate(self, x_proj, state, fused):
        """The forget gate f_t (block 1 of i, f, o, g)."""
        return tf.sigmoid(self._block(x_proj, 1) + tf.matmul(state.h, self._block(fused["U"], 1)))


class GRUCell(_SlideCell):
    """Gated recurrent unit (Cho et al., 2014), exactly the lecture's equations.

        z_t = sigmoid(x_t W_xz + h_{t-1} W_hz + b_z)            update gate
        r_t = sigmoid(x_t W_xr + h_{t-1} W_hr + b_r)            reset gate
        g_t = tanh(x_t W_xg + (r_t * h_{t-1}) W_hg + b_g)       candidate
        h_t = z_t * h_{t-1} + (1 - z_t) * g_t

    Parameters: ``W_xz W_xr W_xg`` [in, H]; ``W_hz W_hr W_hg`` [H, H];
    ``b_z b_r b_g`` [H].  The state is ``h``.

    Which GRU this is: the reset gate multiplies h_{t-1} *before* the product
    with W_hg (Keras ``reset_after=False``).  cuDNN and Keras' default
    (``reset_after=True``) apply it after: ``g_t = tanh(x_t W_xg + b_g +
    r_t * (h_{t-1} W_hg + b_hg))``, with a second recurrent bias; the two are
    different functions and their weights do not transfer as they are.  The
    update convention (z keeps the old state) is the lecture's and Keras'.

    Args: as for ElmanCell, without ``activation``.
    """

    INPUT_WEIGHTS = ("W_xz", "W_xr", "W_xg")
    RECURRENT_WEIGHTS = ("W_hz", "W_hr", "W_hg")
    BIASES = ("b_z", "b_r", "b_g")
    GATES = len(INPUT_WEIGHTS)

    def call(self, inputs, states):
        h_prev = _first(states)
        x = inputs
        z = tf.sigmoid(tf.matmul(x, self.W_xz) + tf.matmul(h_prev, self.W_hz) + self.b_z)
        r = tf.sigmoid(tf.matmul(x, self.W_xr) + tf.matmul(h_prev, self.W_hr) + self.b_r)
        g = tf.tanh(tf.matmul(x, self.W_xg) + tf.matmul(r * h_prev, self.W_hg) + self.b_g)
        h = z * h_prev + (1.0 - z) * g
        return h, [h]

    def _fuse(self):
        return {"W_x": tf.concat([self.W_xz, self.W_xr, self.W_xg], axis=1),
                "U_zr": tf.concat([self.W_hz, self.W_hr], axis=1),
                "W_hg": tf.convert_to_tensor(self.W_hg),
                "b": tf.concat([self.b_z, self.b_r, self.b_g], axis=0)}

    def step(self, x_proj, state, fused):
        h_prev = state
        x_zr, x_g = x_proj[:, :2 * self.units], x_proj[:, 2 * self.units:]
        z, r = tf.split(tf.sigmoid(x_zr + tf.matmul(h_prev, fused["U_zr"])), 2, axis=-1)
        g = tf.tanh(x_g + tf.matmul(r * h_prev, fused["W_hg"]))
        h = z * h_prev + (1.0 - z) * g
        return h, h

    def keep_gate(self, x_proj, state, fused):
        """The update gate z_t (block 0 of z, r, g)."""
        return tf.sigmoid(self._block(x_proj, 0) + tf.matmul(state, self._block(fused["U_zr"], 0)))


# The cell names live in rnn_lm.config; the classes are listed in the same order.
CELLS = dict(zip(config_lib.CELL_TYPES, (ElmanCell, LSTMCell, GRUCell), strict=True))


def make_cell(kind, units, activation="tanh", **kwargs):
    """Build a cell by name (one of ``rnn_lm.config.CELL_TYPES``); ``activation`` is the Elman cell's."""
    if kind not in CELLS:
        raise ValueError(f"unknown cell {kind!r}; expected one of {sorted(CELLS)}")
    if CELLS[kind] is ElmanCell:
        kwargs["activation"] = activation
    return CELLS[kind](units, **kwargs)

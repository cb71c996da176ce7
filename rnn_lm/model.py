"""The RNN language model: ids -> input representation -> stacked cells -> softmax logits.

    x_t = E[w_t]                 (embedding; or one-hot(w_t) when embedding_size == 0)
    h_t^(l) = cell_l(x_t^(l), h_{t-1}^(l)),   x_t^(l+1) = dropout(h_t^(l))
    logits_t = h_t^(L) V + b_y   (V = E^T when the embeddings are tied)
    y_hat_t = softmax(logits_t)

With ``softmax="adaptive"`` the output layer is ``rnn_lm.adaptive.AdaptiveSoftmax`` and ``logits_t``
are its normalised log-probabilities (log-probabilities are logits whose softmax is themselves), so
every reader of the logits gets the same distribution.

Regularisation in training (all off by default): dropout on the
non-recurrent connections (Zaremba et al., 2014), a new mask per time step or,
``locked_dropout``, one mask per stream for the whole window (the variational
dropout of Gal & Ghahramani, 2016, on the connections between layers); and
``embedding_dropout``, which removes whole word types from a step's input
(every occurrence of a dropped word reads a zero vector; the others are scaled
by 1 / (1 - p)).

The model takes and returns the recurrent state (one entry per layer, each in
its cell's own structure), so the caller carries it from window to window.  In
sentence mode (``reset_state="eos"``) every row's state starts again from
h_(0) = 0 at each ``<eos>`` input, in ``call`` and in ``step`` alike, so each
line of a stream is scored as if it stood alone.
"""

import keras
import tensorflow as tf

from rnn_lm import bptt
from rnn_lm import cells as cells_lib
from rnn_lm import losses
from rnn_lm.adaptive import AdaptiveSoftmax
from rnn_lm.cells import distinct_initializer
from rnn_lm.data.vocab import Vocabulary
from rnn_lm.unroll import restart, unroll


class RNNLanguageModel(keras.Model):
    """A stack of the lecture's cells between an input representation and a softmax.

    Args:
      config: an ``rnn_lm.config.ModelConfig`` with ``vocab_size`` set.

    Variables: ``embedding`` [V, E] (absent for one-hot input); each layer's
    cell variables (``W``, ``U``, ``b`` or the gate matrices); the output
    ``V`` [H, |V|] (absent when tied) and ``b_y`` [|V|], or the adaptive softmax's
    (``adaptive_softmax``).
    """

    def __init__(self, config, compute_dtype="float32", backward="auto", **kwargs):
        super().__init__(**kwargs)
        # How the recurrent layers are differentiated (TrainConfig.backward): "autodiff" or "written".
        self.backward = bptt.resolve(backward, config.cell, config.hidden_size)
        # Mixed precision: variables, state and logits stay float32 (so does the
        # loss); the cells and the softmax product run in compute_dtype.
        self.compute_dtype_ = tf.as_dtype(compute_dtype)
        if config.vocab_size < 2:
            raise ValueError(f"vocab_size must be set (>= 2), got {config.vocab_size}")
        self.config = config
        s = config.init_scale
        self._init = (lambda: keras.initializers.RandomUniform(-s, s)) if s > 0 else None
        cell_init = ({"kernel_initializer": self._init(), "recurrent_initializer": self._init()}
                     if self._init else {})
        # One attribute per layer: TensorFlow checkpoints follow attributes,
        # but not the lists Keras 3 tracks layers in.
        for l in range(config.num_layers):
            setattr(self, f"layer_{l + 1}", cells_lib.make_cell(
                config.cell, config.hidden_size, activation=config.activation,
                name=f"{config.cell}_{l + 1}", **cell_init))
        self.build(None)

    @property
    def cells(self):
        """The recurrent cells, bottom layer first."""
        return [getattr(self, f"layer_{l + 1}") for l in range(self.config.num_layers)]

    @property
    def input_size(self):
        return self.config.embedding_size or self.config.vocab_size

    def build(self, input_shape=None):
        if self.built:
            return
        c = self.config
        uniform = self._init or (lambda: keras.initializers.RandomUniform(-0.05, 0.05))
        if c.embedding_size:
            self.embedding = self.add_weight(shape=(c.vocab_size, c.embedding_size),
                                             initializer=distinct_initializer(uniform()), name="embedding")
        in_dim = self.input_size
        for cell in self.cells:
            cell.build((None, in_dim))
            in_dim = c.hidden_size
        output_init = self._init or (lambda: keras.initializers.GlorotUniform())
        if c.softmax == "adaptive":
            self.adaptive_softmax = AdaptiveSoftmax(c.hidden_size, c.vocab_size, c.cutoffs, c.adaptive_factor,
                                                    output_init, self.compute_dtype_, name="adaptive_softmax")
            self.built = True
            return
        if not c.tie_embeddings:
            self.V = self.add_weight(shape=(c.hidden_size, c.vocab_size), name="V",
                                     initializer=distinct_initializer(output_init()))
        self.b_y = self.add_weight(shape=(c.vocab_size,), initializer="zeros", name="b_y")
        self.built = True

    def zero_state(self, batch_size):
        """h_(0) = 0 for every layer."""
        return [cell.zero_state(batch_size) for cell in self.cells]

    def embed(self, ids):
        """ids [B, T] -> inputs of the first layer [B, T, E] (or one-hot [B, T, |V|])."""
        if self.config.embedding_size:
            # Gathered from the TensorFlow variable itself (ResourceGather: only the rows read).  Through
            # the Keras variable, TensorFlow reads the whole table first, and once SGD has scattered
            # into it, that read copies it (|V| x E floats per step; docs/performance.md).
            return tf.cast(tf.gather(self.embedding.value, ids), self.compute_dtype_)
        return tf.one_hot(ids, self.config.vocab_size, dtype=self.compute_dtype_)

    def output_logits(self, h):
        """h [..., H] -> logits [..., |V|], float32 (the adaptive softmax's: its log-probabilities)."""
        if self.config.softmax == "adaptive":
            return self.adaptive_softmax.log_probs(h)
        w = tf.transpose(self.embedding) if self.config.tie_embeddings else self.V
        flat = tf.reshape(h, [-1, tf.shape(h)[-1]])
        # BiasAdd, not +: TensorFlow fuses a MatMul followed by a BiasAdd into one kernel.
        logits = tf.nn.bias_add(tf.cast(tf.matmul(flat, tf.cast(w, h.dtype)), tf.float32), self.b_y)
        logits = tf.reshape(logits, tf.concat([tf.shape(h)[:-1], [self.config.vocab_size]], axis=0))
        logits.set_shape(h.shape[:-1].concatenate([self.config.vocab_size]))
        return logits

    def token_nll(self, h, targets):
        """-log y_hat[target] per token from what the softmax reads: h [B, T, H], targets [B, T] -> [B, T].
        The adaptive softmax computes each cluster only for the tokens that need it."""
        if self.config.softmax == "adaptive":
            return self.adaptive_softmax.nll(h, targets)
        return losses.token_cross_entropy(self.output_logits(h), targets)

    def _dropout(self, x, rate, site, seed):
        """Dropout on the non-recurrent connections only (Zaremba et al., 2014).

        Sites: 0 before layer 1, l after layer l.  The masks are a function of
        ``seed`` [2] (stateless), so a resumed run draws the same masks as an
        uninterrupted one.  Locked dropout draws one mask per row [B, 1, D]
        and uses it at every time step of the window.
        """
        if not rate:
            return x
        noise_shape = None
        if self.config.locked_dropout:
            shape = tf.shape(x)
            noise_shape = tf.stack([shape[0], 1, shape[2]])
        return tf.nn.experimental.stateless_dropout(
            x, rate, seed=tf.random.experimental.stateless_fold_in(seed, site), noise_shape=noise_shape)

    def _embedding_dropout(self, ids, x, seed):
        """Drops whole word types: x [B, T, E] of ``ids``, with the dropped words' rows zeroed."""
        p = self.config.embedding_dropout
        seed = tf.random.experimental.stateless_fold_in(seed, -1)
        keep = tf.random.stateless_uniform([self.config.vocab_size], seed) >= p  # one draw per word type
        scale = tf.cast(keep, x.dtype) / tf.cast(1.0 - p, x.dtype)
        return x * tf.gather(scale, ids)[..., tf.newaxis]

    def call(self, ids, state=None, training=False, dropout_seed=None):
        """ids [B, T] int -> (logits [B, T, |V|], final state).

        ``dropout_seed`` (int [2]) fixes the dropout masks when training.
        """
        h, new_state = self.features(ids, state, training, dropout_seed)
        return self.output_logits(h), new_state

    def features(self, ids, state=None, training=False, dropout_seed=None):
        """``call`` up to the softmax: ids [B, T] -> (what the softmax reads [B, T, H], final state): the
        top layer's h_t (after dropout, in training)."""
        if state is None:
            state = self.zero_state(tf.shape(ids)[0])
        c = self.config
        dropout = training and c.uses_dropout
        if dropout and dropout_seed is None:
            dropout_seed = tf.random.uniform([2], maxval=2**31 - 1, dtype=tf.int64)
        x = self.embed(ids)
        if dropout and c.embedding_dropout:
            x = self._embedding_dropout(ids, x, dropout_seed)
        if dropout:
            x = self._dropout(x, c.input_dropout_rate, 0, dropout_seed)
        reset = self.restarts(ids)
        new_state = []
        for layer, (cell, layer_state) in enumerate(zip(self.cells, state), start=1):
            x, layer_state = unroll(cell, x, layer_state, reset=reset, backward=self.backward)  # [B, T, H]
            if dropout:
                x = self._dropout(x, c.dropout, layer, dropout_seed)
            new_state.append(_float32(layer_state))
        return x, new_state

    def restarts(self, ids):
        """Where the state starts again from zero (bool, the shape of ``ids``): at every <eos> input in
        sentence mode; None otherwise."""
        return tf.equal(ids, Vocabulary.EOS_ID) if self.config.reset_state == "eos" else None

    def fuse(self):
        """Every layer's concatenated gate matrices, for a loop of ``step`` calls."""
        return [cell.fuse(self.compute_dtype_) for cell in self.cells]

    def step(self, ids, state, fused=None):
        """One token per row, for decoding: ids [B] -> (logits [B, |V|], state).

        A decoding loop passes ``fused = model.fuse()``, computed once before
        the loop, so the gate matrices are not concatenated again per token.
        """
        h, state = self.advance(ids, state, fused)
        return self.output_logits(h), state

    def advance(self, ids, state, fused=None):
        """``step`` without the softmax: ids [B] -> (the top layer's h [B, H], state)."""
        x = self.embed(ids)
        reset = self.restarts(ids)
        new_state = []
        for cell, layer_state, layer_fused in zip(self.cells, state, fused or self.fuse()):
            layer_state = tf.nest.map_structure(lambda s: tf.cast(s, x.dtype), layer_state)
            layer_state = restart(layer_state, reset) if reset is not None else layer_state
            x, layer_state = cell.step(cell.project_inputs(x, layer_fused), layer_state, layer_fused)
            new_state.append(_float32(layer_state))
        return x, new_state


def _float32(state):
    return tf.nest.map_structure(lambda s: tf.cast(s, tf.float32), state)

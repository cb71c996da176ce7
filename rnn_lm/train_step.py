"""The train steps: one step of truncated BPTT, on one device or under a tf.distribute strategy.

    tape -> loss -> gradients (+ weight decay) -> clip_by_global_norm (the norm before
    clipping is kept) -> apply_gradients -> a dict of numbers to log

The step carries the recurrent state from one window to the next in
variables; the benchmark and the diagnostics drive it directly, without a
model directory.
"""

import keras
import tensorflow as tf

from rnn_lm import distribute
from rnn_lm.errors import RnnLmError


def make_optimizer(train_config):
    if train_config.optimizer == "sgd":
        return keras.optimizers.SGD(learning_rate=train_config.learning_rate)
    return keras.optimizers.Adam(learning_rate=train_config.learning_rate)


def sum_duplicates(grad):
    """The embedding's gradient comes as IndexedSlices with one row per occurrence of a
    token; its norm (for clipping) is that of the summed rows, so sum repeated indices."""
    if not isinstance(grad, tf.IndexedSlices):
        return grad
    unique, position = tf.unique(grad.indices)
    values = tf.math.unsorted_segment_sum(grad.values, position, tf.shape(unique)[0])
    return tf.IndexedSlices(values, unique, grad.dense_shape)


class TrainStep:
    """One step of truncated BPTT, with the recurrent state it carries between windows.

    tape -> loss -> gradients (+ weight decay) -> clip_by_global_norm (the norm before clipping
    is returned) -> apply_gradients.  Usable without a model directory (the
    benchmark drives it directly).
    """

    def __init__(self, model, optimizer, batch_size, max_grad_norm, seed=0, jit_compile=False, step=None,
                 weight_decay=0.0):
        self.model = model
        self.optimizer = optimizer
        self.max_grad_norm = max_grad_norm
        self.weight_decay = weight_decay
        self.seed = seed
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step") if step is None else step
        # The state carried from one window to the next, kept in variables so
        # that it stays in the graph and goes into the checkpoint.
        self._state_structure = model.zero_state(batch_size)
        self.carried_state = [tf.Variable(z, trainable=False) for z in tf.nest.flatten(self._state_structure)]
        self.optimizer.build(model.trainable_variables)  # before the graph: its update runs in a tf.cond
        self._step_fn = tf.function(self._step_impl, jit_compile=jit_compile)

    def __call__(self, inputs, targets):
        """inputs, targets [B, T] int32 -> {"loss", "grad_norm", "applied"}."""
        return self._step_fn(inputs, targets)

    def _step_impl(self, inputs, targets):
        state = tf.nest.pack_sequence_as(self._state_structure, [v.read_value() for v in self.carried_state])
        dropout_seed = tf.stack([tf.constant(self.seed, tf.int64), self.step])
        with tf.GradientTape() as tape:
            h, new_state = self.model.features(inputs, state, training=True, dropout_seed=dropout_seed)
            loss = tf.reduce_mean(self.model.token_nll(h, targets))  # the lecture's J
            scaled_loss = self._scale(loss)
        variables = self.model.trainable_variables
        grads = [sum_duplicates(g) for g in tape.gradient(scaled_loss, variables)]
        return self._clip_and_apply(loss, grads, new_state)

    def _clip_and_apply(self, loss, grads, new_state):
        """Clips ``grads`` (of the scaled loss) by their global norm, applies them and carries ``new_state``."""
        variables = self.model.trainable_variables
        if self.weight_decay:
            # The gradient of the L2 penalty (weight_decay / 2) |w|^2 (scaled as the loss' is), before
            # clipping; the reported loss stays the cross entropy. (A sparse embedding gradient becomes dense.)
            grads = [tf.convert_to_tensor(g) + self._scale(self.weight_decay * v) for g, v in zip(grads, variables)]
        grad_norm = tf.linalg.global_norm(grads)
        if self.max_grad_norm > 0:
            grads, _ = tf.clip_by_global_norm(grads, self._scale(self.max_grad_norm), use_norm=grad_norm)
        grad_norm = self._unscale(grad_norm)

        def update():
            self._apply_gradients(grads, variables)
            # The next window starts from this final state; it enters the next
            # call as a plain value, so no gradient flows back across the edge.
            for var, value in zip(self.carried_state, tf.nest.flatten(new_state)):
                var.assign(value)
            return tf.constant(True)

        # A non-finite loss or gradient changes nothing: no update, no new state.
        finite = tf.math.is_finite(loss) & tf.math.is_finite(grad_norm)
        applied = tf.cond(finite, update, self._skip)
        self.step.assign_add(1)
        clipped = grad_norm > self.max_grad_norm if self.max_grad_norm > 0 else tf.constant(False)
        return {"loss": loss, "grad_norm": grad_norm, "applied": applied, "clipped": clipped}

    def _apply_gradients(self, grads, variables):
        self.optimizer.apply_gradients(zip(grads, variables))

    # float16 mixed precision: the loss is multiplied by the optimizer's
    # dynamic loss scale before differentiation, so that small gradients do
    # not underflow in float16; the norm is that of the true gradient, and
    # clipping happens in the scaled space (the same factor).  Without a loss
    # scale these are the identity and the graph is the plain one.

    @property
    def _loss_scaled(self):
        return isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer)

    def _scale(self, x):
        return self.optimizer.scale_loss(x) if self._loss_scaled else x

    def _unscale(self, x):
        return x / self.optimizer.dynamic_scale if self._loss_scaled else x

    def _skip(self):
        """A non-finite loss or gradient: no update, no new state.

        With a loss scale, a non-finite gradient is (usually) the scaled
        gradient overflowing float16: halve the scale, as LossScaleOptimizer does.
        """
        if self._loss_scaled:
            self.optimizer.step_counter.assign(0)
            self.optimizer.dynamic_scale.assign(self.optimizer.dynamic_scale * 0.5)
        return tf.constant(False)

    def reset_state(self):
        """h_(0) = 0, at the start of each epoch."""
        for var in self.carried_state:
            var.assign(tf.zeros_like(var))


class DistributedTrainStep(TrainStep):
    """``TrainStep`` under a tf.distribute strategy (the model and optimizer built in its scope).

    Each replica runs the model on its rows of the global batch (see
    ``rnn_lm.distribute``), from its rows of the carried [B, H] state; its
    loss is the mean over its tokens divided by the number of replicas, so
    that the all-reduced (summed) loss and gradient are the global batch's
    mean and its gradient, as on one device.  Clipping needs the norm of that
    summed gradient, so the gradients are all-reduced here, before clipping,
    and the optimizer applies them as they are.  The replicas' final states
    are all-gathered into the [B, H] variables, in replica order = row order.
    """

    def __init__(self, model, optimizer, batch_size, max_grad_norm, seed=0, jit_compile=False, strategy=None,
                 weight_decay=0.0):
        self.strategy = strategy or tf.distribute.get_strategy()
        distribute.check_global_batch(batch_size, self.strategy.num_replicas_in_sync)
        # The step counter stays one plain variable that Python can read (int(step));
        # the carried state gets a copy per replica.
        step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        with self.strategy.scope():
            super().__init__(model, optimizer, batch_size, max_grad_norm, seed, step=step,
                             weight_decay=weight_decay)
        inner = optimizer.inner_optimizer if self._loss_scaled else optimizer
        if not hasattr(inner, "_all_reduce_sum_gradients"):
            raise RnnLmError(f"this Keras version's {type(inner).__name__} cannot apply gradients that "
                             "are already all-reduced; --strategy needs Keras 3's TensorFlow optimizer")
        # Keras 3 optimizers all-reduce (sum) gradients in apply_gradients under
        # a strategy and have no switch for gradients that already are (Keras 2's
        # experimental_aggregate_gradients=False): ours are, so that path is the identity.
        inner._all_reduce_sum_gradients = lambda grads_and_vars: list(grads_and_vars)
        self._gradients = (tf.function(self._replica_gradients, jit_compile=True) if jit_compile
                           else self._replica_gradients)
        self._step_fn = tf.function(self._distributed_step)

    def __call__(self, inputs, targets):
        """inputs, targets: distributed values (``rnn_lm.distribute.distribute_windows``)."""
        return self._step_fn(inputs, targets)

    def _replica_gradients(self, inputs, targets, state, dropout_seed):
        """One replica's forward and backward pass (no collective: XLA can compile it)."""
        with tf.GradientTape() as tape:
            h, new_state = self.model.features(inputs, state, training=True, dropout_seed=dropout_seed)
            loss = tf.reduce_mean(self.model.token_nll(h, targets)) / self.strategy.num_replicas_in_sync
            scaled_loss = self._scale(loss)
        variables = self.model.trainable_variables
        return loss, tape.gradient(scaled_loss, variables), tf.nest.flatten(new_state)

    def _replica_step(self, inputs, targets):
        context = tf.distribute.get_replica_context()
        replica = context.replica_id_in_sync_group
        rows = inputs.shape[0]  # B / R
        state = [v.read_value()[replica * rows:(replica + 1) * rows] for v in self.carried_state]
        state = tf.nest.pack_sequence_as(self._state_structure, state)
        # Each replica draws its own dropout masks (a run with dropout differs from one device's).
        dropout_seed = tf.random.experimental.stateless_fold_in(
            tf.stack([tf.constant(self.seed, tf.int64), self.step]), replica)
        loss, grads, new_state = self._gradients(inputs, targets, state, dropout_seed)
        loss, grads = context.all_reduce(tf.distribute.ReduceOp.SUM, (loss, grads))
        grads = [sum_duplicates(g) for g in grads]  # the replicas' embedding rows overlap
        return loss, grads, [context.all_gather(s, axis=0) for s in new_state]  # [B, H], rows in replica order

    def _distributed_step(self, inputs, targets):
        loss, grads, new_state = self.strategy.run(self._replica_step, args=(inputs, targets))
        # All-reduced and all-gathered: every replica holds the same values; take this worker's first.
        first = lambda value: self.strategy.experimental_local_results(value)[0]
        return self._clip_and_apply(first(loss), [first(g) for g in grads], [first(s) for s in new_state])

    def _apply_gradients(self, grads, variables):
        # The optimizer updates each replica's copy of the variables in replica context.
        self.strategy.run(lambda *grads: self.optimizer.apply_gradients(zip(grads, variables)), args=tuple(grads))

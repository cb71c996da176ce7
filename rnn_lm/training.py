"""Training and evaluation: the train step, the epoch loop, checkpoints, summaries, resume.

The model directory's layout is described in ``rnn_lm.model_dir``.
"""

import contextlib
import dataclasses
import math
import os
import signal
import threading
import time

import keras
import tensorflow as tf
from absl import logging

from rnn_lm import analysis
from rnn_lm import checkpoints
from rnn_lm import distribute
from rnn_lm import export as export_lib
from rnn_lm import losses
from rnn_lm.config import Config
from rnn_lm.data import corpus as corpus_lib
from rnn_lm.data import pipeline
from rnn_lm.data.tokenizers import get_tokenizer
from rnn_lm.data.vocab import VOCAB_FILE, Vocabulary
from rnn_lm import model_dir as model_dir_lib
from rnn_lm.errors import Diverged, RnnLmError, reason
from rnn_lm.generation import Generator
from rnn_lm.model import RNNLanguageModel

from rnn_lm.model_dir import CHECKPOINT_DIR, LOG_DIR, SAVED_MODEL_DIR, prepare


@dataclasses.dataclass
class TrainResult:
    """What a call of ``train`` did: losses per global step and perplexities per epoch."""
    step_losses: dict = dataclasses.field(default_factory=dict)
    valid_perplexities: dict = dataclasses.field(default_factory=dict)  # epoch (1-based) -> ppl
    test_perplexity: float = math.nan
    valid_perplexity: float = math.nan
    unigram_valid_perplexity: float = math.nan
    tokens_per_sec: float = math.nan
    sample: str = ""
    final_step: int = 0
    skipped_steps: int = 0  # updates skipped for a non-finite loss or gradient
    interrupted: str = ""  # the signal that stopped the run, if one did
    best_valid_perplexity: float = math.inf  # of this call's epochs (the best checkpoint: checkpoints/best)


def load_model(model_dir, averaged=True):
    """Rebuilds the model of ``model_dir`` from its config and newest complete checkpoint.

    Returns (config, vocab, model).  Every model variable must be in the
    checkpoint (strict restore), and vocab.txt must be the vocabulary it was
    trained with.  A model trained with averaged SGD holds its averaged weights,
    unless ``averaged`` is False (then the raw ones).
    """
    config = Config.load(model_dir)
    vocab = Vocabulary.load(model_dir)
    if len(vocab) != config.model.vocab_size:
        raise RnnLmError(f"{model_dir}: {VOCAB_FILE} has {len(vocab)} tokens but the model expects "
                         f"{config.model.vocab_size}")
    model = RNNLanguageModel(config.model)
    path = checkpoints.find(os.path.join(model_dir, CHECKPOINT_DIR))
    checkpoints.check_vocabulary(path, vocab.fingerprint(), os.path.join(model_dir, VOCAB_FILE))
    try:
        status = tf.train.Checkpoint(model=model).read(path)
        status.expect_partial().assert_existing_objects_matched()
    except (ValueError, AssertionError, tf.errors.OpError) as e:
        raise RnnLmError(f"{path} does not fit the model of {model_dir}/config.json "
                         f"({config.model.describe()}): {reason(e)}") from None
    _check_all_restored(path, model)
    if averaged and _averaged_steps(path):
        # Averaged SGD: the model to use is the mean of the weights, kept beside the raw ones.
        tf.train.Checkpoint(averages=model.trainable_variables).read(path).expect_partial()
    return config, vocab, model


def _averaged_steps(path):
    try:
        return int(tf.train.load_variable(path, "averaged_steps/.ATTRIBUTES/VARIABLE_VALUE"))
    except (tf.errors.NotFoundError, ValueError):
        return 0


def _check_all_restored(path, model):
    """The checkpoint must hold as many model variables as the model has: none is left at its initial value."""
    saved = [name for name, _ in tf.train.list_variables(path)
             if name.startswith("model/") and name.endswith("VARIABLE_VALUE")]
    if len(saved) != len(model.variables):
        raise RnnLmError(f"{path}: holds {len(saved)} model variables, the model has {len(model.variables)}")


# ----------------------------------------------------------------------------
# Evaluation.

class Evaluator:
    """Exact corpus perplexity: every token scored once, state carried across windows."""

    def __init__(self, model, batch_size, num_steps, start_id):
        self.model = model
        self.batch_size = batch_size
        self.num_steps = num_steps
        self.start_id = start_id
        self._step = tf.function(self._eval_step)

    def _eval_step(self, inputs, targets, weights, state):
        logits, state = self.model(inputs, state, training=False)
        nll = losses.token_cross_entropy(logits, targets)  # [B, T]
        return tf.reduce_sum(nll * weights), tf.reduce_sum(weights), state

    def mean_cross_entropy(self, ids):
        """Mean -log p per token, in nats, over all of ``ids``."""
        windows = pipeline.eval_windows(ids, self.batch_size, self.num_steps, self.start_id)
        state = None
        total, count = 0.0, 0.0
        for inputs, targets, weights in windows:
            if state is None:
                state = self.model.zero_state(inputs.shape[0])
            nll, n, state = self._step(inputs, targets, weights, state)
            total += float(nll)
            count += float(n)
        return total / count

    def perplexity(self, ids):
        nats = self.mean_cross_entropy(ids)
        return math.exp(nats) if nats < 700 else math.inf


# ----------------------------------------------------------------------------
# Training.

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
            logits, new_state = self.model(inputs, state, training=True, dropout_seed=dropout_seed)  # [B, T, V]
            loss = losses.sequence_cross_entropy(logits, targets)
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
            logits, new_state = self.model(inputs, state, training=True, dropout_seed=dropout_seed)
            loss = losses.sequence_cross_entropy(logits, targets) / self.strategy.num_replicas_in_sync
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


class WeightAverage:
    """Averaged SGD (Polyak & Juditsky, 1992): the running mean of the weights after each update
    since averaging began.  Validation, test, samples and the export read the mean; training goes
    on from the raw weights."""

    def __init__(self, variables):
        self.variables = list(variables)
        self.averages = [tf.Variable(v, trainable=False) for v in self.variables]
        self.count = tf.Variable(0, dtype=tf.int64, trainable=False, name="averaged_steps")
        self._update = tf.function(self._update_impl)

    def _update_impl(self):
        self.count.assign_add(1)
        w = 1.0 / tf.cast(self.count, tf.float32)  # avg_n = avg_(n-1) + (w_n - avg_(n-1)) / n
        for a, v in zip(self.averages, self.variables):
            a.assign_add((v - a) * w)

    def update(self):
        self._update()

    @contextlib.contextmanager
    def applied(self):
        """Inside the block the model holds the averaged weights (if any update was averaged)."""
        if int(self.count) == 0:
            yield
            return
        raw = [v.numpy() for v in self.variables]
        for v, a in zip(self.variables, self.averages):
            v.assign(a)
        try:
            yield
        finally:
            for v, r in zip(self.variables, raw):
                v.assign(r)


class Trainer:
    """Owns the model, optimizer, carried state and checkpoint of one model directory."""

    def __init__(self, config, model_dir, vocab, write_dir=None, strategy=None):
        """``strategy``: a tf.distribute strategy to train under (``rnn_lm.distribute``).

        ``write_dir``: where checkpoints and logs are written when not in
        ``model_dir`` (a multi-worker run's workers other than the chief).
        """
        self.config = config
        self.model_dir = model_dir
        self.write_dir = write_dir or model_dir
        self.vocab = vocab
        self.strategy = strategy or tf.distribute.get_strategy()
        t = config.train
        keras.utils.set_random_seed(t.seed)
        if t.deterministic:
            tf.config.experimental.enable_op_determinism()
        with self.strategy.scope():  # under a strategy: a copy of each variable per replica
            self.model = RNNLanguageModel(config.model, compute_dtype=t.compute_dtype)
            self.optimizer = make_optimizer(t)
            if t.compute_dtype == "float16":  # dynamic loss scaling, so that small gradients do not underflow
                self.optimizer = keras.optimizers.LossScaleOptimizer(self.optimizer)
            self.optimizer.build(self.model.trainable_variables)
        if distribute.is_default(self.strategy):
            self.train_step = TrainStep(self.model, self.optimizer, t.batch_size, t.max_grad_norm, t.seed,
                                        t.jit_compile, weight_decay=t.weight_decay)
        else:
            self.train_step = DistributedTrainStep(self.model, self.optimizer, t.batch_size, t.max_grad_norm,
                                                   t.seed, t.jit_compile, strategy=self.strategy,
                                                   weight_decay=t.weight_decay)
        self.step = self.train_step.step
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        # Data position: windows of the current epoch already trained on.
        self.window = tf.Variable(0, dtype=tf.int64, trainable=False, name="window")
        extra = {}
        if t.lr_schedule == "plateau":
            # The rate and the best validation perplexity so far decide the next decay: checkpointed.
            self.plateau_lr = tf.Variable(t.learning_rate, dtype=tf.float64, trainable=False, name="lr")
            self.plateau_best = tf.Variable(math.inf, dtype=tf.float64, trainable=False, name="best_valid")
            extra = {"lr": self.plateau_lr, "best_valid": self.plateau_best}
        self.averaging = None
        if t.average_start_epoch:
            self.averaging = WeightAverage(self.model.trainable_variables)
            extra["averages"] = self.averaging.averages
            extra["averaged_steps"] = self.averaging.count
        self._tracked = dict(model=self.model, optimizer=self.optimizer, step=self.step, epoch=self.epoch,
                             window=self.window, carried_state=self.train_step.carried_state, **extra)
        # The vocabulary's SHA-256 goes into every checkpoint: vocab.txt is checked against it on load.
        self.vocab_hash = tf.Variable(vocab.fingerprint(), trainable=False, name="vocab")
        self.checkpoint = tf.train.Checkpoint(vocab=self.vocab_hash, **self._tracked)
        checkpoint_dir = os.path.join(self.write_dir, CHECKPOINT_DIR)
        best_dir = os.path.join(checkpoint_dir, "best")
        if self.write_dir == self.model_dir:  # the owner: the files, not the state file, say what there is
            checkpoints.recover(checkpoint_dir, "ckpt")
            checkpoints.recover(best_dir, "best", resumable=False)  # a copy: damaged, it is only set aside
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, checkpoint_dir, max_to_keep=t.keep_checkpoints, step_counter=self.step,
            checkpoint_name="ckpt")
        # The checkpoint of the best validation perplexity so far, kept apart.
        self.best_manager = tf.train.CheckpointManager(
            self.checkpoint, best_dir, max_to_keep=1, step_counter=self.step, checkpoint_name="best")
        self.stop_signal = None
        self.evaluator = Evaluator(self.model, t.eval_batch_size, t.num_steps, vocab.eos_id)
        self.generator = Generator(self.model, vocab, get_tokenizer(config.data.level), jit_compile=t.jit_compile)

    def restore(self):
        """Resumes from the newest complete checkpoint, if any; returns its path or None."""
        path = self.manager.latest_checkpoint
        if self.write_dir != self.model_dir:  # a worker that is not the chief resumes from the chief's
            path, _ = checkpoints.newest_complete(os.path.join(self.model_dir, CHECKPOINT_DIR), "ckpt")
        if path:
            target = self.checkpoint
            if not checkpoints.check_vocabulary(path, self.vocab.fingerprint(),
                                                os.path.join(self.model_dir, VOCAB_FILE)):
                target = tf.train.Checkpoint(**self._tracked)  # written before checkpoints held the hash
            try:
                target.restore(path).assert_consumed()
            except AssertionError as e:  # the model was checked before: the optimizer differs
                raise RnnLmError(f"{path} does not fit this run's optimizer ({reason(e)[:200]}); resume with the "
                                 "--optimizer and --mixed_precision it was trained with (float16 adds a loss "
                                 "scale)") from None
            except (tf.errors.OpError, ValueError) as e:  # read whole a moment ago: removed or changed since
                raise RnnLmError(f"cannot restore {path} ({reason(e)[:200]})") from None
            _check_all_restored(path, self.model)
        return path

    def sample_text(self, num_tokens, seed, temperature):
        """A sample from the start-of-sentence context, as text."""
        texts, _ = self.generator.sample([""], num_tokens, temperature, seed=seed)
        return texts[0].strip()

    def fit(self, corpus, result):
        """The epoch loop; fills ``result``. Stops at ``epochs``, ``max_steps`` or a signal.

        SIGINT and SIGTERM let the current step finish, then a checkpoint is
        written and ``result.interrupted`` names the signal.
        """
        handlers = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                handlers[sig] = signal.signal(sig, self._on_signal)
        try:
            self._fit(corpus, result)
        finally:
            for sig, handler in handlers.items():
                signal.signal(sig, handler)

    def _on_signal(self, signum, frame):
        self.stop_signal = signal.Signals(signum).name

    def _save(self, manager=None):
        """Writes a checkpoint named by the training step (ckpt-<step>), by default the latest one.

        A disk that refuses it (full, read-only) stops training with a one-line
        error.  TensorFlow writes the files under a temporary name and records
        a checkpoint as the latest only once it is complete, so the last
        complete checkpoint stays the one a resumed run loads.
        """
        manager = manager or self.manager
        try:
            manager.save(checkpoint_number=self.step)
        except (tf.errors.OpError, OSError) as e:
            last = self.manager.latest_checkpoint
            raise RnnLmError(
                f"cannot write a checkpoint in {manager.directory} at step {int(self.step)} ({reason(e)}); " +
                (f"the last complete one, {os.path.basename(last)}, is intact: free space or fix the "
                 "permissions, then run the same command to resume" if last else
                 "no checkpoint had been written yet")) from None
        if manager is self.manager:
            self._last_save = (int(self.step), time.monotonic())

    def _save_due(self):
        t = self.config.train
        step, when = self._last_save
        return ((t.save_every_steps and int(self.step) - step >= t.save_every_steps)
                or (t.save_every_secs and time.monotonic() - when >= t.save_every_secs))

    def _fit(self, corpus, result):
        t = self.config.train
        tokens_per_step = t.batch_size * t.num_steps
        windows_per_epoch = pipeline.num_train_windows(len(corpus.train), t.batch_size, t.num_steps)
        train_writer, valid_writer = (_summary_writer(os.path.join(self.write_dir, LOG_DIR, split))
                                      for split in ("train", "valid"))
        self._last_save = (int(self.step), time.monotonic())
        timed_tokens, timed_secs = 0, 0.0
        validated_at = None
        nonfinite_in_a_row = 0
        first_interval = True

        while int(self.epoch) < t.epochs and not self._done():
            epoch = int(self.epoch)
            lr = float(self.plateau_lr) if t.lr_schedule == "plateau" else t.learning_rate_at(epoch)
            self.optimizer.learning_rate.assign(lr)
            if int(self.window) == 0:
                self.train_step.reset_state()
            logging.info("epoch %d/%d: learning rate %.4g, %d windows of %dx%d tokens",
                         epoch + 1, t.epochs, lr, windows_per_epoch, t.batch_size, t.num_steps)
            loss_sum, loss_n = 0.0, 0
            tick = time.perf_counter()
            since_log = clipped_since_log = 0
            windows = (pipeline.token_file_windows if isinstance(corpus.train, corpus_lib.TokenFile)
                       else pipeline.train_windows)
            windows = windows(corpus.train, t.batch_size, t.num_steps, int(self.window))
            if isinstance(self.train_step, DistributedTrainStep):
                windows = distribute.distribute_windows(self.strategy, windows, t.batch_size)
            for inputs, targets in windows:
                metrics = self.train_step(inputs, targets)
                self.window.assign_add(1)
                step = int(self.step)
                if not result.step_losses:
                    logging.info("first training step done (step %d)", step)
                loss = float(metrics["loss"])
                result.step_losses[step] = loss
                since_log += 1
                clipped_since_log += int(bool(metrics["clipped"]))
                if bool(metrics["applied"]):
                    if self.averaging and epoch + 1 >= t.average_start_epoch:
                        self.averaging.update()
                    nonfinite_in_a_row = 0
                    loss_sum, loss_n = loss_sum + loss, loss_n + 1
                else:
                    nonfinite_in_a_row += 1
                    result.skipped_steps += 1
                    logging.warning("step %d: loss %s, gradient norm %s: update skipped", step, loss,
                                    float(metrics["grad_norm"]))
                    with _logging_to(train_writer, step):
                        tf.summary.scalar("skipped_steps", result.skipped_steps)
                    if t.nan_policy == "stop" or nonfinite_in_a_row >= t.max_nonfinite_steps:
                        last = self.manager.latest_checkpoint
                        raise Diverged(
                            f"non-finite loss or gradient at step {step} ({nonfinite_in_a_row} in a row); stopped, " +
                            (f"the last good checkpoint {os.path.basename(last)} kept" if last else
                             "no checkpoint had been written") + "; lower --learning_rate or --max_grad_norm")
                if step % t.log_every_steps == 0 or int(self.window) == windows_per_epoch:
                    secs = time.perf_counter() - tick
                    if not first_interval:  # the first one includes building the graph
                        timed_tokens += since_log * tokens_per_step
                        timed_secs += secs
                    first_interval = False
                    rate = since_log * tokens_per_step / max(secs, 1e-9)
                    done = int(self.window) / windows_per_epoch
                    eta = (windows_per_epoch - int(self.window)) * tokens_per_step / max(rate, 1e-9)
                    logging.info("epoch %d step %d (%3.0f%%): loss %.3f, perplexity %.1f, |grad| %.2f, "
                                 "%.0f tokens/s, epoch ends in %s", epoch + 1, step, 100 * done, loss,
                                 math.exp(min(loss, 50)), float(metrics["grad_norm"]), rate, _hms(eta))
                    with _logging_to(train_writer, step):
                        tf.summary.scalar("loss", loss)
                        tf.summary.scalar("perplexity", math.exp(min(loss, 50)))
                        tf.summary.scalar("learning_rate", lr)
                        tf.summary.scalar("grad_norm", metrics["grad_norm"])  # before clipping
                        if t.max_grad_norm > 0:
                            tf.summary.scalar("grad_norm_clipped", min(float(metrics["grad_norm"]), t.max_grad_norm))
                        tf.summary.scalar("tokens_per_sec", rate)
                        # The lecture's exploding gradients and their cure, as they happen.
                        tf.summary.scalar("clipped_fraction", clipped_since_log / since_log)
                        for name, value in analysis.spectral_norms(self.model).items():
                            tf.summary.scalar(f"spectral_norm/{name}", value)
                    tick, since_log, clipped_since_log = time.perf_counter(), 0, 0
                if self.stop_signal:
                    break
                if self._save_due():
                    self._save()
                if self._done():
                    break
            if self.stop_signal:
                self._save()
                result.interrupted = self.stop_signal
                logging.warning("%s: stopped after step %d with a checkpoint; run the same command to resume",
                                self.stop_signal, int(self.step))
                break
            if int(self.window) < windows_per_epoch:
                break  # max_steps reached inside the epoch; resume continues it
            self.window.assign(0)
            self.epoch.assign_add(1)
            with self.evaluation_weights():
                valid_ppl = self.evaluator.perplexity(corpus.valid)
                sample = self.sample_text(t.sample_tokens, t.seed + epoch, t.sample_temperature)
            result.valid_perplexities[epoch + 1] = valid_ppl
            result.valid_perplexity, validated_at = valid_ppl, int(self.step)
            logging.info("epoch %d done: train perplexity %.2f, valid perplexity %.2f",
                         epoch + 1, math.exp(loss_sum / max(loss_n, 1)), valid_ppl)
            logging.info("sample: %s", sample)
            with _logging_to(valid_writer, int(self.step)):
                tf.summary.scalar("perplexity", valid_ppl)
                tf.summary.text("sample", sample)
            if t.lr_schedule == "plateau":
                self._plateau(epoch, valid_ppl)
            self._save()
            if valid_ppl < result.best_valid_perplexity:
                result.best_valid_perplexity = valid_ppl
                self._save(self.best_manager)
        if int(self.step) != self._last_save[0]:
            self._save()
        for writer in (train_writer, valid_writer):
            with _logging_to(writer):
                writer.flush()
        if validated_at != int(self.step):
            result.valid_perplexity = math.nan  # trained on after the last validation
        result.final_step = int(self.step)
        if timed_secs > 0:
            result.tokens_per_sec = timed_tokens / timed_secs

    def evaluation_weights(self):
        """A context in which the model holds the weights to evaluate: the averaged ones under
        averaged SGD, else the trained ones."""
        return self.averaging.applied() if self.averaging else contextlib.nullcontext()

    def _plateau(self, epoch, valid_ppl):
        """The "plateau" schedule: the rate is multiplied by lr_decay after an epoch (from
        decay_start_epoch on) whose validation perplexity is not below the best so far by
        more than plateau_threshold (a fraction)."""
        t = self.config.train
        best = float(self.plateau_best)
        if valid_ppl >= best * (1.0 - t.plateau_threshold) and epoch + 2 >= t.decay_start_epoch:
            self.plateau_lr.assign(float(self.plateau_lr) * t.lr_decay)
            logging.info("valid perplexity %.2f after a best of %.2f: learning rate decays to %.4g",
                         valid_ppl, best, float(self.plateau_lr))
        self.plateau_best.assign(min(best, valid_ppl))

    def _done(self):
        return self.config.train.max_steps and int(self.step) >= self.config.train.max_steps


def train(config, model_dir, export=True, prepared=None):
    """Trains (or resumes) the model of ``model_dir``, then evaluates, samples and exports.

    Everything that can be wrong with the input is checked before the model
    directory is touched (``rnn_lm.model_dir.prepare``; pass its result as
    ``prepared`` if already called).  The run holds the directory's lock
    (``rnn_lm.model_dir.Lock``) from before its checkpoint is restored to the
    end; config.json, its history and vocab.txt are written only once the
    checkpoint has been restored.  A run whose final perplexities are not
    finite raises ``Diverged`` (nothing is exported).  Returns a TrainResult.
    """
    config, corpus = prepared or prepare(config, model_dir)
    strategy = distribute.make_strategy(config.distribute)  # before anything initialises TensorFlow's devices
    worker_dir = distribute.worker_dir(strategy)  # None: this process writes model_dir
    lock = model_dir_lib.Lock(model_dir) if worker_dir is None else contextlib.nullcontext()
    try:
        with lock:
            return _train(config, corpus, model_dir, worker_dir, strategy, export)
    finally:
        distribute.remove_worker_dir(worker_dir)


def _train(config, corpus, model_dir, worker_dir, strategy, export):
    stored = model_dir_lib.stored_config(model_dir)
    if stored is not None:  # another run may have started here since ``prepare`` looked
        model_dir_lib.resume_changes(stored, config, model_dir)
    trainer = Trainer(config, model_dir, corpus.vocab, write_dir=worker_dir, strategy=strategy)
    resumed = trainer.restore()
    if resumed:
        logging.info("resumed from %s (epoch %d, step %d, window %d)", resumed, int(trainer.epoch) + 1,
                     int(trainer.step), int(trainer.window))
    _write_run_files(config, corpus, model_dir, worker_dir, stored, int(trainer.step))
    logging.info("corpus %s: %d/%d/%d tokens (train/valid/test), vocabulary %d, <unk> in valid %.2f%%",
                 config.data.corpus_name, len(corpus.train), len(corpus.valid), len(corpus.test),
                 len(corpus.vocab), 100 * corpus.unk_rate["valid"])
    result = TrainResult()
    result.unigram_valid_perplexity = corpus_lib.unigram_perplexity(corpus.train, corpus.valid, len(corpus.vocab))
    logging.info("model: %s; unigram (no context) valid perplexity %.2f",
                 config.model.describe(), result.unigram_valid_perplexity)
    if config.distribute.strategy != "default":
        logging.info("--strategy=%s: %d replicas, %d streams each", config.distribute.strategy,
                     strategy.num_replicas_in_sync, config.train.batch_size // strategy.num_replicas_in_sync)
    trainer.fit(corpus, result)
    if result.interrupted:
        return result  # evaluation and export wait for the resumed run

    with trainer.evaluation_weights():
        if math.isnan(result.valid_perplexity):
            result.valid_perplexity = trainer.evaluator.perplexity(corpus.valid)
        result.test_perplexity = trainer.evaluator.perplexity(corpus.test)
        logging.info("valid perplexity %.2f, test perplexity %.2f (step %d)",
                     result.valid_perplexity, result.test_perplexity, result.final_step)
        if not (math.isfinite(result.valid_perplexity) and math.isfinite(result.test_perplexity)):
            last = trainer.manager.latest_checkpoint
            raise Diverged(f"the run diverged: valid perplexity {result.valid_perplexity:.4g}, test perplexity "
                           f"{result.test_perplexity:.4g} at step {result.final_step} (checkpoint "
                           f"{os.path.basename(last) if last else 'none'} kept, nothing exported); lower "
                           "--learning_rate, --init_scale or --max_grad_norm")
        result.sample = trainer.sample_text(config.train.sample_tokens, config.train.seed,
                                            config.train.sample_temperature)
        if export and worker_dir is None:
            path = export_lib.export_saved_model(trainer.model, corpus.vocab, config,
                                                 os.path.join(model_dir, SAVED_MODEL_DIR))
            logging.info("SavedModel written to %s", path)
    return result


def _write_run_files(config, corpus, model_dir, worker_dir, stored, step):
    """config.json, its history and vocab.txt (and the encoded training split of --stream_train)."""
    streamed = isinstance(corpus.train, corpus_lib.TokenFile)
    try:
        if worker_dir is None:
            for section, field, old, new in model_dir_lib.record_start(model_dir, config, stored, step):
                logging.info("resuming with --%s=%r (was %r)", field, new, old)
        else:
            config.save(worker_dir)
        if stored is None or worker_dir is not None:
            corpus.vocab.save(worker_dir or model_dir)
        if streamed:
            corpus.train.ensure_encoded(corpus.vocab, get_tokenizer(config.data.level), config.data.encoding_errors)
    except OSError as e:
        raise RnnLmError(f"cannot write to --model_dir {model_dir} ({reason(e)})") from None
    if streamed and corpus.train.encode_secs:
        logging.info("encoded %s into %s in %.1f s", corpus.train.source, corpus.train.path,
                     corpus.train.encode_secs)


def _summary_writer(path):
    try:
        writer = tf.summary.create_file_writer(path)
    except tf.errors.OpError as e:
        raise RnnLmError(f"cannot write TensorBoard logs to {path} ({reason(e)})") from None
    writer.path = path
    return writer


@contextlib.contextmanager
def _logging_to(writer, step=None):
    """``writer.as_default(step)``; a disk that refuses the events (full, read-only) is one line."""
    try:
        with writer.as_default(step=step):
            yield
    except (tf.errors.OpError, OSError) as e:
        raise RnnLmError(f"cannot write TensorBoard logs to {writer.path} ({reason(e)}); the checkpoints are "
                         "intact: free space, then run the same command to resume") from None


def _hms(secs):
    secs = int(secs)
    return f"{secs // 3600}h{secs % 3600 // 60:02d}m" if secs >= 3600 else f"{secs // 60}m{secs % 60:02d}s"

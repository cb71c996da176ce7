"""The training loop: epochs of truncated BPTT, validation, checkpoints, summaries, signals, resume.

    train(config, model_dir)
      Trainer: model, optimizer, train step (rnn_lm.train_step), schedules (rnn_lm.schedules),
               checkpoints (rnn_lm.checkpoints.RunCheckpoints), evaluator (rnn_lm.evaluation)
      for each epoch:     _train_epoch  ->  _train_window per window, _log_interval every N steps
                          _end_epoch    ->  validation, sample, schedule, checkpoints
      test perplexity, sample, SavedModel (rnn_lm.export)

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
from tensorboard.plugins.hparams import api as hp

from rnn_lm import analysis
from rnn_lm import checkpoints
from rnn_lm import distribute
from rnn_lm import evaluation
from rnn_lm import export as export_lib
from rnn_lm import losses
from rnn_lm import model_dir as model_dir_lib
from rnn_lm import progress
from rnn_lm import schedules
from rnn_lm.data import corpus as corpus_lib
from rnn_lm.data.tokenizers import get_tokenizer
from rnn_lm.errors import Diverged, RnnLmError, field_ref, reason
from rnn_lm.generation import Generator
from rnn_lm.model import RNNLanguageModel
from rnn_lm.model_dir import LOG_DIR, SAVED_MODEL_DIR, prepare
from rnn_lm.train_step import DistributedTrainStep, TrainStep, make_optimizer


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
    final_epoch: int = 0  # whole epochs trained, earlier calls of a resumed run included
    skipped_steps: int = 0  # updates skipped for a non-finite loss or gradient
    interrupted: str = ""  # the signal that stopped the run, if one did
    stopped_early: int = 0  # the epoch after which --patience stopped the run, if it did
    best_valid_perplexity: float = math.inf  # of the run so far (the best checkpoint: checkpoints/best)
    final_weights: str = ""  # where the final figures, the sample and the SavedModel come from


@dataclasses.dataclass
class _Counts:
    """What the loop counts: since the last log line, over the epoch, and over the run."""
    windows_per_epoch: int
    tokens_per_step: int
    total_steps: int  # of the run: epochs (or max_steps)
    interval_steps: int = 0
    interval_clipped: int = 0
    interval_start: float = 0.0
    first_interval: bool = True  # it includes building the graph: not timed
    timed_tokens: int = 0
    timed_secs: float = 0.0
    epoch_loss: float = 0.0
    epoch_steps: int = 0
    nonfinite_in_a_row: int = 0
    validated_at: int = -1  # the step of the last validation


class Trainer:
    """Owns the model, optimizer, carried state and checkpoints of one model directory."""

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
            self.model = RNNLanguageModel(config.model, compute_dtype=t.compute_dtype, backward=t.backward)
            self.optimizer = make_optimizer(t)
            if t.compute_dtype == "float16":  # dynamic loss scaling, so that small gradients do not underflow
                self.optimizer = keras.optimizers.LossScaleOptimizer(self.optimizer)
            self.optimizer.build(self.model.trainable_variables)
        step_args = dict(batch_size=t.batch_size, max_grad_norm=t.max_grad_norm, seed=t.seed,
                         jit_compile=t.jit_compile, weight_decay=t.weight_decay)
        if distribute.is_default(self.strategy):
            self.train_step = TrainStep(self.model, self.optimizer, **step_args)
        else:
            self.train_step = DistributedTrainStep(self.model, self.optimizer, strategy=self.strategy, **step_args)
        self.step = self.train_step.step
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        # Data position: windows of the current epoch already trained on.
        self.window = tf.Variable(0, dtype=tf.int64, trainable=False, name="window")
        self.learning_rate = schedules.LearningRate(t)
        self.averaging = schedules.WeightAverage(self.model.trainable_variables) if t.average_start_epoch else None
        tracked = dict(model=self.model, optimizer=self.optimizer, step=self.step, epoch=self.epoch,
                       window=self.window, carried_state=self.train_step.carried_state,
                       **self.learning_rate.variables, **(self.averaging.tracked if self.averaging else {}))
        self.checkpoints = checkpoints.RunCheckpoints(tracked, vocab, model_dir, self.write_dir,
                                                      t.keep_checkpoints, self.step)
        self.stop_signal = None
        # Validation, the final figures, samples and the SavedModel compute in float32 whatever the
        # training's precision, as rnn-lm-eval and rnn-lm-export do: a twin of a mixed-precision model,
        # given its weights by evaluation_weights.
        self.float32_model = self.model
        if t.compute_dtype != "float32":
            self.float32_model = RNNLanguageModel(config.model, backward=t.backward)
            self.float32_model(tf.zeros([1, 1], tf.int32))  # builds its variables
        self.evaluator = evaluation.Evaluator.for_training(self.float32_model, t, vocab.eos_id)
        self.generator = Generator(self.float32_model, vocab, get_tokenizer(config.data.level, model_dir),
                                   jit_compile=t.jit_compile)

    def restore(self):
        """Resumes from the newest complete checkpoint, if any; returns its path or None."""
        return self.checkpoints.restore(self.model)

    def sample_text(self, num_tokens, seed, temperature):
        """A sample from the start-of-sentence context, as text."""
        texts, _ = self.generator.sample([""], num_tokens, temperature, seed=seed)
        return texts[0].strip()

    @contextlib.contextmanager
    def evaluation_weights(self):
        """A context in which ``float32_model`` holds the weights to evaluate: the averaged ones under
        averaged SGD, else the trained ones."""
        with self.averaging.applied() if self.averaging else contextlib.nullcontext():
            if self.float32_model is not self.model:
                for twin, trained in zip(self.float32_model.variables, self.model.variables):
                    twin.assign(trained)
            yield

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

    # The loop, in the order it runs.

    def _fit(self, corpus, result):
        t = self.config.train
        windows_per_epoch = corpus.num_train_windows(t.batch_size, t.num_steps)
        total_steps = t.epochs * windows_per_epoch  # of the whole run
        counts = _Counts(windows_per_epoch=windows_per_epoch, tokens_per_step=t.batch_size * t.num_steps,
                         total_steps=min(total_steps, t.max_steps) if t.max_steps else total_steps)
        self._writers = {split: _summary_writer(os.path.join(self.write_dir, LOG_DIR, split))
                         for split in ("train", "valid")}
        with _logging_to(self._writers["train"]):
            # The run's settings, so that TensorBoard's HPARAMS tab compares runs side by side.
            hp.hparams(hparams(self.config), trial_id=os.path.basename(os.path.normpath(self.model_dir)))
        self._last_save = (int(self.step), time.monotonic())
        best = self.checkpoints.best()  # of an earlier call of a resumed run
        if best:
            result.best_valid_perplexity = best["valid_perplexity"]
        with progress.bar(counts.total_steps, "training", initial=min(int(self.step), counts.total_steps),
                          smoothing=0.05) as self._bar, progress.logs_above_bars(self._bar):
            while int(self.epoch) < t.epochs and not self._done() and not self._stopped_early(result):
                if not self._train_epoch(corpus, result, counts):
                    break
                self._end_epoch(corpus, result, counts)
        if int(self.step) != self._last_save[0]:
            self._save()
        for writer in self._writers.values():
            with _logging_to(writer):
                writer.flush()
        if counts.validated_at != int(self.step):
            result.valid_perplexity = math.nan  # trained on after the last validation
        result.final_step, result.final_epoch = int(self.step), int(self.epoch)
        if counts.timed_secs > 0:
            result.tokens_per_sec = counts.timed_tokens / counts.timed_secs

    def _train_epoch(self, corpus, result, counts):
        """Trains on the rest of the current epoch; whether it reached the epoch's end."""
        t = self.config.train
        epoch = int(self.epoch)
        lr = self.learning_rate.at(epoch)
        self.optimizer.learning_rate.assign(lr)
        if int(self.window) == 0:
            self.train_step.reset_state()
        logging.info("epoch %d/%d: learning rate %.4g, %d windows of %dx%d tokens",
                     epoch + 1, t.epochs, lr, counts.windows_per_epoch, t.batch_size, t.num_steps)
        counts.epoch_loss, counts.epoch_steps = 0.0, 0
        counts.interval_start = time.perf_counter()
        counts.interval_steps = counts.interval_clipped = 0
        windows = corpus.train_windows(t.batch_size, t.num_steps, int(self.window))
        if isinstance(self.train_step, DistributedTrainStep):
            windows = distribute.distribute_windows(self.strategy, windows, t.batch_size)
        for inputs, targets in windows:
            metrics = self.train_step(inputs, targets)
            self.window.assign_add(1)
            self._bar.update(1)
            self._after_step(metrics, result, counts)
            if int(self.step) % t.log_every_steps == 0 or int(self.window) == counts.windows_per_epoch:
                self._log_interval(metrics, result, counts, lr)
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
            return False
        return int(self.window) == counts.windows_per_epoch  # else max_steps, inside the epoch

    def _after_step(self, metrics, result, counts):
        """Records a step's loss; averages the weights; counts skipped (non-finite) updates."""
        t = self.config.train
        step = int(self.step)
        if not result.step_losses:
            logging.info("first training step done (step %d)", step)
        loss = float(metrics["loss"])
        result.step_losses[step] = loss
        counts.interval_steps += 1
        counts.interval_clipped += int(bool(metrics["clipped"]))
        if bool(metrics["applied"]):
            if self.averaging and int(self.epoch) + 1 >= t.average_start_epoch:
                self.averaging.update()
            counts.nonfinite_in_a_row = 0
            counts.epoch_loss += loss
            counts.epoch_steps += 1
            return
        counts.nonfinite_in_a_row += 1
        result.skipped_steps += 1
        logging.warning("step %d: loss %s, gradient norm %s: update skipped", step, loss, float(metrics["grad_norm"]))
        with _logging_to(self._writers["train"], step):
            tf.summary.scalar("training/skipped_steps", result.skipped_steps)
        if t.nan_policy == "stop" or counts.nonfinite_in_a_row >= t.max_nonfinite_steps:
            last = self.checkpoints.latest
            raise Diverged(
                f"non-finite loss or gradient at step {step} ({counts.nonfinite_in_a_row} in a row); stopped, " +
                (f"the last good checkpoint {os.path.basename(last)} kept" if last else
                 "no checkpoint had been written") +
                f"; lower {field_ref('train', 'learning_rate')} or {field_ref('train', 'max_grad_norm')}")

    def _log_interval(self, metrics, result, counts, lr):
        """The counts line and the TensorBoard scalars of the steps since the last ones."""
        t = self.config.train
        step, window = int(self.step), int(self.window)
        secs = time.perf_counter() - counts.interval_start
        tokens = counts.interval_steps * counts.tokens_per_step
        if not counts.first_interval:
            counts.timed_tokens += tokens
            counts.timed_secs += secs
        counts.first_interval = False
        rate = tokens / max(secs, 1e-9)
        steps_per_sec = max(rate, 1e-9) / counts.tokens_per_step
        loss, grad_norm = result.step_losses[step], float(metrics["grad_norm"])
        if not self._bar.disable:  # on a terminal the bar shows the figures, else a log line does
            self._bar.set_postfix_str(f"loss {loss:.3f}, perplexity {math.exp(min(loss, 50)):.1f}, "
                                      f"{rate:.0f} tokens/s", refresh=False)
        else:
            logging.info("epoch %d step %d (%3.0f%%): loss %.3f, perplexity %.1f, |grad| %.2f, %.0f tokens/s, "
                         "epoch ends in %s, run in %s", int(self.epoch) + 1, step,
                         100 * window / counts.windows_per_epoch, loss, math.exp(min(loss, 50)), grad_norm, rate,
                         _hms((counts.windows_per_epoch - window) / steps_per_sec),
                         _hms(max(counts.total_steps - step, 0) / steps_per_sec))
        with _logging_to(self._writers["train"], step):
            # TensorBoard sorts tags by name: loss and perplexity first, then training/, speed/, spectral_norm/.
            tf.summary.scalar("loss", loss)
            tf.summary.scalar("perplexity", math.exp(min(loss, 50)))
            tf.summary.scalar("training/learning_rate", lr)
            tf.summary.scalar("training/grad_norm", metrics["grad_norm"])  # before clipping
            if t.max_grad_norm > 0:
                tf.summary.scalar("training/grad_norm_clipped", min(grad_norm, t.max_grad_norm))
            tf.summary.scalar("speed/tokens_per_sec", rate)
            # The lecture's exploding gradients and their cure, as they happen.
            tf.summary.scalar("training/clipped_fraction", counts.interval_clipped / counts.interval_steps)
            for name, value in analysis.spectral_norms(self.model).items():
                tf.summary.scalar(f"spectral_norm/{name}", value)
        counts.interval_start = time.perf_counter()
        counts.interval_steps = counts.interval_clipped = 0

    def _end_epoch(self, corpus, result, counts):
        """Validation, a sample, the schedule and the checkpoints after a whole epoch."""
        t = self.config.train
        epoch = int(self.epoch)
        self.window.assign(0)
        self.epoch.assign_add(1)
        with self.evaluation_weights():
            valid_ppl = self.evaluator.perplexity(corpus.valid, desc="validation")
            sample = self.sample_text(t.sample_tokens, t.seed + epoch, t.sample_temperature)
        result.valid_perplexities[epoch + 1] = valid_ppl
        result.valid_perplexity, counts.validated_at = valid_ppl, int(self.step)
        logging.info("epoch %d done: train perplexity %.2f, valid perplexity %.2f",
                     epoch + 1, math.exp(counts.epoch_loss / max(counts.epoch_steps, 1)), valid_ppl)
        logging.info("sample: %s", sample)
        with _logging_to(self._writers["valid"], int(self.step)):
            tf.summary.scalar("loss", math.log(valid_ppl))  # the cross entropy, as training's loss
            tf.summary.scalar("perplexity", valid_ppl)
            tf.summary.text("sample", sample)
        self.learning_rate.after_epoch(epoch, valid_ppl)
        self._save()
        if valid_ppl < result.best_valid_perplexity:
            result.best_valid_perplexity = valid_ppl
            self.checkpoints.save_best(epoch + 1, valid_ppl)

    def use_final_weights(self, result):
        """Puts the weights of the final figures into the model (``final_weights``) and says which they are.

        "best": the best validation checkpoint's weights, unless the last weights are those (the last
        epoch was the best) or were validated and are no worse; "last": the weights training ended with.
        """
        last = f"the last weights (step {result.final_step})"
        best = self.checkpoints.best() if self.config.train.final_weights == "best" else None
        if best is None:
            return last
        if best["step"] == result.final_step:
            return last + ", the best validated"
        if not math.isnan(result.valid_perplexity) and result.valid_perplexity <= best["valid_perplexity"]:
            return last
        self.checkpoints.restore_weights(best, {"model": self.model,
                                                **(self.averaging.tracked if self.averaging else {})})
        result.valid_perplexity = best["valid_perplexity"]
        return (f"the best validated weights, {os.path.basename(best['path'])} (epoch {best['epoch']}, step "
                f"{best['step']})")

    def _save(self):
        self.checkpoints.save()
        self._last_save = (int(self.step), time.monotonic())

    def _save_due(self):
        t = self.config.train
        step, when = self._last_save
        return ((t.save_every_steps and int(self.step) - step >= t.save_every_steps)
                or (t.save_every_secs and time.monotonic() - when >= t.save_every_secs))

    def _done(self):
        return self.config.train.max_steps and int(self.step) >= self.config.train.max_steps

    def _stopped_early(self, result):
        """Whether --patience epochs in a row have passed without a new best validation perplexity (the
        best checkpoint's epoch says when the last one was, so a resumed run counts the same)."""
        patience = self.config.train.patience
        best = self.checkpoints.best() if patience else None
        if best is None or int(self.epoch) - best["epoch"] < patience:
            return False
        if not result.stopped_early:
            result.stopped_early = int(self.epoch)
            logging.info("no better validation perplexity for %d epochs: stopped early after epoch %d (the best: "
                         "%.2f, epoch %d)", patience, int(self.epoch), best["valid_perplexity"], best["epoch"])
        return True


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
    result.unigram_valid_perplexity = evaluation.unigram_perplexity(corpus.train_counts(), corpus.valid)
    logging.info("model: %s; unigram (no context) valid perplexity %.2f",
                 config.model.describe(), result.unigram_valid_perplexity)
    if config.distribute.strategy != "default":
        logging.info("--strategy=%s: %d replicas, %d streams each", config.distribute.strategy,
                     strategy.num_replicas_in_sync, config.train.batch_size // strategy.num_replicas_in_sync)
    trainer.fit(corpus, result)
    if result.interrupted:
        return result  # evaluation and export wait for the resumed run

    result.final_weights = trainer.use_final_weights(result)
    logging.info("final figures, sample and SavedModel from %s", result.final_weights)
    with trainer.evaluation_weights():
        if math.isnan(result.valid_perplexity):
            result.valid_perplexity = trainer.evaluator.perplexity(corpus.valid, desc="validation")
        result.test_perplexity = trainer.evaluator.perplexity(corpus.test, desc="test")
        logging.info("valid perplexity %.2f, test perplexity %.2f (step %d)",
                     result.valid_perplexity, result.test_perplexity, result.final_step)
        if config.data.level == "subword":
            for split, ppl in (("valid", result.valid_perplexity), ("test", result.test_perplexity)):
                units = losses.per_text_unit(math.log(ppl), len(corpus.split(split)),
                                             corpus_lib.split_lines(config.data, split))
                logging.info("%s: perplexity per piece %.2f, per word %.2f, %.4f bits/char", split, ppl,
                             units["word_perplexity"], units["bits_per_char"])
        if not (math.isfinite(result.valid_perplexity) and math.isfinite(result.test_perplexity)):
            last = trainer.checkpoints.latest
            raise Diverged(f"the run diverged: valid perplexity {result.valid_perplexity:.4g}, test perplexity "
                           f"{result.test_perplexity:.4g} at step {result.final_step} (checkpoint "
                           f"{os.path.basename(last) if last else 'none'} kept, nothing exported); lower "
                           f"{field_ref('train', 'learning_rate')}, {field_ref('model', 'init_scale')} or "
                           f"{field_ref('train', 'max_grad_norm')}")
        result.sample = trainer.sample_text(config.train.sample_tokens, config.train.seed,
                                            config.train.sample_temperature)
        if export and worker_dir is None:
            start = evaluation.sentence_start(config, corpus.vocab, trainer.float32_model, model_dir,
                                              corpus.train_start(evaluation.BOUNDARY_TOKENS))
            path = export_lib.export_saved_model(trainer.float32_model, corpus.vocab, config,
                                                 os.path.join(model_dir, SAVED_MODEL_DIR), start, model_dir)
            logging.info("SavedModel written to %s", path)
    return result


def _write_run_files(config, corpus, model_dir, worker_dir, stored, step):
    """config.json, its history and vocab.txt (and the encoded training split of --stream_train)."""
    try:
        if worker_dir is None:
            for section, field, old, new in model_dir_lib.record_start(model_dir, config, stored, step):
                logging.info("resuming with --%s=%r (was %r)", field, new, old)
        else:
            config.save(worker_dir)
        if stored is None or worker_dir is not None:
            corpus.vocab.save(worker_dir or model_dir)
        corpus.prepare_train()
    except OSError as e:
        raise RnnLmError(f"cannot write to --model_dir {model_dir} ({reason(e)})") from None


def hparams(config):
    """The config as TensorBoard hparams: {"section.field": value} for every setting that is a number,
    a string or a bool (the vocabulary size included)."""
    return {f"{section}.{name}": value for section, values in config.to_dict().items()
            for name, value in values.items() if isinstance(value, (bool, int, float, str))}


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

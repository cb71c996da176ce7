"""Schedules: every rule that changes the learning rate, and weight averaging.

- "epoch": the rate times ``lr_decay`` for every epoch from ``decay_start_epoch`` on
  (``learning_rate_at``);
- "plateau": the rate times ``lr_decay`` after an epoch whose validation perplexity did
  not improve enough (``Plateau``, whose state goes into the checkpoint);
- averaged SGD (``WeightAverage``): evaluation reads the running mean of the weights.
"""

import contextlib
import math

import tensorflow as tf
from absl import logging


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

    @property
    def tracked(self):
        """What the checkpoint keeps, by name."""
        return {"averages": self.averages, "averaged_steps": self.count}

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


def learning_rate_at(train_config, epoch):
    """The "epoch" schedule's rate for 0-based ``epoch``: times lr_decay per epoch from 1-based
    decay_start_epoch on."""
    t = train_config
    return t.learning_rate * t.lr_decay ** max(epoch + 2 - t.decay_start_epoch, 0)


class Plateau:
    """The "plateau" schedule: the rate is multiplied by lr_decay after an epoch (from
    decay_start_epoch on) whose validation perplexity is not below the best so far by more
    than plateau_threshold (a fraction).  The rate and the best perplexity are variables, so
    that they go into the checkpoint."""

    def __init__(self, train_config):
        self.config = train_config
        self.lr = tf.Variable(train_config.learning_rate, dtype=tf.float64, trainable=False, name="lr")
        self.best = tf.Variable(math.inf, dtype=tf.float64, trainable=False, name="best_valid")

    @property
    def variables(self):
        """What the checkpoint keeps, by name."""
        return {"lr": self.lr, "best_valid": self.best}

    def after_epoch(self, epoch, valid_ppl):
        """Decays the rate if 0-based ``epoch`` did not improve on the best enough."""
        t = self.config
        best = float(self.best)
        if valid_ppl >= best * (1.0 - t.plateau_threshold) and epoch + 2 >= t.decay_start_epoch:
            self.lr.assign(float(self.lr) * t.lr_decay)
            logging.info("valid perplexity %.2f after a best of %.2f: learning rate decays to %.4g",
                         valid_ppl, best, float(self.lr))
        self.best.assign(min(best, valid_ppl))


class LearningRate:
    """The rate of each epoch under ``train_config.lr_schedule`` (with its checkpointed state)."""

    def __init__(self, train_config):
        self.config = train_config
        self.plateau = Plateau(train_config) if train_config.lr_schedule == "plateau" else None

    @property
    def variables(self):
        return self.plateau.variables if self.plateau else {}

    def at(self, epoch):
        return float(self.plateau.lr) if self.plateau else learning_rate_at(self.config, epoch)

    def after_epoch(self, epoch, valid_ppl):
        if self.plateau:
            self.plateau.after_epoch(epoch, valid_ppl)

"""The tf.data pipeline: contiguous streams cut into BPTT windows.

The token stream of a split is cut into ``batch_size`` contiguous streams,
one per row, and read ``num_steps`` columns at a time:

    stream:  a b c d e f g h i j k l m n o p q r s t u v w x    (batch_size=3)

    rows:    a b c d e f g h        window 0     window 1
             i j k l m n o p        inputs  a b c   d e f      targets  b c d   e f g
             q r s t u v w x        (3 x 3) i j k   l m n               j k l   m n o
                                            q r s   t u v               r s t   u v w

Row b of window k+1 continues row b of window k exactly, so the final state
of one window is the right initial state of the next: the trainer carries it
over between calls, which is also where backpropagation stops (truncated
BPTT).  Targets are the inputs shifted by one token.
"""

import numpy as np
import tensorflow as tf

from rnn_lm.errors import RnnLmError


def batchify(ids, batch_size):
    """Cuts ``ids`` into ``batch_size`` contiguous rows, dropping the remainder: [B, L]."""
    length = len(ids) // batch_size
    return np.asarray(ids[:batch_size * length], dtype=np.int32).reshape(batch_size, length)


def num_train_windows(num_tokens, batch_size, num_steps):
    return (num_tokens // batch_size - 1) // num_steps


def check_trainable(num_tokens, batch_size, num_steps, what="training split"):
    """One-line error when the corpus cannot fill a single batch of windows."""
    needed = batch_size * (num_steps + 1)
    if num_train_windows(num_tokens, batch_size, num_steps) < 1:
        raise RnnLmError(
            f"the {what} has {num_tokens} tokens, fewer than one batch of windows needs "
            f"(batch_size x (num_steps + 1) = {needed}); use a larger corpus or smaller "
            "--batch_size/--num_steps")


def train_windows(ids, batch_size, num_steps, start_window=0):
    """(inputs, targets) windows of one epoch, each [batch_size, num_steps] int32.

    ``start_window`` skips the windows an interrupted epoch already used.
    """
    check_trainable(len(ids), batch_size, num_steps)
    rows = batchify(ids, batch_size)
    n = num_train_windows(len(ids), batch_size, num_steps)
    used = rows[:, :n * num_steps + 1]
    inputs = used[:, :-1].reshape(batch_size, n, num_steps).transpose(1, 0, 2)  # [n, B, T]
    targets = used[:, 1:].reshape(batch_size, n, num_steps).transpose(1, 0, 2)
    ds = tf.data.Dataset.from_tensor_slices((inputs, targets))
    return ds.skip(start_window).prefetch(tf.data.AUTOTUNE)


def eval_windows(ids, batch_size, num_steps, start_id):
    """(inputs, targets, weights) windows that score every token of ``ids`` exactly once.

    The stream is prefixed with ``start_id`` (``<eos>``, the start-of-sentence
    context) so that the first token is predicted too, and the rows are
    padded with weight-0 targets to a whole number of windows instead of
    dropping the remainder; every window has the static shape
    [batch_size, num_steps], so the evaluation graph is traced once.
    """
    stream = np.concatenate([[start_id], np.asarray(ids, dtype=np.int32)])
    num_targets = len(stream) - 1
    batch_size = max(1, min(batch_size, num_targets))
    per_row = -(-num_targets // batch_size)  # targets per row, rounded up
    row_len = -(-per_row // num_steps) * num_steps  # padded to whole windows
    # Row b predicts targets [b * per_row, (b + 1) * per_row); inputs start one token earlier.
    t = np.arange(row_len)[None, :]
    pos = np.arange(batch_size)[:, None] * per_row + t  # [B, row_len], position of the input
    real = (t < per_row) & (pos < num_targets)
    pos = np.where(real, pos, 0)
    inputs, targets = stream[pos], stream[pos + 1]
    weights = real.astype(np.float32)

    def windows():
        for t in range(0, row_len, num_steps):
            yield inputs[:, t:t + num_steps], targets[:, t:t + num_steps], weights[:, t:t + num_steps]

    shape = [batch_size, num_steps]
    spec = (tf.TensorSpec(shape, tf.int32),) * 2 + (tf.TensorSpec(shape, tf.float32),)
    return tf.data.Dataset.from_generator(windows, output_signature=spec).prefetch(tf.data.AUTOTUNE)

"""The tf.data pipeline: training windows and evaluation windows.

The layout of the training windows (``batch_size`` contiguous streams read
``num_steps`` tokens at a time, the state carried from window to window) is
drawn in ``rnn_lm.data.layout``.
"""

import numpy as np
import tensorflow as tf

from rnn_lm.data.layout import batchify, check_trainable, num_train_windows


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


def token_file_windows(tokens, batch_size, num_steps, start_window=0, block_windows=64):
    """``train_windows`` of a ``rnn_lm.data.corpus.TokenFile``, read from the file as training goes.

    The same windows as ``train_windows`` of the in-memory ids, from a
    generator that reads ``block_windows`` windows' columns of each row at a
    time (``batch_size`` positioned reads), so memory does not grow with the
    corpus.
    """
    num_tokens = len(tokens)
    check_trainable(num_tokens, batch_size, num_steps)
    row_len = num_tokens // batch_size  # row b is tokens [b * row_len, (b + 1) * row_len)
    n = num_train_windows(num_tokens, batch_size, num_steps)

    def windows():
        with tokens.open() as f:
            for first in range(start_window, n, block_windows):
                count = min(block_windows, n - first)
                # [B, count * T + 1]: the block's inputs and, one column further, its targets.
                block = np.stack([tokens.read(f, b * row_len + first * num_steps, count * num_steps + 1)
                                  for b in range(batch_size)])
                for k in range(0, count * num_steps, num_steps):
                    yield block[:, k:k + num_steps], block[:, k + 1:k + num_steps + 1]

    spec = (tf.TensorSpec([batch_size, num_steps], tf.int32),) * 2
    return tf.data.Dataset.from_generator(windows, output_signature=spec).prefetch(tf.data.AUTOTUNE)


def eval_windows(ids, batch_size, num_steps, start_id, warmup=0):
    """(inputs, targets, weights) windows that score every token of ``ids`` exactly once.

    The stream is prefixed with ``start_id`` (``<eos>``, the start-of-sentence
    context) so that the first token is predicted too, and the rows are
    padded with weight-0 targets to a whole number of windows instead of
    dropping the remainder; every window has the static shape
    [batch_size, num_steps], so the evaluation graph is traced once.

    Row b scores the b-th of ``batch_size`` equal parts of the stream.  Each row
    but the first starts from the zero state, where a single stream (batch 1)
    would carry the text before it; ``warmup`` > 0 lets it read up to that many
    tokens before its part first, unscored (weight 0), so that its state has
    seen context by the time it scores.
    """
    stream = np.concatenate([[start_id], np.asarray(ids, dtype=np.int32)])
    num_targets = len(stream) - 1
    batch_size = max(1, min(batch_size, num_targets))
    per_row = -(-num_targets // batch_size)  # targets per row, rounded up
    first = np.arange(batch_size)[:, None] * per_row  # [B, 1]: each row's first target
    lead = np.minimum(first, warmup)  # the tokens it reads before it
    row_len = -(-(per_row + int(lead.max())) // num_steps) * num_steps  # padded to whole windows
    # Row b predicts targets [first, first + per_row) after reading `lead` inputs; inputs start one
    # token earlier than their targets.
    t = np.arange(row_len)[None, :]
    pos = first - lead + t  # [B, row_len], position of the input
    read = (t < lead + per_row) & (pos < num_targets)
    real = read & (t >= lead)
    pos = np.where(read, pos, 0)
    inputs, targets = stream[pos], stream[pos + 1]
    weights = real.astype(np.float32)

    def windows():
        for t in range(0, row_len, num_steps):
            yield inputs[:, t:t + num_steps], targets[:, t:t + num_steps], weights[:, t:t + num_steps]

    shape = [batch_size, num_steps]
    spec = (tf.TensorSpec(shape, tf.int32),) * 2 + (tf.TensorSpec(shape, tf.float32),)
    ds = tf.data.Dataset.from_generator(windows, output_signature=spec)
    # The number of windows, known to the dataset (its cardinality), for progress bars.
    return ds.apply(tf.data.experimental.assert_cardinality(row_len // num_steps)).prefetch(tf.data.AUTOTUNE)

"""The training layout: contiguous streams cut into BPTT windows (no TensorFlow here).

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

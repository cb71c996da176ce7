"""The window layout (rnn_lm.data.layout) and the tf.data windows (rnn_lm.data.pipeline), checked on
ids equal to their positions, so that continuity is arithmetic: training windows exactly contiguous per
stream (and by hypothesis for any sizes), a resumed epoch skipping exactly its start windows, the
smallest trainable corpus, evaluation windows that score every token once and in order, and the
streamed ids file's windows equal to the in-memory ones."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from rnn_lm.config import DataConfig
from rnn_lm.data import corpus as corpus_lib
from rnn_lm.data import layout, pipeline
from rnn_lm.errors import RnnLmError
from tests.helpers import encode, streamed, write_splits


# --- Train windows.

def train_windows(ids, batch_size, num_steps, start_window=0):
    return [(x.numpy(), y.numpy())
            for x, y in pipeline.train_windows(ids, batch_size, num_steps, start_window)]


def assert_contiguous_train_windows(n, batch_size, num_steps):
    ids = np.arange(n, dtype=np.int32)  # value == position, so continuity is plain arithmetic
    windows = train_windows(ids, batch_size, num_steps)
    row_len = n // batch_size
    assert len(windows) == (row_len - 1) // num_steps >= 1
    for k, (x, y) in enumerate(windows):
        assert x.shape == y.shape == (batch_size, num_steps) and x.dtype == np.int32
        # Row b of window k is stream positions [b*L + k*T, b*L + (k+1)*T); targets one later.
        start = np.arange(batch_size)[:, None] * row_len + k * num_steps
        np.testing.assert_array_equal(x, start + np.arange(num_steps))
        np.testing.assert_array_equal(y, x + 1)


@pytest.mark.parametrize("n,batch_size,num_steps", [(100, 3, 4), (24, 3, 3), (8, 2, 3), (9, 1, 8)])
def test_train_windows_are_contiguous(n, batch_size, num_steps):
    assert_contiguous_train_windows(n, batch_size, num_steps)


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 5), st.integers(1, 6), st.data())
def test_train_windows_contiguous_property(batch_size, num_steps, data):
    n = data.draw(st.integers(batch_size * (num_steps + 1), batch_size * (num_steps + 1) * 4 + 7))
    assert_contiguous_train_windows(n, batch_size, num_steps)


def test_train_windows_start_window_skips_exactly():
    ids = np.arange(100, dtype=np.int32)
    full = train_windows(ids, 3, 4)
    for start in (0, 1, 5, len(full)):
        resumed = train_windows(ids, 3, 4, start_window=start)
        assert len(resumed) == len(full) - start
        for (x, y), (fx, fy) in zip(resumed, full[start:]):
            np.testing.assert_array_equal(x, fx)
            np.testing.assert_array_equal(y, fy)


def test_check_trainable_boundary():
    # One window needs batch_size * (num_steps + 1) tokens: T inputs and one more target per row.
    layout.check_trainable(3 * 5, batch_size=3, num_steps=4)
    with pytest.raises(RnnLmError, match=r"14 tokens.*15") as e:
        layout.check_trainable(3 * 5 - 1, batch_size=3, num_steps=4)
    assert "\n" not in str(e.value)
    with pytest.raises(RnnLmError):
        pipeline.train_windows(np.arange(14, dtype=np.int32), 3, 4)


# --- Eval windows.

@pytest.mark.parametrize("n,batch_size,num_steps,warmup",
                         [(23, 3, 4, 0), (24, 4, 3, 0), (5, 10, 2, 0), (1, 2, 3, 0), (7, 1, 100, 0),
                          (23, 3, 4, 5), (24, 4, 3, 100), (5, 10, 2, 1), (7, 1, 100, 3)])
def test_eval_windows_score_every_token_once_in_order(n, batch_size, num_steps, warmup):
    start_id = 99
    ids = np.arange(1, n + 1, dtype=np.int32) * 2  # distinct, and never equal to start_id
    windows = [tuple(a.numpy() for a in w)
               for w in pipeline.eval_windows(ids, batch_size, num_steps, start_id, warmup)]
    assert all(1 <= x.shape[1] <= num_steps and x.shape == y.shape == w.shape for x, y, w in windows)
    x, y, w = (np.concatenate(parts, axis=1) for parts in zip(*windows))  # [B, L]: whole rows
    assert x[0, 0] == start_id
    assert w.sum() == n and set(np.unique(w)) <= {0.0, 1.0}
    # Reading rows in order, the weighted targets are the corpus, each token once.
    np.testing.assert_array_equal(y.reshape(-1)[w.reshape(-1) > 0], ids)
    # Each input is the token before its target in the stream <start> + ids.
    stream = np.concatenate([[start_id], ids])
    flat_x, flat_w = x.reshape(-1), w.reshape(-1) > 0
    np.testing.assert_array_equal(flat_x[flat_w], stream[:-1])
    # Each row reads the stream contiguously: its unscored warm-up, at most `warmup` tokens (all
    # there are before its part), runs straight into its part.
    for row_x, row_w in zip(x, w > 0):
        scored = np.flatnonzero(row_w)
        if not len(scored):
            continue
        begin = int(np.flatnonzero(stream[:-1] == row_x[scored[0]])[0])  # distinct ids: where the part begins
        lead = scored[0]
        assert lead == min(warmup, begin)
        np.testing.assert_array_equal(row_x[:lead + len(scored)], stream[begin - lead:begin + len(scored)])


# --- The streamed ids file's windows: train_windows of the in-memory ids are the reference.

@pytest.mark.parametrize("batch_size,num_steps,start_window,block_windows",
                         [(1, 1, 0, 1), (3, 5, 0, 64), (3, 5, 2, 2), (4, 7, 5, 3), (7, 2, 0, 4), (2, 35, 1, 64)])
def test_token_file_windows_equal_train_windows(tmp_path, batch_size, num_steps, start_window, block_windows):
    rng = np.random.default_rng(batch_size * 100 + num_steps)
    lines = [" ".join(f"w{i}" for i in rng.integers(0, 50, size=rng.integers(1, 9))) for _ in range(120)]
    data = write_splits(tmp_path / "data", "\n".join(lines) + "\n")
    corpus = encode(streamed(data, tmp_path / "run"))
    ids = corpus_lib.load_corpus(DataConfig(data_dir=data)).train
    expected = list(pipeline.train_windows(ids, batch_size, num_steps, start_window).as_numpy_iterator())
    got = list(pipeline.token_file_windows(corpus.train, batch_size, num_steps, start_window,
                                           block_windows).as_numpy_iterator())
    assert len(got) == len(expected) == layout.num_train_windows(len(ids), batch_size, num_steps) - start_window
    for (x, y), (ex, ey) in zip(got, expected):
        assert x.dtype == np.int32 and x.shape == (batch_size, num_steps)
        assert np.array_equal(x, ex) and np.array_equal(y, ey)

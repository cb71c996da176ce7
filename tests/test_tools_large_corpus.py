"""The large-corpus writer (rnn_lm_tools.large_corpus): lines of the requested size in bytes, single
spaces, and word frequencies that follow Zipf's law (p_k ~ 1/k) over the requested vocabulary."""

import collections

import numpy as np


def test_large_corpus_writes_zipf_lines_of_the_requested_size(tmp_path):
    from rnn_lm_tools import large_corpus
    path = str(tmp_path / "train.txt")
    words = large_corpus.write_text(path, 300_000, 50, np.random.default_rng(0))
    data = open(path, "rb").read()
    assert 300_000 - 200 < len(data) <= 300_000 and data.endswith(b"\n")
    lines = data.decode("ascii").split("\n")[:-1]
    tokens = [t for line in lines for t in line.split(" ")]
    assert len(tokens) == words and all(tokens)  # single spaces, no empty words
    assert 5 < len(tokens) / len(lines) < 25
    counts = sorted(collections.Counter(tokens).values(), reverse=True)
    assert len(counts) == 50 and 1.6 < counts[0] / counts[1] < 2.4  # p_k ~ 1/k

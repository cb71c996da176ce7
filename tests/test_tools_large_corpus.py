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


def test_a_preset_replaces_the_default_model_and_the_epoch_time_follows(tmp_path, monkeypatch):
    import os
    from rnn_lm_tools import large_corpus, timing
    seen = {}

    def fake_run_timed(cmd):
        seen["cmd"] = cmd
        os.makedirs(os.path.join(model_dir, "data"))
        open(os.path.join(model_dir, "data", "train.ids"), "wb").write(b"\0" * 40)
        lines = ["I vocabulary of x: 1000 tokens, 10 types, 10 kept, in 1.5 s\n", "training speed 250 tokens/s\n"]
        return 0, [(1.0, line) for line in lines], 9.0

    model_dir = str(tmp_path / "model")
    monkeypatch.setattr(timing, "run_timed", fake_run_timed)
    figures = large_corpus.run_training(str(tmp_path), model_dir, 30, 500, preset="wikitext103_adaptive")
    assert "--preset=wikitext103_adaptive" in seen["cmd"] and not any("--hidden_size" in a for a in seen["cmd"])
    assert "--stream_train" in seen["cmd"] and "--max_steps=30" in seen["cmd"] and "--vocab_size=500" in seen["cmd"]
    assert figures["train_tokens"] == 1000 and figures["tokens_per_sec"] == 250
    large_corpus.run_training(str(tmp_path), model_dir, 30, 500)
    assert "--hidden_size=200" in seen["cmd"] and not any(a.startswith("--preset") for a in seen["cmd"])

"""--stream_train: the streamed vocabulary, ids file and windows equal the in-memory ones."""

import collections
import dataclasses
import json
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from rnn_lm import evaluation
from rnn_lm import training
from rnn_lm.config import DataConfig
from rnn_lm.data import corpus as corpus_lib
from rnn_lm.data import layout, pipeline
from rnn_lm.data.tokenizers import get_tokenizer
from rnn_lm.data.vocab import Vocabulary
from rnn_lm.errors import RnnLmError
from tests.test_training import tiny_config, write_corpus

# Text with every kind of line break, blank lines and characters outside ASCII.
texts = st.lists(st.sampled_from(["\n", "\r\n", "\r", " ", "\t", "a", "b"]) | st.text(min_size=1, max_size=5),
                 max_size=40).map("".join)


def write_splits(folder, train, held_out="a b\n"):
    os.makedirs(folder, exist_ok=True)
    for split, content in (("train", train), ("valid", held_out), ("test", held_out)):
        with open(os.path.join(folder, f"{split}.txt"), "wb") as f:
            f.write(content if isinstance(content, bytes) else content.encode("utf-8"))
    return str(folder)


def streamed(data_dir, model_dir, vocab=None, **data):
    config = DataConfig(data_dir=data_dir, stream_train=True, **data)
    config.validate()
    return corpus_lib.load_streamed_corpus(config, str(model_dir), vocab)


def encode(corpus, **data):
    """Writes the ids file of a streamed corpus; returns the corpus."""
    config = DataConfig(**data)
    corpus.train.ensure_encoded(corpus.vocab, get_tokenizer(config.level), config.encoding_errors)
    return corpus


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=texts, chunk_bytes=st.integers(1, 9), level=st.sampled_from(["word", "char"]))
def test_streamed_vocabulary_and_ids_equal_the_in_memory_ones(tmp_path_factory, monkeypatch, text, chunk_bytes,
                                                                level):
    """Chunks cut anywhere (inside a UTF-8 sequence, between \\r and \\n) change nothing."""
    monkeypatch.setattr(corpus_lib, "CHUNK_BYTES", chunk_bytes)
    folder = tmp_path_factory.mktemp("c")
    data = write_splits(folder / "data", text)
    path = os.path.join(data, "train.txt")
    try:
        lines = corpus_lib.read_lines(path)
    except RnnLmError as e:  # blank text: the same error
        with pytest.raises(RnnLmError, match="empty file") as streamed_error:
            streamed(data, folder / "run", level=level)
        assert str(streamed_error.value) == str(e)
        return
    assert list(corpus_lib.iter_lines(path)) == lines
    in_memory = corpus_lib.load_corpus(DataConfig(data_dir=data, level=level))
    corpus = streamed(data, folder / "run", level=level)
    assert corpus.vocab == Vocabulary.from_lines(lines, get_tokenizer(level)) == in_memory.vocab
    assert len(corpus.train) == len(in_memory.train)
    encode(corpus, level=level)
    assert np.array_equal(np.memmap(corpus.train.path, dtype=np.int32, mode="r"), in_memory.train)
    assert np.array_equal(corpus.valid, in_memory.valid) and np.array_equal(corpus.test, in_memory.test)


@pytest.mark.parametrize("vocab_size,min_count", [(0, 1), (5, 1), (0, 3)])
def test_streamed_vocabulary_caps_like_the_in_memory_one(tmp_path, vocab_size, min_count):
    rng = np.random.default_rng(0)
    lines = [" ".join(f"w{i}" for i in rng.zipf(1.5, size=rng.integers(0, 12)) % 40) for _ in range(300)]
    data = write_splits(tmp_path / "data", "\n".join(lines) + "\n")
    settings_ = dict(vocab_size=vocab_size, min_count=min_count)
    corpus = streamed(data, tmp_path / "run", **settings_)
    in_memory = corpus_lib.load_corpus(DataConfig(data_dir=data, **settings_))
    assert corpus.vocab == in_memory.vocab
    encode(corpus)
    assert np.array_equal(np.fromfile(corpus.train.path, dtype=np.int32), in_memory.train)
    assert evaluation.unigram_perplexity(corpus.train_counts(), corpus.valid) == \
        evaluation.unigram_perplexity(in_memory.train_counts(), in_memory.valid)


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


@pytest.mark.parametrize("chunk_bytes", [3, 1 << 20])
def test_bad_bytes_give_the_in_memory_error(tmp_path, monkeypatch, chunk_bytes):
    monkeypatch.setattr(corpus_lib, "CHUNK_BYTES", chunk_bytes)
    content = "the cat\r\nsat on\n".encode("utf-8") * 3 + b"a \xff mat\n" + "é\n".encode("utf-8")
    data = write_splits(tmp_path / "data", content)
    path = os.path.join(data, "train.txt")
    with pytest.raises(RnnLmError) as in_memory:
        corpus_lib.read_lines(path)
    with pytest.raises(RnnLmError) as stream:
        streamed(data, tmp_path / "run")
    assert str(stream.value) == str(in_memory.value)
    offset = content.index(b"\xff")
    assert f"{path}: not UTF-8 text (byte 0xff at offset {offset};" in str(stream.value)
    assert "\n" not in str(stream.value)
    corpus = encode(streamed(data, tmp_path / "run", encoding_errors="replace"), encoding_errors="replace")
    replaced = corpus_lib.load_corpus(DataConfig(data_dir=data, encoding_errors="replace"))
    assert corpus.vocab == replaced.vocab and "\ufffd" in corpus.vocab.index
    assert np.array_equal(np.fromfile(corpus.train.path, dtype=np.int32), replaced.train)


def test_ids_file_is_reused_and_rebuilt_when_the_source_changes(tmp_path):
    data = write_splits(tmp_path / "data", "a b c\nb c\n")
    run = tmp_path / "run"
    first = encode(streamed(data, run))
    assert first.train.encode_secs > 0
    meta = json.loads((run / corpus_lib.TOKEN_DIR / corpus_lib.TOKEN_META).read_text())
    assert meta["tokens"] == 7 and meta["size"] == os.path.getsize(os.path.join(data, "train.txt"))
    again = streamed(data, run, first.vocab)  # a resumed run: the stored vocabulary
    assert again.train.encoded and len(again.train) == 7
    assert encode(again).train.encode_secs == 0.0  # reused, not re-encoded
    with open(os.path.join(data, "train.txt"), "a", encoding="utf-8") as f:
        f.write("c a z\n")  # z is not in the stored vocabulary
    changed = streamed(data, run, first.vocab)
    assert not changed.train.encoded and len(changed.train) == 11
    encode(changed)
    expected = corpus_lib.load_corpus(DataConfig(data_dir=data), first.vocab).train
    assert np.array_equal(np.fromfile(changed.train.path, dtype=np.int32), expected)
    assert expected[-2] == first.vocab.unk_id


def test_a_killed_encoding_is_not_reused(tmp_path):
    data = write_splits(tmp_path / "data", "a b c\nb c\n")
    run = tmp_path / "run"
    corpus = encode(streamed(data, run))
    ids_path = corpus.train.path
    with open(ids_path, "r+b") as f:
        f.truncate(8)  # as if the file had been cut short
    assert not streamed(data, run, corpus.vocab).train.encoded
    os.remove(run / corpus_lib.TOKEN_DIR / corpus_lib.TOKEN_META)  # killed before the sidecar was written
    assert not streamed(data, run, corpus.vocab).train.encoded


def test_stream_train_needs_a_data_dir():
    for data in (DataConfig(stream_train=True), DataConfig(corpus="grammar", stream_train=True),
                 DataConfig(corpus="ptb", data_dir="x", stream_train=True)):
        with pytest.raises(RnnLmError, match="data.stream_train"):
            data.validate()


def test_training_with_stream_train_gives_the_same_losses(tmp_path):
    data = write_corpus(tmp_path / "data", (40, 4, 4))
    config = tiny_config(data, max_steps=2, deterministic=True)
    in_memory = training.train(config, str(tmp_path / "a"), export=False)
    stream_config = config.replace(data=dataclasses.replace(config.data, stream_train=True))
    stream = training.train(stream_config, str(tmp_path / "b"), export=False)
    assert sorted(stream.step_losses) == [1, 2]
    assert stream.step_losses == in_memory.step_losses
    assert stream.unigram_valid_perplexity == in_memory.unigram_valid_perplexity
    assert stream.test_perplexity == in_memory.test_perplexity
    assert os.path.isfile(tmp_path / "b" / corpus_lib.TOKEN_DIR / corpus_lib.TOKEN_FILE)
    assert not os.path.exists(tmp_path / "a" / corpus_lib.TOKEN_DIR)


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


def test_load_split_of_a_streamed_corpus_reads_only_that_split(tmp_path):
    data = write_splits(tmp_path / "data", "a b c\nb c\n", held_out="c a q\n")
    corpus = streamed(data, tmp_path / "run")
    config = DataConfig(data_dir=data, stream_train=True)
    os.remove(os.path.join(data, "train.txt"))  # not needed to score valid or test
    for split in ("valid", "test"):
        assert np.array_equal(corpus_lib.load_split(config, corpus.vocab, split), corpus.split(split))

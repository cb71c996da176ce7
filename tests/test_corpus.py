"""Reading a corpus (rnn_lm.data.corpus): lines with universal newlines and odd characters kept, errors
that name the file (and the byte offset of bad UTF-8), the vocabulary built from train only, PTB's
counts against its README; and --stream_train's StreamedCorpus, whose vocabulary, ids file, unigram
counts and errors must equal the in-memory corpus's for any text, line breaks and chunk boundaries
(hypothesis), with the ids file reused only while train.txt is unchanged and complete."""

import json
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from rnn_lm import evaluation
from rnn_lm.config import DataConfig
from rnn_lm.data import corpus as corpus_lib
from rnn_lm.data.corpus import load_corpus, read_lines, read_split_lines
from rnn_lm.data.tokenizers import EOS, UNK, get_tokenizer
from rnn_lm.data.vocab import Vocabulary
from rnn_lm.errors import RnnLmError
from tests.helpers import SHARED, encode, streamed, write_splits, write_texts

PTB = SHARED / "ptb"


# --- Reading files.

def test_read_lines_universal_newlines_keep_odd_characters(tmp_path):
    path = tmp_path / "t.txt"
    path.write_bytes("a\r\nb\rc\n\nd\u2028e\x0cf\x85g\n".encode())
    assert read_lines(str(path)) == ["a", "b", "c", "", "d\u2028e\x0cf\x85g"]


@pytest.mark.parametrize("content,expect", [
    (None, "no such file"),
    (b"", "empty"),
    (b" \n\n \t\n", "empty"),
    (b"ok\n\xe9t\xe9\n", "offset 3"),
])
def test_read_lines_errors_name_the_file(tmp_path, content, expect):
    path = tmp_path / "split.txt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(RnnLmError) as e:
        read_lines(str(path))
    message = str(e.value)
    assert str(path) in message and expect in message and "\n" not in message
    if expect.startswith("offset"):
        assert "0xe9" in message


def test_read_lines_on_a_directory(tmp_path):
    with pytest.raises(RnnLmError, match="directory"):
        read_lines(str(tmp_path))


def test_encoding_errors_replace_reads_non_utf8(tmp_path):
    path = tmp_path / "valid.txt"
    path.write_bytes(b"the \xff cat\n")
    with pytest.raises(RnnLmError, match="offset 4; --encoding_errors=replace"):
        read_lines(str(path))
    assert read_lines(str(path), "replace") == ["the \ufffd cat"]


# --- In memory.

def test_load_corpus_builds_vocabulary_from_train_only(tmp_path):
    write_texts(tmp_path, train="a b a\nc a\n", valid="a zebra\n", test="b\n")
    corpus = load_corpus(DataConfig(data_dir=str(tmp_path)))
    # counts in train: a 3, b 1, c 1 (ties by code point); "zebra" is only in valid.
    assert corpus.vocab.tokens == [UNK, EOS, "a", "b", "c"]
    assert corpus.train.tolist() == [2, 3, 2, 1, 4, 2, 1]
    assert corpus.valid.tolist() == [2, 0, 1]
    assert corpus.test.tolist() == [3, 1]
    assert corpus.unk_rate == {"train": 0.0, "valid": 1 / 3, "test": 0.0}


def test_load_corpus_character_level_with_cap(tmp_path):
    write_texts(tmp_path, train="abca\n", valid="abx\n", test="c\n")
    corpus = load_corpus(DataConfig(data_dir=str(tmp_path), level="char", vocab_size=4))
    # counts: a 2, then b, c, <eos>; the cap of 4 keeps <unk>, <eos>, a, b.
    assert corpus.vocab.tokens == [UNK, EOS, "a", "b"]
    assert corpus.train.tolist() == [2, 3, 0, 2, 1]
    assert corpus.valid.tolist() == [2, 3, 0, 1]


def test_corpus_folder_errors(tmp_path):
    with pytest.raises(RnnLmError, match="no such directory"):
        read_split_lines(DataConfig(data_dir=str(tmp_path / "nope")))
    write_texts(tmp_path, train="a\n")
    with pytest.raises(RnnLmError, match="valid.txt, test.txt"):
        read_split_lines(DataConfig(data_dir=str(tmp_path)))


@pytest.fixture(scope="module")
def ptb():
    if not PTB.is_dir():
        pytest.skip(f"shared PTB corpus not found at {PTB}")
    return load_corpus(DataConfig(data_dir=str(PTB)))


def test_ptb_counts_match_the_data_readme(ptb):
    assert len(ptb.vocab) == 10_000
    assert (len(ptb.train), len(ptb.valid), len(ptb.test)) == (929_589, 73_760, 82_430)
    # PTB already holds literal <unk> tokens, and nothing of valid/test is out of
    # vocabulary, so the <unk> counts are exactly the README's.
    assert int(np.sum(ptb.valid == 0)) == 3_485 and int(np.sum(ptb.test == 0)) == 4_794
    assert ptb.unk_rate["valid"] == 3_485 / 73_760
    assert ptb.vocab.tokens[:3] == [UNK, EOS, "the"]
    counts = np.bincount(ptb.train, minlength=len(ptb.vocab))[2:]
    assert np.all(counts[:-1] >= counts[1:])  # frequency order after the specials


# --- Streamed (--stream_train): the in-memory corpus is the reference.

# Text with every kind of line break, blank lines and characters outside ASCII.
texts = st.lists(st.sampled_from(["\n", "\r\n", "\r", " ", "\t", "a", "b"]) | st.text(min_size=1, max_size=5),
                 max_size=40).map("".join)


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


def test_load_split_of_a_streamed_corpus_reads_only_that_split(tmp_path):
    data = write_splits(tmp_path / "data", "a b c\nb c\n", held_out="c a q\n")
    corpus = streamed(data, tmp_path / "run")
    config = DataConfig(data_dir=data, stream_train=True)
    os.remove(os.path.join(data, "train.txt"))  # not needed to score valid or test
    for split in ("valid", "test"):
        assert np.array_equal(corpus_lib.load_split(config, corpus.vocab, split), corpus.split(split))

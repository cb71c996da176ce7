"""Tokenizers, vocabulary, corpus reading and the window pipeline (rnn_lm.data)."""

import collections
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings, strategies as st

from rnn_lm.config import DataConfig
from rnn_lm.data import layout, pipeline
from rnn_lm.data.corpus import load_corpus, read_lines, read_split_lines
from rnn_lm.data.tokenizers import EOS, UNK, CharTokenizer, WordTokenizer, get_tokenizer
from rnn_lm.data.vocab import Vocabulary
from rnn_lm.errors import RnnLmError

PTB = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ptb"

# Characters a corpus line may hold that careless text handling loses: the first
# five are line breaks to str.splitlines(), the last two whitespace to strip().
ODD_CHARS = ["\u2028", "\x0c", "\x85", "\x1c", "\x0b", "\t", " "]


# --- Tokenizers.

def test_word_tokenizer():
    tok = WordTokenizer()
    assert tok.tokenize(" the  cat\tsat ") == ["the", "cat", "sat", EOS]
    assert tok.tokenize("") == [EOS]
    assert tok.tokenize_prompt("the cat") == ["the", "cat"]  # a prompt does not end a sentence


def test_word_detokenize_round_trip_single_line():
    tok = WordTokenizer()
    assert tok.detokenize(tok.tokenize("the cat sat")[:-1]) == "the cat sat"
    assert tok.detokenize(["a", EOS, "b"]) == "a\nb"


def test_word_detokenize_round_trip_lines():
    lines = ["a b", "", "c d"]
    tok = WordTokenizer()
    assert tok.detokenize([t for line in lines for t in tok.tokenize(line)]) == "a b\n\nc d\n"


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(), min_size=1, max_size=8))
def test_python_and_in_graph_tokenizers_agree_on_any_text(texts):
    """The SavedModel splits text with TensorFlow string ops; they give the Python tokenizer's tokens
    for any text: Unicode whitespace (U+3000, U+0085, U+001C ...), line breaks and empty strings included."""
    import tensorflow as tf
    for tokenizer in (WordTokenizer(), CharTokenizer()):
        graph = tokenizer.split_in_graph(tf.constant(texts)).to_list()
        assert [[t.decode("utf-8") for t in row] for row in graph] == \
            [tokenizer.tokenize_prompt(text) for text in texts], tokenizer.level


def test_in_graph_word_split_knows_every_unicode_separator():
    import tensorflow as tf
    from rnn_lm.data.tokenizers import whitespace
    text = "a" + "b".join(whitespace()) + "c"
    assert len(whitespace()) == 29 and "\u3000" in whitespace() and "\x1c" in whitespace()
    graph = WordTokenizer().split_in_graph(tf.constant([text])).to_list()[0]
    assert [t.decode("utf-8") for t in graph] == text.split() == ["a"] + ["b"] * (len(whitespace()) - 1) + ["c"]


def test_char_tokenizer_round_trip():
    tok = CharTokenizer()
    line = "a b\u2028c\x0cé"
    assert tok.tokenize(line) == list(line) + [EOS]
    assert tok.tokenize(line + "\n") == list(line) + [EOS]
    assert tok.detokenize(tok.tokenize("ab") + tok.tokenize(" c")) == "ab\n c\n"
    assert get_tokenizer("char").level == "char" and get_tokenizer("word").level == "word"
    with pytest.raises(ValueError):
        get_tokenizer("byte")


# --- Vocabulary.

COUNTS = collections.Counter({"b": 3, "a": 3, "c": 5, "é": 3, "Z": 3, "d": 1, EOS: 4, UNK: 9})


def test_build_orders_by_frequency_then_code_point():
    # "Z" (U+005A) < "a" < "b" < "é" (U+00E9); specials are first whatever their counts.
    assert Vocabulary.build(COUNTS).tokens == [UNK, EOS, "c", "Z", "a", "b", "é", "d"]


@pytest.mark.parametrize("max_size", [3, 5, 8, 50])
def test_max_size_counts_the_specials(max_size):
    vocab = Vocabulary.build(COUNTS, max_size=max_size)
    assert len(vocab) == min(max_size, 8)
    assert vocab.tokens == Vocabulary.build(COUNTS).tokens[:len(vocab)]


def test_max_size_below_the_specials_is_refused_not_ignored():
    # DataConfig.validate refuses 1 and 2 too, but Vocabulary.build is public.
    for cap in (1, 2):
        with pytest.raises(RnnLmError, match="at least 3"):
            Vocabulary.build(COUNTS, max_size=cap)


def test_min_count_and_unknown_words():
    vocab = Vocabulary.build(COUNTS, min_count=3)
    assert vocab.tokens == [UNK, EOS, "c", "Z", "a", "b", "é"]
    ids = vocab.encode(["c", "d", "never-seen", EOS, UNK])
    assert ids.dtype == np.int32
    assert ids.tolist() == [2, 0, 0, 1, 0]  # unknown words become <unk>, never dropped
    assert vocab.decode(ids) == ["c", UNK, UNK, EOS, UNK]


def test_vocabulary_rejects_bad_token_lists():
    with pytest.raises(RnnLmError):
        Vocabulary(["a", UNK, EOS])
    with pytest.raises(RnnLmError):
        Vocabulary([UNK, EOS, "a", "a"])


@pytest.mark.parametrize("tokens", [
    [UNK, EOS, "the", "cat", "<s>"],
    [UNK, EOS] + ODD_CHARS + ["é", "\u00a0", "\U0001f600", "\\", "\\n", "\x00"],
], ids=["words", "chars"])
def test_save_load_round_trip(tokens, tmp_path):
    vocab = Vocabulary(tokens)
    vocab.save(tmp_path)
    assert Vocabulary.load(tmp_path).tokens == tokens
    assert os.listdir(tmp_path) == ["vocab.txt"]  # no temporary file left behind


def test_load_errors(tmp_path):
    with pytest.raises(RnnLmError, match="vocab.txt"):
        Vocabulary.load(tmp_path)


def test_load_non_utf8_is_a_one_line_error(tmp_path):
    (tmp_path / "vocab.txt").write_bytes(b"<unk>\n<eos>\n\xff\n")
    with pytest.raises(RnnLmError, match="vocab.txt"):
        Vocabulary.load(tmp_path)


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


def write_corpus(folder, **splits):
    for name, text in splits.items():
        (folder / f"{name}.txt").write_text(text, encoding="utf-8")


def test_load_corpus_builds_vocabulary_from_train_only(tmp_path):
    write_corpus(tmp_path, train="a b a\nc a\n", valid="a zebra\n", test="b\n")
    corpus = load_corpus(DataConfig(data_dir=str(tmp_path)))
    # counts in train: a 3, b 1, c 1 (ties by code point); "zebra" is only in valid.
    assert corpus.vocab.tokens == [UNK, EOS, "a", "b", "c"]
    assert corpus.train.tolist() == [2, 3, 2, 1, 4, 2, 1]
    assert corpus.valid.tolist() == [2, 0, 1]
    assert corpus.test.tolist() == [3, 1]
    assert corpus.unk_rate == {"train": 0.0, "valid": 1 / 3, "test": 0.0}


def test_load_corpus_character_level_with_cap(tmp_path):
    write_corpus(tmp_path, train="abca\n", valid="abx\n", test="c\n")
    corpus = load_corpus(DataConfig(data_dir=str(tmp_path), level="char", vocab_size=4))
    # counts: a 2, then b, c, <eos>; the cap of 4 keeps <unk>, <eos>, a, b.
    assert corpus.vocab.tokens == [UNK, EOS, "a", "b"]
    assert corpus.train.tolist() == [2, 3, 0, 2, 1]
    assert corpus.valid.tolist() == [2, 3, 0, 1]


def test_corpus_folder_errors(tmp_path):
    with pytest.raises(RnnLmError, match="no such directory"):
        read_split_lines(DataConfig(data_dir=str(tmp_path / "nope")))
    write_corpus(tmp_path, train="a\n")
    with pytest.raises(RnnLmError, match="valid.txt, test.txt"):
        read_split_lines(DataConfig(data_dir=str(tmp_path)))


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

@pytest.mark.parametrize("n,batch_size,num_steps",
                         [(23, 3, 4), (24, 4, 3), (5, 10, 2), (1, 2, 3), (7, 1, 100)])
def test_eval_windows_score_every_token_once_in_order(n, batch_size, num_steps):
    start_id = 99
    ids = np.arange(1, n + 1, dtype=np.int32) * 2  # distinct, and never equal to start_id
    windows = [tuple(a.numpy() for a in w)
               for w in pipeline.eval_windows(ids, batch_size, num_steps, start_id)]
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


# --- Properties.

line_text = st.text(st.characters(blacklist_characters="\n\r", blacklist_categories=("Cs",)), max_size=20)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(line_text, min_size=1, max_size=6))
def test_char_vocabulary_round_trip_property(lines):
    tok = CharTokenizer()
    vocab = Vocabulary.from_lines(lines, tok)
    tokens = [t for line in lines for t in tok.tokenize(line)]
    ids = vocab.encode(tokens)
    assert vocab.unk_id not in ids.tolist()
    assert vocab.decode(ids) == tokens
    assert tok.detokenize(vocab.decode(ids)) == "".join(line + "\n" for line in lines)
    with tempfile.TemporaryDirectory() as d:
        vocab.save(d)
        assert Vocabulary.load(d) == vocab
        # A corpus file of these lines reads back as the same lines.
        assume("".join(lines).strip())  # else read_lines rightly reports an empty file
        path = os.path.join(d, "train.txt")
        with open(path, "w", encoding="utf-8", newline="") as f:
            f.write("".join(line + "\n" for line in lines))
        assert read_lines(path) == lines


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 5), st.integers(1, 6), st.data())
def test_train_windows_contiguous_property(batch_size, num_steps, data):
    n = data.draw(st.integers(batch_size * (num_steps + 1), batch_size * (num_steps + 1) * 4 + 7))
    assert_contiguous_train_windows(n, batch_size, num_steps)


# --- Penn Treebank, when the shared corpora are present.

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


def test_encoding_errors_replace_reads_non_utf8(tmp_path):
    path = tmp_path / "valid.txt"
    path.write_bytes(b"the \xff cat\n")
    with pytest.raises(RnnLmError, match="offset 4; --encoding_errors=replace"):
        read_lines(str(path))
    assert read_lines(str(path), "replace") == ["the \ufffd cat"]

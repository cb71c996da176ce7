"""The vocabulary (rnn_lm.data.vocab): built from training counts in a documented order (frequency,
then code point, the specials <unk> and <eos> first), capped counting the specials, unknown words
encoded as <unk> (never dropped), and saved and loaded exactly, odd characters included; a character
vocabulary round-trips any text (hypothesis)."""

import collections
import os
import tempfile

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings, strategies as st

from rnn_lm.data.corpus import read_lines
from rnn_lm.data.tokenizers import EOS, UNK, CharTokenizer
from rnn_lm.data.vocab import Vocabulary
from rnn_lm.errors import RnnLmError

# Characters a corpus line may hold that careless text handling loses: the first
# five are line breaks to str.splitlines(), the last two whitespace to strip().
ODD_CHARS = ["\u2028", "\x0c", "\x85", "\x1c", "\x0b", "\t", " "]

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

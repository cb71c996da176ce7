"""Tokenizers (rnn_lm.data.tokenizers): word and character tokens of a line, their <eos>, the
round trip back to text, and the SavedModel's in-graph split, which must give the Python tokenizer's
tokens for any text (hypothesis), Unicode whitespace and line breaks included."""

import pytest
from hypothesis import given, settings, strategies as st

from rnn_lm.data.tokenizers import EOS, CharTokenizer, WordTokenizer, get_tokenizer


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

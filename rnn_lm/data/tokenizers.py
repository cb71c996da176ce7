"""Word-, character- and subword-level tokenizers.

Each turns one line of text into tokens and ends it with ``<eos>``, so a corpus
becomes one stream in which every sentence end is a token to predict.

Each is defined once for Python (``tokenize``, ``tokenize_prompt``) and once in
TensorFlow string ops (``split_in_graph``, what the SavedModel runs); the two agree
on any text, Unicode whitespace included (a property test checks it).
"""

import functools
import sys

EOS = "<eos>"
UNK = "<unk>"


@functools.cache
def whitespace():
    """What separates words: every character for which str.isspace() holds (str.split() splits there)."""
    return "".join(c for c in map(chr, range(sys.maxunicode + 1)) if c.isspace())


class WordTokenizer:
    """Splits on whitespace: ``"the cat sat"`` -> ``the cat sat <eos>``."""

    level = "word"
    separator = " "

    def tokenize(self, line):
        return line.split() + [EOS]

    def tokenize_prompt(self, text):
        """Tokens of a prompt, which does not end a sentence."""
        return text.split()

    def split_in_graph(self, text):
        """``tokenize_prompt`` of a string tensor [B] in TensorFlow ops: a RaggedTensor [B, None] of tokens.

        tf.strings.split alone splits on ASCII whitespace only: every other
        separator of ``whitespace()`` becomes a space first.
        """
        import tensorflow as tf
        pattern = "[" + "".join(f"\\x{{{ord(c):x}}}" for c in whitespace()) + "]"
        return tf.strings.split(tf.strings.regex_replace(text, pattern, " "))

    def join_in_graph(self, tokens):
        """Tokens [B, None] (no <eos>) -> text [B], joined with spaces."""
        import tensorflow as tf
        return tf.strings.reduce_join(tokens, axis=1, separator=" ")

    def detokenize(self, tokens):
        """Joins tokens with spaces; ``<eos>`` ends a line."""
        lines, current = [], []
        for token in tokens:
            if token == EOS:
                lines.append(" ".join(current))
                current = []
            else:
                current.append(token)
        return "".join(line + "\n" for line in lines) + " ".join(current)


class CharTokenizer:
    """One token per character; the line break is ``<eos>``."""

    level = "char"
    separator = ""

    def tokenize(self, line):
        return list(line.rstrip("\n")) + [EOS]

    def tokenize_prompt(self, text):
        return list(text)

    def split_in_graph(self, text):
        """``tokenize_prompt`` of a string tensor [B] in TensorFlow ops: a RaggedTensor [B, None] of characters."""
        import tensorflow as tf
        return tf.strings.unicode_split(text, "UTF-8")

    def join_in_graph(self, tokens):
        import tensorflow as tf
        return tf.strings.reduce_join(tokens, axis=1)

    def detokenize(self, tokens):
        return "".join("\n" if t == EOS else t for t in tokens)


class SubwordTokenizer:
    """SentencePiece pieces (Kudo & Richardson, 2018) of a model trained on the training split
    (``rnn_lm.data.subword``): ``"the cats"`` -> ``▁the ▁cat s <eos>``.  A piece that starts a word
    carries the word boundary ``▁`` (U+2581); text is the pieces joined, with ``▁`` read as a space."""

    level = "subword"
    separator = ""
    BOUNDARY = "\u2581"

    def __init__(self, model_proto):
        import sentencepiece
        self.model_proto = model_proto
        self.processor = sentencepiece.SentencePieceProcessor(model_proto=model_proto)

    def tokenize(self, line):
        return self.tokenize_prompt(line.rstrip("\n")) + [EOS]

    def tokenize_prompt(self, text):
        return self.processor.encode(text, out_type=str)

    def split_in_graph(self, text):
        """``tokenize_prompt`` in TensorFlow ops: tensorflow-text's SentencePiece op, with the same model."""
        import tensorflow as tf
        import tensorflow_text
        return tensorflow_text.SentencepieceTokenizer(model=self.model_proto, out_type=tf.string).tokenize(text)

    def join_in_graph(self, tokens):
        """Pieces [B, None] (no <eos>) -> text [B]: joined, each ``▁`` a space (a leading one kept, so
        that a continuation that starts a word appends to its prompt with a space)."""
        import tensorflow as tf
        return tf.strings.regex_replace(tf.strings.reduce_join(tokens, axis=1), self.BOUNDARY, " ")

    def detokenize(self, tokens):
        """Pieces -> text, ``<eos>`` a line break; the space of a line's first word boundary is dropped,
        but for the first line's."""
        lines, current = [], []
        for token in list(tokens) + [None]:
            if token in (EOS, None):
                lines.append("".join(current).replace(self.BOUNDARY, " "))
                current = []
            else:
                current.append(token)
        return "\n".join([lines[0]] + [line.removeprefix(" ") for line in lines[1:]])


TOKENIZERS = {tokenizer.level: tokenizer for tokenizer in (WordTokenizer, CharTokenizer, SubwordTokenizer)}


def get_tokenizer(level, model_dir=None):
    """The tokenizer of ``level``; a subword tokenizer is that of the model directory ``model_dir``."""
    if level not in TOKENIZERS:
        raise ValueError(f"unknown level {level!r}; expected one of {', '.join(TOKENIZERS)}")
    if level == SubwordTokenizer.level:
        from rnn_lm.data import subword
        return subword.load(model_dir)
    return TOKENIZERS[level]()

"""Word- and character-level tokenizers.

Both turn one line of text into tokens and end it with ``<eos>``, so a corpus
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

    def detokenize(self, tokens):
        return "".join("\n" if t == EOS else t for t in tokens)


TOKENIZERS = {tokenizer.level: tokenizer for tokenizer in (WordTokenizer, CharTokenizer)}


def get_tokenizer(level):
    if level not in TOKENIZERS:
        raise ValueError(f"unknown level {level!r}; expected one of {', '.join(TOKENIZERS)}")
    return TOKENIZERS[level]()

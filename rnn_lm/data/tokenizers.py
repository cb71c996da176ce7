"""Word- and character-level tokenizers.

Both turn one line of text into tokens and end it with ``<eos>``, so a corpus
becomes one stream in which every sentence end is a token to predict.
"""

EOS = "<eos>"
UNK = "<unk>"


class WordTokenizer:
    """Splits on whitespace: ``"the cat sat"`` -> ``the cat sat <eos>``."""

    level = "word"
    separator = " "

    def tokenize(self, line):
        return line.split() + [EOS]

    def tokenize_prompt(self, text):
        """Tokens of a prompt, which does not end a sentence."""
        return text.split()

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

    def detokenize(self, tokens):
        return "".join("\n" if t == EOS else t for t in tokens)


def get_tokenizer(level):
    if level == "word":
        return WordTokenizer()
    if level == "char":
        return CharTokenizer()
    raise ValueError(f"unknown level {level!r}; expected word or char")

"""The vocabulary: built from the training split only, saved as vocab.txt."""

import collections
import hashlib
import itertools
import os

import numpy as np

from rnn_lm.data.tokenizers import EOS, UNK
from rnn_lm.errors import RnnLmError
from rnn_lm.files import write_atomically

VOCAB_FILE = "vocab.txt"


def token_counts(lines, tokenizer):
    """Counter of the tokens of ``lines`` (any iterable: memory of the counts, not of the lines)."""
    return collections.Counter(itertools.chain.from_iterable(map(tokenizer.tokenize, lines)))


class Vocabulary:
    """Token <-> id. Id 0 is ``<unk>``, id 1 is ``<eos>``, then by frequency."""

    UNK_ID = 0
    EOS_ID = 1

    def __init__(self, tokens):
        tokens = list(tokens)
        if tokens[:2] != [UNK, EOS]:
            raise RnnLmError(f"a vocabulary must start with {UNK} and {EOS}")
        if len(set(tokens)) != len(tokens):
            raise RnnLmError("a vocabulary must not repeat a token")
        self.tokens = tokens
        self.index = {t: i for i, t in enumerate(tokens)}
        self.unk_id = self.UNK_ID
        self.eos_id = self.EOS_ID

    @classmethod
    def build(cls, counts, max_size=0, min_count=1):
        """From token counts: the most frequent first, ties in code-point order.

        ``max_size`` caps the size including ``<unk>`` and ``<eos>`` (0: no cap);
        tokens seen fewer than ``min_count`` times map to ``<unk>``.
        """
        if max_size and max_size < 3:
            raise RnnLmError(f"a vocabulary cap must be 0 (none) or at least 3, got {max_size}")
        ranked = sorted(((t, n) for t, n in counts.items() if t not in (UNK, EOS) and n >= min_count),
                        key=lambda tn: (-tn[1], tn[0]))
        if max_size:
            ranked = ranked[:max_size - 2]
        return cls([UNK, EOS] + [t for t, _ in ranked])

    @classmethod
    def from_lines(cls, lines, tokenizer, max_size=0, min_count=1):
        return cls.build(token_counts(lines, tokenizer), max_size, min_count)

    def __len__(self):
        return len(self.tokens)

    def __eq__(self, other):
        return isinstance(other, Vocabulary) and self.tokens == other.tokens

    def encode(self, tokens):
        return np.fromiter(map(self.index.get, tokens, itertools.repeat(self.unk_id)), dtype=np.int32)

    def fingerprint(self):
        """SHA-256 of the token list: what an encoded file was encoded with."""
        return hashlib.sha256("\n".join(self.tokens).encode("utf-8")).hexdigest()

    def decode(self, ids):
        return [self.tokens[i] for i in ids]

    def save(self, directory):
        """Writes vocab.txt, one token per line, in id order.

        Corpora are read with universal newlines, so no token holds a line
        break and no escaping is needed (a TensorFlow text-file table reads
        the same file).
        """
        path = os.path.join(directory, VOCAB_FILE)
        write_atomically(path, "".join(t + "\n" for t in self.tokens))
        return path

    @classmethod
    def load(cls, directory):
        path = os.path.join(directory, VOCAB_FILE)
        try:
            with open(path, encoding="utf-8", newline="\n") as f:
                return cls(line[:-1] for line in f)
        except OSError as e:
            raise RnnLmError(f"cannot read vocabulary {path}: {e.strerror}") from None
        except UnicodeDecodeError as e:
            raise RnnLmError(f"{path}: not UTF-8 text (offset {e.start})") from None


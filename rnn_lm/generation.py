"""Text in, text out: prompts are tokenized, primed and continued by ``rnn_lm.decoding``.

Every prompt starts from the start-of-sentence context ``<eos>``; words
outside the vocabulary become ``<unk>``.
"""

import numpy as np
import tensorflow as tf

from rnn_lm import decoding
from rnn_lm import progress

PIECE_TOKENS = 50  # tokens per graph call when sampling shows a progress bar


class Generator:
    """Continues prompts with a model and its vocabulary; each call is one graph call (or one per
    piece of ``PIECE_TOKENS`` tokens, with a progress bar)."""

    def __init__(self, model, vocab, tokenizer, jit_compile=False):
        """``jit_compile``: each token's model call compiled with XLA."""
        self.model = model
        self.vocab = vocab
        self.tokenizer = tokenizer
        eos = vocab.eos_id
        step = self._step = decoding.xla_step(model) if jit_compile else None
        self._sample = tf.function(
            lambda ids, lengths, n, temperature, top_k, top_p, seed: decoding.sample(
                model, ids, lengths, n, temperature, seed, eos, top_k=top_k, top_p=top_p, step=step))
        self._beam = {}  # beam width -> tf.function (the width sets shapes)
        self._prime = tf.function(lambda ids, lengths: decoding.prime(model, ids, lengths, step=step))
        self._sample_steps = tf.function(
            lambda logits, state, flags, start, stop, temperature, top_k, top_p, seed: decoding.sample_steps(
                model, logits, state, flags, start, stop, temperature, seed, eos, top_k, top_p, step=step))
        self._next = tf.function(self._next_token)

    def encode_prompts(self, prompts):
        """Prompts -> (ids [B, P] int32, lengths [B], unknown words per prompt)."""
        encoded, unknown = [], []
        for prompt in prompts:
            tokens = self.tokenizer.tokenize_prompt(prompt)
            unknown.append([t for t in tokens if t not in self.vocab.index])
            encoded.append([self.vocab.eos_id] + list(self.vocab.encode(tokens)))
        ids = np.zeros([len(encoded), max(map(len, encoded))], np.int32)
        for row, e in zip(ids, encoded):
            row[:len(e)] = e
        return ids, np.array([len(e) for e in encoded], np.int32), unknown

    def text(self, ids):
        """Generated ids (up to and with <eos>) -> text, without the line breaks of leading and final
        <eos> tokens (``decoding.sample`` keeps the leading ones of an unprompted row)."""
        return self.tokenizer.detokenize(self.vocab.decode(ids)).strip("\n")

    def sample(self, prompts, max_tokens, temperature=1.0, top_k=0, top_p=1.0, seed=0, piece=None):
        """One continuation per prompt: (texts, tokens generated per prompt, <eos> included).

        ``piece``: sample ``piece`` tokens per graph call, with a progress bar on a terminal (the
        same tokens as one call).
        """
        ids, lengths, _ = self.encode_prompts(prompts)
        settings = (tf.constant(temperature, tf.float32), tf.constant(top_k), tf.constant(top_p, tf.float32),
                    tf.constant(seed, tf.int64))
        if piece:
            out, n = self._sample_in_pieces(ids, lengths, max_tokens, settings, piece)
        else:
            out, n = self._sample(ids, lengths, tf.constant(max_tokens), *settings)
            out, n = out.numpy(), n.numpy()
        return [self.text(row[:k]) for row, k in zip(out, n)], n.tolist()

    def _sample_in_pieces(self, ids, lengths, max_tokens, settings, piece):
        logits, state = self._prime(ids, lengths)
        flags, t, pieces = decoding.sampling_start(lengths), 0, []
        with progress.bar(max_tokens, "generating", unit="token") as shown:
            while t < max_tokens and not np.all(flags[0]):
                stop = min(t + piece, max_tokens)
                t_next, logits, state, flags, tokens = self._sample_steps(
                    logits, state, flags, tf.constant(t), tf.constant(stop), *settings)
                pieces.append(tokens.numpy())
                shown.update(int(t_next) - t)
                t = int(t_next)
            shown.total = t  # every row ended before max_tokens: the bar ends full
            shown.refresh()
        return np.concatenate(pieces, axis=1), flags[2].numpy()

    def beam_search(self, prompts, max_tokens, beam_width, length_penalty=0.0):
        """The best ``beam_width`` continuations of each prompt: a list (per prompt) of (text, score)."""
        if beam_width not in self._beam:
            self._beam[beam_width] = tf.function(lambda ids, lengths, n, alpha: decoding.beam_search(
                self.model, ids, lengths, n, beam_width, self.vocab.eos_id, length_penalty=alpha, step=self._step))
        ids, lengths, _ = self.encode_prompts(prompts)
        out, n, scores = self._beam[beam_width](ids, lengths, tf.constant(max_tokens),
                                                tf.constant(length_penalty, tf.float32))
        return [[(self.text(row[:k]), float(s)) for row, k, s in zip(rows, ks, ss)]
                for rows, ks, ss in zip(out.numpy(), n.numpy(), scores.numpy())]

    def _next_token(self, logits, state, temperature, top_k, top_p, seed):
        token = decoding.choose(logits, temperature, top_k, top_p, seed)
        logits, state = (self._step or self.model.step)(token, state, self.model.fuse())
        return token, logits, state

    def stream(self, prompt, max_tokens, temperature=1.0, top_k=0, top_p=1.0, seed=0):
        """Yields the continuation of one prompt token by token, as text pieces, up to <eos>."""
        ids, lengths, _ = self.encode_prompts([prompt])
        logits, state = self._prime(ids, lengths)
        produced = lengths[0] > 1  # as in decoding.sample: an <eos> ends only a row that has something
        for t in range(max_tokens):
            token, logits, state = self._next(
                logits, state, tf.constant(temperature, tf.float32), tf.constant(top_k),
                tf.constant(top_p, tf.float32), tf.constant([seed, t], tf.int64))
            token = int(token[0])
            if token == self.vocab.eos_id:
                if produced:
                    return
                continue
            produced = True
            yield self.tokenizer.detokenize([self.vocab.tokens[token]])

"""Scoring sentences one by one: each line from the start-of-sentence context, as in n-best rescoring."""

import numpy as np
import tensorflow as tf

from rnn_lm import losses
from rnn_lm.export import SCORE_SIGNATURES, load_saved_model


class SentenceScorer:
    """log p(line) = sum_t log p(w_t | <eos>, w_1 .. w_{t-1}), the final <eos> included."""

    def __init__(self, model, vocab, tokenizer, batch_size=32):
        self.model = model
        self.vocab = vocab
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self._score = tf.function(self._score_batch, reduce_retracing=True)

    def _score_batch(self, inputs, targets, weights):
        logits, _ = self.model(inputs, training=False)  # every line starts from h_(0) = 0
        return -tf.reduce_sum(losses.token_cross_entropy(logits, targets) * weights, axis=1)

    def score(self, lines):
        """Yields (line, log_prob in nats, num_tokens, num_unknown) for each line, in order."""
        for start in range(0, len(lines), self.batch_size):
            batch = lines[start:start + self.batch_size]
            encoded = [self.vocab.encode(self.tokenizer.tokenize(line)) for line in batch]
            width = max(len(ids) for ids in encoded)
            inputs = np.zeros([len(batch), width], np.int32)
            targets = np.zeros([len(batch), width], np.int32)
            weights = np.zeros([len(batch), width], np.float32)
            for row, ids in enumerate(encoded):
                inputs[row, :len(ids)] = np.concatenate([[self.vocab.eos_id], ids[:-1]])
                targets[row, :len(ids)] = ids
                weights[row, :len(ids)] = 1.0
            log_probs = self._score(inputs, targets, weights).numpy()
            for line, ids, log_prob in zip(batch, encoded, log_probs):
                yield line, float(log_prob), len(ids), int(np.sum(ids == self.vocab.unk_id))


def saved_model_cross_entropy(path, lines):
    """Mean -log p per token of ``lines`` (each ending in <eos>) under a SavedModel, in nats.

    Uses only the SavedModel's own signatures (tokenize, zero_state, step), so
    it checks the exported model itself: one stream from the start context,
    the state carried through, the whole loop in one graph.  Returns
    (mean cross entropy, number of tokens, number of <unk>).
    """
    served = load_saved_model(path, SCORE_SIGNATURES)
    tokenized = served.signatures["tokenize"](text=tf.constant(lines))
    ids = tf.RaggedTensor.from_tensor(tokenized["ids"], lengths=tokenized["lengths"])
    eos = tf.fill([ids.nrows(), 1], 1)  # <eos> is id 1 in every rnn_lm vocabulary
    stream = tf.concat([ids, tf.RaggedTensor.from_tensor(eos)], axis=1).flat_values
    step = served.signatures["step"]

    @tf.function
    def total_log_prob(stream):
        def body(i, previous, state, total):
            out = step(ids=tf.reshape(previous, [1]), state=state)
            token = stream[i]
            return i + 1, token, out["state"], total + tf.cast(out["log_probs"][0, token], tf.float64)

        state = served.signatures["zero_state"](batch_size=tf.constant(1))["state"]
        _, _, _, total = tf.while_loop(lambda i, *_: i < tf.size(stream), body,
                                       (tf.constant(0), tf.constant(1), state, tf.constant(0.0, tf.float64)))
        return total

    n = int(tf.size(stream))
    return -float(total_log_prob(stream)) / n, n, int(tf.reduce_sum(tf.cast(tf.equal(stream, 0), tf.int32)))

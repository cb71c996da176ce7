"""The adaptive softmax (Grave, Joulin, Cissé, Grangier & Jégou, 2017, "Efficient softmax approximation
for GPUs"): an exact, normalised distribution over a large vocabulary at a fraction of the full
softmax's cost.

The vocabulary is sorted by frequency (``Vocabulary`` ids are).  Cutoffs c_1 < c_2 < ... < c_K cut it
into a head, ids [0, c_1), and K tail clusters, ids [c_i, c_(i+1)) with c_(K+1) = |V|.  The head
softmax ranges over the head words and one token per cluster; cluster i has its own softmax over its
words, read through a projection to d_i = H / factor^i units (rare words get fewer dimensions):

    p_head(.)    = softmax(h V_head + b_head)                  over c_1 + K outputs
    p_i(.)       = softmax((h P_i) V_i + b_i)                   over the words of cluster i
    p(w)         = p_head(w)                                    w in the head
    p(w)         = p_head(c_1 + i - 1) * p_i(w - c_i)           w in cluster i

Each factor is a softmax, so p sums to 1 over the vocabulary: it is a language model's distribution,
not a training-time approximation, and perplexity, sentence scores, sampling and beam search all read
it.  ``log_probs`` writes out log p over the whole vocabulary (for decoding, the cache, the
SavedModel); ``nll`` computes -log p(target) with each cluster's softmax only for the rows whose
target is in it, which is where training saves its time.
"""

import keras
import tensorflow as tf

from rnn_lm import losses
from rnn_lm.cells import dense, distinct_initializer


def cluster_bounds(cutoffs, vocab_size):
    """[(start, end)] of each tail cluster."""
    edges = list(cutoffs) + [vocab_size]
    return list(zip(edges[:-1], edges[1:]))


def projection_sizes(hidden_size, num_clusters, factor):
    """d_i = H / factor^i (at least 1) for clusters i = 1..K."""
    return [max(1, int(hidden_size // factor ** i)) for i in range(1, num_clusters + 1)]


def parameter_count(hidden_size, vocab_size, cutoffs, factor):
    """The adaptive softmax's weights: the head's V and b, each cluster's P, V and b."""
    head = cutoffs[0] + len(cutoffs)
    count = hidden_size * head + head
    for (start, end), d in zip(cluster_bounds(cutoffs, vocab_size), projection_sizes(hidden_size, len(cutoffs), factor)):
        count += hidden_size * d + d * (end - start) + (end - start)
    return count


class AdaptiveSoftmax(keras.layers.Layer):
    """The output layer of a model with ``softmax="adaptive"``.

    Variables: ``V_head`` [H, c_1 + K], ``b_head``; per cluster i = 1..K: ``P_i`` [H, d_i],
    ``V_i`` [d_i, |cluster i|], ``b_i``.
    """

    def __init__(self, hidden_size, vocab_size, cutoffs, factor, initializer, compute_dtype="float32", **kwargs):
        super().__init__(**kwargs)
        self.hidden_size, self.vocab_size = hidden_size, vocab_size
        self.cutoffs = tuple(cutoffs)
        self.bounds = cluster_bounds(self.cutoffs, vocab_size)
        self.sizes = projection_sizes(hidden_size, len(self.cutoffs), factor)
        self.compute_dtype_ = tf.as_dtype(compute_dtype)
        self._initializer = initializer
        self.build(None)

    def build(self, input_shape=None):
        if self.built:
            return
        head, H = self.cutoffs[0] + len(self.cutoffs), self.hidden_size
        self.V_head = self.add_weight(shape=(H, head), name="V_head",
                                      initializer=distinct_initializer(self._initializer()))
        self.b_head = self.add_weight(shape=(head,), initializer="zeros", name="b_head")
        # One attribute per variable: TensorFlow checkpoints follow attributes.
        for i, ((start, end), d) in enumerate(zip(self.bounds, self.sizes), start=1):
            setattr(self, f"P_{i}", self.add_weight(shape=(H, d), name=f"P_{i}",
                                                    initializer=distinct_initializer(self._initializer())))
            setattr(self, f"V_{i}", self.add_weight(shape=(d, end - start), name=f"V_{i}",
                                                    initializer=distinct_initializer(self._initializer())))
            setattr(self, f"b_{i}", self.add_weight(shape=(end - start,), initializer="zeros", name=f"b_{i}"))
        self.built = True

    def _product(self, x, w):
        """x @ w in the compute dtype, returned in the variables' (float32 for a model's)."""
        return tf.cast(dense(tf.cast(x, self.compute_dtype_), tf.cast(w, self.compute_dtype_)), w.dtype)

    def _head_logits(self, h):
        return self._product(h, self.V_head) + self.b_head

    def _tail_logits(self, h, i):
        """Cluster i's logits over its words, for the rows of h."""
        projected = self._product(h, getattr(self, f"P_{i}"))
        return self._product(projected, getattr(self, f"V_{i}")) + getattr(self, f"b_{i}")

    def _head(self, h):
        return tf.nn.log_softmax(self._head_logits(h))

    def _tail(self, h, i):
        """log p_i(.) over cluster i's words, for the rows of h."""
        return tf.nn.log_softmax(self._tail_logits(h, i))

    def log_probs(self, h):
        """h [..., H] -> log p [..., |V|] (float32 for a model's), normalised over the whole vocabulary."""
        head = self._head(h)
        c1 = self.cutoffs[0]
        parts = [head[..., :c1]]
        for i in range(1, len(self.cutoffs) + 1):
            parts.append(head[..., c1 + i - 1:c1 + i] + self._tail(h, i))
        return tf.concat(parts, axis=-1)

    def nll(self, h, targets):
        """h [..., H], targets [...] int -> -log p(target) [...], computing cluster i's softmax only for
        the rows whose target lies in it."""
        shape = tf.shape(targets)
        h = tf.reshape(h, [-1, self.hidden_size])
        targets = tf.reshape(targets, [-1])
        c1 = self.cutoffs[0]
        head_index = tf.identity(targets)
        for i, (start, end) in enumerate(self.bounds, start=1):
            head_index = tf.where((targets >= start) & (targets < end), c1 + i - 1, head_index)
        # Each softmax's -log p of the target only (losses.token_cross_entropy), not its whole log_softmax.
        nll = losses.token_cross_entropy(self._head_logits(h), head_index)
        for i, (start, end) in enumerate(self.bounds, start=1):
            rows = tf.where((targets >= start) & (targets < end))  # [M, 1]
            within = tf.gather_nd(targets, rows) - start
            tail = losses.token_cross_entropy(self._tail_logits(tf.gather_nd(h, rows), i), within)
            nll = tf.tensor_scatter_nd_add(nll, rows, tail)
        return tf.reshape(nll, shape)

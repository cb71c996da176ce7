"""The benchmark's model sizes and random batches, without TensorFlow: the PyTorch worker
(``rnn_lm_tools.torch_steps``) builds the same models from them in a process of its own."""

import dataclasses

import numpy as np

from rnn_lm.config import ModelConfig

# Speed does not depend on these, as long as the weights stay finite (NaN/inf
# arithmetic runs at other speeds): with clipping to 0.25, a unit learning
# rate moves the weights by at most 0.25 per step.
LEARNING_RATE = 1.0
MAX_GRAD_NORM = 0.25
INIT_SCALE = 0.1


@dataclasses.dataclass(frozen=True)
class ModelSize:
    """One benchmarked model size; the embedding is as wide as the hidden state."""
    name: str
    hidden_size: int
    num_steps: int
    num_layers: int = 2
    vocab_size: int = 10_000
    batch_size: int = 20
    zipf: bool = False  # ids drawn from a Zipf law instead of uniformly
    adaptive_cutoffs: str = ""  # as --adaptive_cutoffs: empty, training's defaults at this vocabulary size
    adaptive_factor: float = None  # as --adaptive_factor: None, training's default

    @property
    def cutoffs(self):
        """The adaptive softmax's cutoffs at this size, a tuple (checked as training checks them)."""
        return self.adaptive_config.cutoffs

    @property
    def factor(self):
        """The adaptive softmax's projection factor at this size (training's default unless given)."""
        return self.adaptive_config.adaptive_factor

    @property
    def adaptive_config(self):
        """The adaptive softmax's part of the model's config (vocabulary, softmax, cutoffs, factor), validated."""
        factor = {} if self.adaptive_factor is None else {"adaptive_factor": self.adaptive_factor}
        return ModelConfig(vocab_size=self.vocab_size, softmax="adaptive", adaptive_cutoffs=self.adaptive_cutoffs,
                           **factor)

    @property
    def tokens_per_step(self):
        return self.batch_size * self.num_steps


SIZES = {
    "tiny": ModelSize("tiny", hidden_size=8, num_steps=4, vocab_size=50, batch_size=4),  # for tests
    "small": ModelSize("small", hidden_size=200, num_steps=20),
    "medium": ModelSize("medium", hidden_size=650, num_steps=35),
    "wt2": ModelSize("wt2", hidden_size=200, num_steps=35, vocab_size=33_278, zipf=True),
    "wt103": ModelSize("wt103", hidden_size=200, num_steps=35, vocab_size=267_735, zipf=True),
}


def random_batches(size, count=4, seed=0):
    """``count`` (inputs, targets) pairs of random ids (uniform, or Zipf for ``size.zipf``), int32 [B, T]
    numpy arrays."""
    rng = np.random.default_rng(seed)
    shape = (count, 2, size.batch_size, size.num_steps)
    if size.zipf:
        p = 1.0 / np.arange(1, size.vocab_size + 1)
        ids = rng.choice(size.vocab_size, size=shape, p=p / p.sum()).astype(np.int32)
    else:
        ids = rng.integers(0, size.vocab_size, shape, dtype=np.int32)
    return [(x, y) for x, y in ids]

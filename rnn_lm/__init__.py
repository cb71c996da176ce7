"""rnn_lm: recurrent-neural-network language models in TensorFlow 2, after the lecture."""

__version__ = "0.1.0"

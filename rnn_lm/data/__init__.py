"""Text to token ids: tokenizers, vocabulary, corpora, and the tf.data windows."""

"""Text to token ids: tokenizers, vocabulary, corpora, and the tf.data windows."""

SPLITS = ("train", "valid", "test")  # the three files of every corpus, train.txt, valid.txt, test.txt

"""Text generation (rnn_lm.generation): prompts encoded from the start context <eos> with their unknown
words named, sampling in pieces (with a progress bar) drawing exactly what one graph call draws, and
streaming token by token drawing what sampling draws."""

import numpy as np
import pytest

from rnn_lm.data.tokenizers import EOS, UNK, get_tokenizer
from rnn_lm.data.vocab import Vocabulary
from rnn_lm.generation import Generator
from tests.helpers import make_model

WORDS = [UNK, EOS, "the", "cat", "sat", "dog", "ran"]


@pytest.fixture(scope="module")
def generator():
    return Generator(make_model(vocab_size=len(WORDS), hidden_size=8), Vocabulary(WORDS), get_tokenizer("word"))


def test_prompts_start_from_eos_and_name_their_unknown_words(generator):
    ids, lengths, unknown = generator.encode_prompts(["the cat", "", "a dog sat"])
    np.testing.assert_array_equal(ids, [[1, 2, 3, 0], [1, 0, 0, 0], [1, 0, 5, 4]])
    np.testing.assert_array_equal(lengths, [3, 1, 4])
    assert unknown == [[], [], ["a"]]


@pytest.mark.parametrize("piece", [1, 3, 50])
def test_sampling_in_pieces_gives_what_one_call_gives(generator, piece):
    prompts = ["the cat", "", "dog", ""]
    for temperature, seed in ((1.0, 2), (0.0, 0), (1.5, 9)):
        whole = generator.sample(prompts, 30, temperature, top_k=4, seed=seed)
        assert generator.sample(prompts, 30, temperature, top_k=4, seed=seed, piece=piece) == whole
    assert max(whole[1]) > piece or piece == 50  # more than one piece was drawn


def test_streaming_draws_what_sampling_draws(generator):
    for prompt, seed in (("the", 1), ("", 4), ("cat sat", 7)):
        texts, n = generator.sample([prompt], 25, 1.0, seed=seed)
        streamed = list(generator.stream(prompt, 25, 1.0, seed=seed))
        assert " ".join(streamed) == texts[0].replace("\n", " ").strip()
        assert len(streamed) <= n[0]

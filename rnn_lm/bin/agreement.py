"""rnn-lm-agreement: does the model carry the subject's number to its verb?

    rnn-lm-agreement --model_dir=/tmp/rnn_lm_quickstart

For pairs of built-in-corpus sentences that differ only in the main verb's
number ("the cake which the children like was eaten ." / "... were eaten ."),
with exactly D tokens (and an attractor noun of the other number) between the
subject and its verb, the fraction of pairs in which the model gives the
grammatical sentence the higher probability, for each distance D. Chance is
0.5; a model that follows the nearest noun scores below it.
"""

import json

from absl import flags

from rnn_lm.bin import common
from rnn_lm.errors import RnnLmError

FLAGS = flags.FLAGS

flags.DEFINE_string("model_dir", None, "A model trained on the built-in corpus.", required=True)
flags.DEFINE_list("distances", ["0", "2", "4", "6", "8", "10", "14"], "Tokens between subject and verb.")
flags.DEFINE_integer("pairs", 200, "Sentence pairs per distance.")
flags.DEFINE_integer("seed", 0, "Seed of the pairs.")
flags.DEFINE_boolean("json", False, "One JSON line per distance.")


def main(argv):
    from rnn_lm.config import Config
    config = Config.load(FLAGS.model_dir)
    if config.data.data_dir or config.data.corpus not in ("", "grammar") or config.data.level != "word":
        raise RnnLmError(f"{FLAGS.model_dir} was not trained on the built-in corpus at word level")
    try:
        distances = [int(d) for d in FLAGS.distances]
    except ValueError:
        raise RnnLmError(f"--distances must be integers, got {','.join(FLAGS.distances)}") from None
    from rnn_lm import training
    from rnn_lm.data import grammar
    from rnn_lm.data.tokenizers import get_tokenizer
    from rnn_lm.scoring import SentenceScorer

    _, vocab, model = training.load_model(FLAGS.model_dir)
    scorer = SentenceScorer(model, vocab, get_tokenizer("word"))
    for distance in distances:
        try:
            pairs = grammar.agreement_pairs(distance, FLAGS.pairs, FLAGS.seed)
        except ValueError as e:
            raise RnnLmError(str(e)) from None
        scores = [log_prob for _, log_prob, _, _ in scorer.score([s for pair in pairs for s in pair])]
        correct = sum(good > bad for good, bad in zip(scores[::2], scores[1::2]))
        accuracy = correct / len(pairs)
        if FLAGS.json:
            print(json.dumps({"distance": distance, "pairs": len(pairs), "accuracy": accuracy}))
        else:
            print(f"distance {distance:3d}: {accuracy:6.1%} of {len(pairs)} pairs prefer the grammatical verb")


def run():
    common.run_main(main)


if __name__ == "__main__":
    run()

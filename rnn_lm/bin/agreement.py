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
    if not config.data.agreement_ready:
        raise RnnLmError(f"{FLAGS.model_dir} was not trained on the built-in corpus at word level")
    try:
        distances = [int(d) for d in FLAGS.distances]
    except ValueError:
        raise RnnLmError(f"--distances must be integers, got {','.join(FLAGS.distances)}") from None
    common.load_tensorflow()
    from rnn_lm import analysis, checkpoints

    _, vocab, model = checkpoints.load_model(FLAGS.model_dir)
    try:
        accuracy = analysis.agreement_accuracy(model, vocab, distances, FLAGS.pairs, FLAGS.seed,
                                               grammar=config.data.grammar)
    except ValueError as e:  # a distance the grammar cannot build
        raise RnnLmError(str(e)) from None
    for distance, fraction in accuracy.items():
        if FLAGS.json:
            print(json.dumps({"distance": distance, "pairs": FLAGS.pairs, "accuracy": fraction}))
        else:
            print(f"distance {distance:3d}: {fraction:6.1%} of {FLAGS.pairs} pairs prefer the grammatical verb")


def run():
    common.run_main(main)


if __name__ == "__main__":
    run()

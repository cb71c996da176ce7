"""rnn-lm-grammar: write the built-in grammar corpus to a folder, or print its figures.

    rnn-lm-grammar --out_dir=/tmp/grammar          # train.txt, valid.txt, test.txt
    rnn-lm-grammar --stats
"""

import time

from absl import flags

from rnn_lm.bin import common
from rnn_lm.data import grammar
from rnn_lm.errors import RnnLmError

FLAGS = flags.FLAGS

flags.DEFINE_string("out_dir", "", "Write train.txt, valid.txt and test.txt here.")
flags.DEFINE_enum("grammar", grammar.DEFAULT_GRAMMAR, list(grammar.GRAMMARS), "Which grammar of the family "
                  "(data/README.md).")
flags.DEFINE_integer("seed", 0, "Generator seed.")
flags.DEFINE_integer("max_depth", 2, "How deep subject modifiers nest.")
flags.DEFINE_integer("train_tokens", 1_000_000, "Training tokens (<eos> included).")
flags.DEFINE_boolean("stats", False, "Print the corpus figures quoted in data/README.md.")


def main(argv):
    if not FLAGS.out_dir and not FLAGS.stats:
        raise RnnLmError("nothing to do: give --out_dir and/or --stats")
    if FLAGS.max_depth < 0 or FLAGS.train_tokens <= 0:
        raise RnnLmError("--max_depth must be >= 0 and --train_tokens positive")
    kwargs = dict(seed=FLAGS.seed, max_depth=FLAGS.max_depth, train_tokens=FLAGS.train_tokens, grammar=FLAGS.grammar)
    if FLAGS.out_dir:
        start = time.perf_counter()
        paths = grammar.write_splits(FLAGS.out_dir, **kwargs)
        print(f"wrote {', '.join(paths.values())} in {time.perf_counter() - start:.2f} s")
    if FLAGS.stats:
        start = time.perf_counter()
        splits = grammar.grammar_splits(**kwargs)
        seconds = time.perf_counter() - start
        total = sum(len(s.split()) + 1 for split in splits.values() for s in split)
        print(f"grammar_splits(): {total} tokens in {seconds:.2f} s "
              f"({total / seconds:,.0f} tokens/s); vocabulary {len(grammar.get_grammar(FLAGS.grammar).vocabulary)} "
              "types")
        train = set(splits["train"])
        for name in ("valid", "test"):
            seen = sum(s in train for s in splits[name]) / len(splits[name])
            print(f"{name}: {len(splits[name])} sentences, {seen:.1%} also in train")
        stats = grammar.corpus_statistics(grammar.generate_annotated(
            FLAGS.train_tokens, grammar.split_seed(FLAGS.seed, "train", FLAGS.grammar), FLAGS.max_depth,
            FLAGS.grammar), FLAGS.grammar)
        for key, value in stats.items():
            print(f"train {key}: {value:.3f}" if isinstance(value, float) else f"train {key}: {value}")


def run():
    common.run_main(main)


if __name__ == "__main__":
    run()

"""rnn-lm-eval: perplexity of a trained model on a text file or on its test split.

    rnn-lm-eval --model_dir=/tmp/lm                       # the corpus' test split
    rnn-lm-eval --model_dir=/tmp/lm --text_file=my.txt
    rnn-lm-eval --model_dir=/tmp/lm --checkpoint=best     # or ckpt-N; the default: the latest
    rnn-lm-eval --model_dir=/tmp/lm --split=valid --noaveraged   # averaged SGD: the raw weights instead
    rnn-lm-eval --model_dir=/tmp/lm --text_file=nbest.txt --per_sentence   # JSON lines
    rnn-lm-eval --saved_model=/tmp/lm/saved_model --text_file=test.txt    # the exported model itself
"""

import dataclasses
import json
import math
import sys

from absl import flags

from rnn_lm.bin import common
from rnn_lm.errors import RnnLmError

FLAGS = flags.FLAGS

flags.DEFINE_string("model_dir", "", "A model directory written by rnn-lm-train.")
flags.DEFINE_string("saved_model", "", "Or a SavedModel (with --text_file): the perplexity through its own "
                    "signatures, token by token.")
flags.DEFINE_string("text_file", "", "UTF-8 text to score; empty: the --split of the training corpus.")
flags.DEFINE_enum("encoding_errors", None, ["strict", "replace"], "Bytes that are not UTF-8: an error naming "
                  "the file and offset, or replaced by U+FFFD. Default: strict for --text_file, the model's "
                  "training setting for --split.")
flags.DEFINE_enum("split", "test", ["train", "valid", "test"], "Which split when no --text_file is given.")
flags.DEFINE_integer("batch_size", 1, "Streams scored in parallel: 1 is exact, more are faster and "
                     "start each stream from a zero state.")
flags.DEFINE_integer("num_steps", 35, "Tokens per window (does not change the result).")
flags.DEFINE_boolean("averaged", True, "A model trained with averaged SGD (--average_start_epoch): score its "
                     "averaged weights (--noaveraged: the raw weights of the last update).")
flags.DEFINE_boolean("per_sentence", False, "With --text_file: one JSON line per input line, each scored "
                     "on its own from the start-of-sentence context (n-best rescoring), then the totals.")
common.define_checkpoint_flag(__name__)


def main(argv):
    if bool(FLAGS.model_dir) == bool(FLAGS.saved_model):
        raise RnnLmError("give exactly one of --model_dir and --saved_model")
    if FLAGS.saved_model:
        if not FLAGS.text_file or FLAGS.per_sentence:
            raise RnnLmError("--saved_model needs --text_file (and takes no --per_sentence)")
        lines = read_text_file()
        common.load_tensorflow()
        from rnn_lm.export import saved_model_cross_entropy
        nats, n, unk = saved_model_cross_entropy(FLAGS.saved_model, lines)
        print(f"{FLAGS.text_file} under {FLAGS.saved_model}: {n} tokens, perplexity {math.exp(nats):.2f}, "
              f"{nats:.4f} nats/token, <unk> {100 * unk / n:.2f}%")
        return
    from rnn_lm.config import Config
    Config.load(FLAGS.model_dir)  # a wrong directory is reported before TensorFlow loads
    common.load_tensorflow()
    from rnn_lm import checkpoints, evaluation
    from rnn_lm.data import corpus as corpus_lib
    from rnn_lm.data.tokenizers import get_tokenizer

    config, vocab, model = checkpoints.load_model(FLAGS.model_dir, averaged=FLAGS.averaged,
                                                  checkpoint=FLAGS.checkpoint)
    if FLAGS.per_sentence:
        if not FLAGS.text_file:
            raise RnnLmError("--per_sentence needs --text_file")
        return score_lines(config, vocab, model, read_text_file())
    if FLAGS.text_file:
        ids = corpus_lib.encode_lines(read_text_file(), vocab, get_tokenizer(config.data.level))
        what = FLAGS.text_file
    else:
        data = config.data
        if FLAGS.encoding_errors:
            data = dataclasses.replace(data, encoding_errors=FLAGS.encoding_errors)
        ids = corpus_lib.load_split(data, vocab, FLAGS.split)
        what = f"{FLAGS.split} split of {config.data.corpus_name}"
    evaluator = evaluation.Evaluator(model, FLAGS.batch_size, FLAGS.num_steps, vocab.eos_id)
    nats = evaluator.mean_cross_entropy(ids)
    unk = float((ids == vocab.unk_id).mean())
    line = f"{what}: {len(ids)} tokens, perplexity {math.exp(nats):.2f}, {nats:.4f} nats/token"
    if config.data.level == "char":
        line += f", {nats / math.log(2):.4f} bits/char"
    print(line + f", <unk> {100 * unk:.2f}%")


def read_text_file():
    from rnn_lm.data import corpus as corpus_lib
    return corpus_lib.read_lines(FLAGS.text_file, FLAGS.encoding_errors or "strict")


def score_lines(config, vocab, model, lines):
    from rnn_lm.data.tokenizers import get_tokenizer
    from rnn_lm.evaluation import SentenceScorer
    total, tokens, unknown = 0.0, 0, 0
    for line, log_prob, n, unk in SentenceScorer(model, vocab, get_tokenizer(config.data.level)).score(lines):
        print(json.dumps({"text": line, "log_prob": round(log_prob, 6), "num_tokens": n,
                          "perplexity": round(math.exp(-log_prob / n), 4), "unknown": unk}))
        total, tokens, unknown = total + log_prob, tokens + n, unknown + unk
    print(json.dumps({"sentences": len(lines), "num_tokens": tokens, "log_prob": round(total, 6),
                      "perplexity": round(math.exp(-total / tokens), 4), "unknown_rate": unknown / tokens}),
          file=sys.stderr)


def run():
    common.run_main(main)


if __name__ == "__main__":
    run()

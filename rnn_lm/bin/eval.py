"""rnn-lm-eval: perplexity of a trained model on a text file or on its test split.

    rnn-lm-eval --model_dir=/tmp/lm                       # the corpus' test split
    rnn-lm-eval --model_dir=/tmp/lm --text_file=my.txt
    rnn-lm-eval --model_dir=/tmp/lm --checkpoint=best     # or ckpt-N; the default: the latest
    rnn-lm-eval --model_dir=/tmp/lm --split=valid --noaveraged   # averaged SGD: the raw weights instead
    rnn-lm-eval --model_dir=/tmp/lm --text_file=lines.txt --per_sentence   # JSON lines, in input order
    rnn-lm-eval --model_dir=/tmp/lm --text_file=nbest.txt --nbest          # "utt-1 hypothesis" lines, ranked
    rnn-lm-eval --saved_model=/tmp/lm/saved_model --text_file=test.txt    # the exported model itself
    rnn-lm-eval --model_dir=/tmp/lm --cache_size=500 --cache_theta=1.0 --cache_lambda=0.1   # a neural cache
    rnn-lm-eval --model_dir=/tmp/lm --dynamic=rms --dynamic_lr=0.00005 --dynamic_decay=0.002  # dynamic evaluation
    rnn-lm-eval --model_dir=/tmp/lm --tune=cache      # choose the cache's settings on valid, report test
    rnn-lm-eval --model_dir=/tmp/lm --tune=both --dynamic=sgd --tune_tokens=5000   # the two together

A neural cache (Grave et al. 2017) and dynamic evaluation (Krause et al. 2018) adapt to the text as
they score it, each token scored before it is used, alone or together (--cache_size with --dynamic);
docs/evaluation.md has the formulas and figures.
"""

import dataclasses
import json
import math
import sys

import numpy as np
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
flags.DEFINE_integer("batch_size", 0, "Streams scored in parallel: 1 is exact, more are faster (each stream "
                     "but the first reads --warmup tokens before its part). 0: the model's --eval_batch_size "
                     "from training for perplexity, 1 for the cache and dynamic evaluation (the papers' setting).")
flags.DEFINE_integer("warmup", -1, "Tokens each stream but the first reads, unscored, before its part; "
                     "negative: the model's --eval_warmup from training.")
flags.DEFINE_integer("num_steps", 35, "Tokens per window (does not change the result).")
flags.DEFINE_boolean("averaged", True, "A model trained with averaged SGD (--average_start_epoch): score its "
                     "averaged weights (--noaveraged: the raw weights of the last update).")
flags.DEFINE_boolean("per_sentence", False, "With --text_file: one JSON line per input line, each scored "
                     "on its own from the start-of-sentence context (n-best rescoring), then the totals.")
flags.DEFINE_boolean("nbest", False, "--per_sentence for n-best lists as Kaldi writes them: each line is "
                     "'HYPOTHESIS-ID words...', the utterance is the id without its last '-N'; each JSON line "
                     "adds the id, the utterance and the hypothesis' rank in it (1: the most probable).")
flags.DEFINE_enum("sentence_start", "boundary", ["boundary", "learned", "zero"], "--per_sentence/--nbest: the "
                  "state each line starts from. boundary: the mean state the model carries into <eos> over the "
                  "training text (a state it saw in training; computed when scoring starts, a second or two); "
                  "learned: the state that scores the training text's first lines best, each on its own "
                  "(a pass of Adam over them from the boundary state, a minute or two on PTB); zero: h_(0) = 0. "
                  "A model trained with --reset_state=eos starts each line from zero either way.")
flags.DEFINE_integer("sentences_per_batch", 0, "--per_sentence/--nbest: lines per graph call, 0: "
                     "SENTENCE_BATCH in rnn_lm/evaluation.py (lines are "
                     "sorted by length into batches; the output keeps the input order).")
flags.DEFINE_integer("cache_size", 0, "Neural cache: mix in a distribution over the words that followed "
                     "the last N hidden states (Grave et al. 2017); 0: off.")
flags.DEFINE_float("cache_theta", 1.0, "Neural cache: the flatness theta of exp(theta h_t . h_i).")
flags.DEFINE_float("cache_lambda", 0.1, "Neural cache: its weight lambda in (1 - lambda) p_model + lambda p_cache.")
flags.DEFINE_enum("dynamic", "off", ["off", "sgd", "rms"], "Dynamic evaluation (Krause et al. 2018): after "
                  "scoring each segment, move the weights by the gradient of its loss: sgd, or rms (scaled by "
                  "gradient statistics of the training text, with a decay toward the trained weights).")
flags.DEFINE_float("dynamic_lr", 0.0, "Dynamic evaluation's learning rate (0: the method's default, "
                   "DYNAMIC_DEFAULTS in rnn_lm/adaptation.py).")
flags.DEFINE_float("dynamic_decay", -1.0, "Dynamic evaluation: the pull toward the trained weights per segment "
                   "(negative: the method's default).")
flags.DEFINE_integer("dynamic_segment", 0, "Dynamic evaluation: tokens per segment (0: the default).")
flags.DEFINE_enum("tune", "off", ["off", "cache", "dynamic", "both"], "Choose the cache's size (unless "
                  "--cache_size gives it), theta and lambda (cache), dynamic evaluation's learning rate and decay "
                  "(dynamic; with --dynamic, default rms), or every pair of the two (both) on the valid split (its "
                  "first --tune_tokens tokens), then report the --split (test) or the --text_file with them, "
                  "beside the static figures.")
flags.DEFINE_integer("tune_tokens", 20000, "--tune: tokens of the valid split each setting is tried on (0: all).")
common.define_checkpoint_flag(__name__)


def main(argv):
    if bool(FLAGS.model_dir) == bool(FLAGS.saved_model):
        raise RnnLmError("give exactly one of --model_dir and --saved_model")
    adapting = [f"--{name}" for name, on in (("cache_size", FLAGS.cache_size), ("dynamic", FLAGS.dynamic != "off"),
                                            ("tune", FLAGS.tune != "off")) if on]
    if adapting and FLAGS.saved_model:
        raise RnnLmError(f"{' and '.join(adapting)} need{'s' if len(adapting) == 1 else ''} --model_dir: "
                         "--saved_model scores through the exported signatures as they are")
    if adapting and (FLAGS.per_sentence or FLAGS.nbest):
        scoring = "--nbest" if FLAGS.nbest else "--per_sentence"
        raise RnnLmError(f"{' and '.join(adapting)} adapt{'s' if len(adapting) == 1 else ''} to a text read as "
                         f"one stream, which {scoring} does not do (score the file without {scoring})")
    if FLAGS.saved_model:
        if not FLAGS.text_file or FLAGS.per_sentence or FLAGS.nbest:
            raise RnnLmError("--saved_model needs --text_file (and takes no --per_sentence or --nbest)")
        lines = read_text_file()
        common.load_tensorflow()
        from rnn_lm.export import saved_model_cross_entropy
        nats, n, unk = saved_model_cross_entropy(FLAGS.saved_model, lines)
        print(f"{FLAGS.text_file} under {FLAGS.saved_model}: {n} tokens, perplexity {math.exp(nats):.2f}, "
              f"{nats:.4f} nats/token, <unk> {100 * unk / n:.2f}%")
        return
    if FLAGS.batch_size < 0:
        raise RnnLmError(f"--batch_size must be >= 0 (0: the model's own), got {FLAGS.batch_size}")
    from rnn_lm.config import Config
    Config.load(FLAGS.model_dir)  # a wrong directory is reported before TensorFlow loads
    common.load_tensorflow()
    from rnn_lm import checkpoints
    from rnn_lm.data import corpus as corpus_lib
    from rnn_lm.data.tokenizers import get_tokenizer

    config, vocab, model = checkpoints.load_model(FLAGS.model_dir, averaged=FLAGS.averaged,
                                                  checkpoint=FLAGS.checkpoint)
    if FLAGS.per_sentence or FLAGS.nbest:
        if not FLAGS.text_file:
            raise RnnLmError(f"--{'nbest' if FLAGS.nbest else 'per_sentence'} needs --text_file")
        if FLAGS.sentences_per_batch < 0:
            raise RnnLmError(f"--sentences_per_batch must be >= 0 (0: the default), got "
                             f"{FLAGS.sentences_per_batch}")
        lines, hypotheses = read_text_file(), None
        if FLAGS.nbest:
            hypotheses, lines = split_nbest(lines)
        return score_lines(config, vocab, model, lines, hypotheses)
    if FLAGS.text_file:
        lines = read_text_file()
        ids = corpus_lib.encode_lines(lines, vocab, get_tokenizer(config.data.level, FLAGS.model_dir))
        what = FLAGS.text_file
    else:
        data = config.data
        if FLAGS.encoding_errors:
            data = dataclasses.replace(data, encoding_errors=FLAGS.encoding_errors)
        ids = corpus_lib.load_split(data, vocab, FLAGS.split, FLAGS.model_dir)
        what = f"{FLAGS.split} split of {config.data.corpus_name}"
        lines = None
    if FLAGS.tune != "off":
        return tune(config, vocab, model, ids, FLAGS.text_file or FLAGS.split)
    settings = settings_from_flags()
    evaluator = adaptive_evaluator(config, vocab, model, settings)
    if settings["method"] != "static":
        what += f" ({describe(settings)})"
    nats = evaluator.mean_cross_entropy(ids)
    unk = float((ids == vocab.unk_id).mean())
    line = f"{what}: {len(ids)} tokens, perplexity {math.exp(nats):.2f}, {nats:.4f} nats/token"
    line += char_bits(config, nats)
    if config.data.level == "subword":
        from rnn_lm.losses import per_text_unit
        if lines is None:  # a split, not --text_file
            lines = corpus_lib.split_lines(data, FLAGS.split)
        units = per_text_unit(nats, len(ids), lines)
        line += (f"; per word {units['word_perplexity']:.2f} ({units['words']} words), "
                 f"{units['bits_per_char']:.4f} bits/char ({units['chars']} characters)")
    print(line + f", <unk> {100 * unk:.2f}%")


def char_bits(config, nats):
    """", B bits/char" for a character model's mean cross entropy in nats (B = nats / ln 2), else ""."""
    return f", {nats / math.log(2):.4f} bits/char" if config.data.level == "char" else ""


def settings_from_flags():
    """The adaptive method the flags ask for: {"method": "static" | "cache" | "sgd" | "rms", its
    settings}; a dynamic method with --cache_size carries the cache's settings (size, theta, lam) too."""
    from rnn_lm.adaptation import DYNAMIC_DEFAULTS
    cache = {}
    if FLAGS.cache_size:
        if FLAGS.cache_size < 0 or not 0 <= FLAGS.cache_lambda <= 1 or not math.isfinite(FLAGS.cache_theta):
            raise RnnLmError("--cache_size must be >= 0, --cache_lambda in [0, 1] and --cache_theta finite")
        cache = dict(size=FLAGS.cache_size, theta=FLAGS.cache_theta, lam=FLAGS.cache_lambda)
    method = FLAGS.dynamic
    if method == "off":
        method = "rms" if FLAGS.tune in ("dynamic", "both") else None
    if method is None:
        return dict(method="cache", **cache) if cache else dict(method="static")
    d = DYNAMIC_DEFAULTS[method]
    settings = dict(method=method, lr=FLAGS.dynamic_lr or d["lr"],
                    decay=FLAGS.dynamic_decay if FLAGS.dynamic_decay >= 0 else d["decay"],
                    segment=FLAGS.dynamic_segment or d["segment"])
    if settings["lr"] < 0 or settings["segment"] < 1 or not 0 <= settings["decay"] < 1:
        raise RnnLmError("--dynamic_lr must be >= 0, --dynamic_segment positive and --dynamic_decay in [0, 1)")
    return dict(settings, **cache)


# The RMS method's gradient statistics, by segment length: --tune tries several settings on one model.
_STATISTICS = {}


def adaptive_evaluator(config, vocab, model, settings):
    """An evaluator with ``mean_cross_entropy(ids)`` and, but for static evaluation, ``scored_tokens(ids)``
    (rnn_lm.adaptation) for ``settings`` (``settings_from_flags``'s; the cache's size and theta may be
    lists, a grid scored in one pass)."""
    from rnn_lm import adaptation, evaluation
    method = settings["method"]
    train = config.train
    warmup = train.eval_warmup if FLAGS.warmup < 0 else FLAGS.warmup
    if method == "static":
        return evaluation.Evaluator(model, FLAGS.batch_size or train.eval_batch_size, FLAGS.num_steps, vocab.eos_id,
                                    warmup)
    batch_size = FLAGS.batch_size or 1
    if method == "cache":
        return adaptation.CacheEvaluator(model, batch_size, FLAGS.num_steps, vocab.eos_id, settings["size"],
                                         settings["theta"], settings["lam"], warmup)
    ms = None
    if method == "rms":
        key = settings["segment"]
        if key not in _STATISTICS:
            from rnn_lm.data import corpus as corpus_lib
            train = corpus_lib.load_split(config.data, vocab, "train", FLAGS.model_dir)
            _STATISTICS[key] = adaptation.gradient_statistics(model, train, settings["segment"], vocab.eos_id)
        ms = _STATISTICS[key]
    cache = adaptation.CacheGrid(model.config.hidden_size, settings["size"], settings["theta"]) \
        if "size" in settings else None
    return adaptation.DynamicEvaluator(model, settings["segment"], vocab.eos_id, settings["lr"], method,
                                       settings["decay"], ms, batch_size, cache, settings.get("lam", 0.0), warmup)


def describe(settings):
    return ", ".join(f"{k}={v}" for k, v in settings.items())


def name(settings):
    """The method in words: static, cache, sgd, rms, or "sgd with the cache"."""
    if settings["method"] in ("sgd", "rms") and "size" in settings:
        return f"{settings['method']} with the cache"
    return settings["method"]


def tune(config, vocab, model, ids, what):
    """Each setting of the grid on (the start of) valid, the best on ``ids`` (``what``: the --split, test
    by default, or the --text_file), beside static evaluation.

    --tune=cache tries the cache's grid, --tune=dynamic dynamic evaluation's, --tune=both every pair;
    what is not searched comes from the flags.  The cache's whole grid is scored in one pass over the
    text (``CacheGrid``), lambda mixed in afterwards, so each dynamic setting costs one pass."""
    import itertools
    from rnn_lm import adaptation
    from rnn_lm.data import corpus as corpus_lib
    valid = corpus_lib.load_split(config.data, vocab, "valid", FLAGS.model_dir)
    if FLAGS.tune_tokens:
        valid = valid[:FLAGS.tune_tokens]
    base = settings_from_flags()
    cache_keys = ("size", "theta", "lam")
    fixed_cache = {k: base.pop(k) for k in cache_keys if k in base}
    if base["method"] == "cache":
        base = dict(method="static")
    passes = [base]
    if FLAGS.tune in ("dynamic", "both"):
        grid = adaptation.DYNAMIC_GRID[base["method"]]
        passes = [dict(base, **dict(zip(grid, values))) for values in itertools.product(*grid.values())]
    lams = [fixed_cache.get("lam")] if fixed_cache else []
    cache = dict(size=[fixed_cache["size"]], theta=[fixed_cache["theta"]]) if fixed_cache else None
    if FLAGS.tune in ("cache", "both"):
        cache = dict(size=[FLAGS.cache_size] if FLAGS.cache_size else adaptation.CACHE_GRID["size"],
                     theta=adaptation.CACHE_GRID["theta"])
        lams = adaptation.CACHE_GRID["lam"]
    static = adaptive_evaluator(config, vocab, model, dict(method="static")).mean_cross_entropy(valid)
    print(f"valid ({len(valid)} tokens), static: perplexity {math.exp(static):.2f}")
    best = None
    for settings in passes:
        if cache is None:
            tried = [(adaptive_evaluator(config, vocab, model, settings).mean_cross_entropy(valid), settings)]
        else:
            method = "cache" if settings["method"] == "static" else settings["method"]
            evaluator = adaptive_evaluator(config, vocab, model, dict(settings, method=method, lam=0.0, **cache))
            scored = evaluator.scored_tokens(valid)
            tried = [(float(np.mean(scored.mixed(k, lam))), dict(settings, method=method, size=size, theta=theta,
                                                                   lam=lam))
                     for k, (size, theta) in enumerate(evaluator.cache.settings) for lam in lams]
            if method != "cache":  # dynamic evaluation alone comes with it (a candidate if the cache is searched)
                tried.append((float(np.mean(scored.nll)), settings))
        if len(passes) > 1 and len(tried) > 1:  # many passes: each one's best, and without the cache
            tried = [min(tried[:-1], key=lambda t: t[0]), tried[-1]]
        for nats, tried_settings in tried:
            print(f"valid ({len(valid)} tokens), {describe(tried_settings)}: perplexity {math.exp(nats):.2f}",
                  flush=True)
            candidate = FLAGS.tune != "dynamic" or not fixed_cache or "size" in tried_settings
            if candidate and (best is None or nats < best[0]):
                best = nats, tried_settings
    static_test = adaptive_evaluator(config, vocab, model, dict(method="static")).mean_cross_entropy(ids)
    chosen = best[1]
    print(f"chosen on valid: {describe(chosen)}")
    if best[0] >= static:
        print(f"(no setting beat static evaluation on valid, {math.exp(static):.2f}: try other --cache_* or "
              "--dynamic_* values)")
    line = f"{what} ({len(ids)} tokens): static perplexity {math.exp(static_test):.2f}{char_bits(config, static_test)}"

    def lower(nats):
        change = 100 * (1 - math.exp(nats - static_test))
        direction = "lower" if change >= 0 else "higher"
        return f"{math.exp(nats):.2f} ({abs(change):.1f}% {direction}{char_bits(config, nats)})"

    if name(chosen) == chosen["method"]:
        adapted = adaptive_evaluator(config, vocab, model, chosen).mean_cross_entropy(ids)
        print(f"{line}, with {chosen['method']} {lower(adapted)}")
        return
    scored = adaptive_evaluator(config, vocab, model, chosen).scored_tokens(ids)
    cache_alone = adaptive_evaluator(config, vocab, model, dict(
        method="cache", **{k: chosen[k] for k in cache_keys})).mean_cross_entropy(ids)
    print(f"{line}, with {name(chosen)} {lower(np.mean(scored.mixed(0, chosen['lam'])))}; "
          f"{chosen['method']} alone {lower(np.mean(scored.nll))}, the cache alone {lower(cache_alone)}")


def read_text_file():
    from rnn_lm.data import corpus as corpus_lib
    return corpus_lib.read_lines(FLAGS.text_file, FLAGS.encoding_errors or "strict")


def split_nbest(lines):
    """n-best lines 'ID words...' -> ([(id, utterance)], [the hypotheses' texts])."""
    ids, texts = [], []
    for number, line in enumerate(lines, 1):
        parts = line.split(maxsplit=1)
        if not parts:
            raise RnnLmError(f"{FLAGS.text_file}:{number}: an empty line; --nbest lines are 'HYPOTHESIS-ID words...'")
        head, sep, tail = parts[0].rpartition("-")
        ids.append((parts[0], head if sep and tail.isdigit() and head else parts[0]))
        texts.append(parts[1] if len(parts) > 1 else "")
    return ids, texts


def score_lines(config, vocab, model, lines, hypotheses=None):
    """One JSON line per line (with ``hypotheses``: its id, utterance and rank), then the totals and the
    speed on stderr."""
    import time
    from rnn_lm.data.tokenizers import get_tokenizer
    from rnn_lm.evaluation import SENTENCE_BATCH, SentenceScorer
    start_state = sentence_start(config, vocab, model)
    began = time.perf_counter()
    scorer = SentenceScorer(model, vocab, get_tokenizer(config.data.level, FLAGS.model_dir),
                            FLAGS.sentences_per_batch or SENTENCE_BATCH, start_state)
    rows = scorer.score(lines, desc="scoring")
    seconds = time.perf_counter() - began
    ranks = rank_hypotheses(hypotheses, [r[1] for r in rows]) if hypotheses else None
    total, tokens, unknown = 0.0, 0, 0
    for i, (line, log_prob, n, unk) in enumerate(rows):
        row = {"text": line, "log_prob": round(log_prob, 6), "num_tokens": n,
               "perplexity": round(math.exp(-log_prob / n), 4), "unknown": unk}
        if hypotheses:
            row = {"id": hypotheses[i][0], "utterance": hypotheses[i][1], "rank": ranks[i], **row}
        print(json.dumps(row))
        total, tokens, unknown = total + log_prob, tokens + n, unknown + unk
    summary = {"sentences": len(lines), "num_tokens": tokens, "log_prob": round(total, 6),
               "perplexity": round(math.exp(-total / tokens), 4), "unknown_rate": unknown / tokens,
               "sentence_start": "zero" if start_state is None else FLAGS.sentence_start,
               "sentences_per_second": round(len(lines) / seconds, 1)}
    if hypotheses:
        summary["utterances"] = len({u for _, u in hypotheses})
    print(json.dumps(summary), file=sys.stderr)


def rank_hypotheses(hypotheses, log_probs):
    """Each hypothesis' rank within its utterance by log-probability (1: the best; ties by input order)."""
    by_utterance = {}
    for i, (_, utterance) in enumerate(hypotheses):
        by_utterance.setdefault(utterance, []).append(i)
    ranks = [0] * len(hypotheses)
    for members in by_utterance.values():
        for rank, i in enumerate(sorted(members, key=lambda i: -log_probs[i]), 1):
            ranks[i] = rank
    return ranks


def sentence_start(config, vocab, model):
    """The state each line starts from: None (zero) for --sentence_start=zero, else
    ``evaluation.sentence_start``'s."""
    if FLAGS.sentence_start == "zero":
        return None
    from rnn_lm import evaluation
    try:
        return evaluation.sentence_start(config, vocab, model, FLAGS.model_dir, method=FLAGS.sentence_start)
    except RnnLmError as e:
        raise RnnLmError(f"--sentence_start={FLAGS.sentence_start} reads the training text: {e}; "
                         "or give --sentence_start=zero")


def run():
    common.run_main(main)


if __name__ == "__main__":
    run()

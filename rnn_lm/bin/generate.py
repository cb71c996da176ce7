"""rnn-lm-generate: continue prompts with a trained model.

    rnn-lm-generate --model_dir=/tmp/lm --prompt="the cake which" --temperature=0.8 --seed=1
    rnn-lm-generate --model_dir=/tmp/lm --prompt="the cake" --beam_width=4 --json --checkpoint=best
    cat prompts.txt | rnn-lm-generate --model_dir=/tmp/lm --top_p=0.9
    rnn-lm-generate --saved_model=/tmp/lm/saved_model --prompt="the dogs"
    rnn-lm-generate --model_dir=/tmp/lm --interactive      # type prompts, watch tokens arrive

--interactive reads prompts with line editing and history (the arrow keys; kept
in ~/.rnn_lm_history), warns about words outside the vocabulary, and takes
commands that change the settings for the prompts after them: :temperature T,
:top_k K, :top_p P, :beam N (0: sampling), :max_tokens N, :seed S, :settings, :help.
"""

import itertools
import json
import math
import os
import sys
import time

from absl import flags

from rnn_lm.bin import common
from rnn_lm.config import GENERATION_DEFAULTS, MAX_GENERATED_TOKENS
from rnn_lm.errors import RnnLmError

FLAGS = flags.FLAGS

flags.DEFINE_string("model_dir", "", "A model directory written by rnn-lm-train.")
flags.DEFINE_string("saved_model", "", "Or a SavedModel written by rnn-lm-train/rnn-lm-export "
                    "(sampling only; no beam search, no --interactive).")
flags.DEFINE_multi_string("prompt", None, "Text to continue (repeatable). Without it, prompts are read "
                          "from stdin, one a line, when stdin is not a terminal; else one empty prompt "
                          "(a new sentence).")
flags.DEFINE_integer("max_tokens", GENERATION_DEFAULTS["max_tokens"], "Stop after this many tokens if no "
                     f"<eos> came; at most {MAX_GENERATED_TOKENS}.")
flags.DEFINE_float("temperature", GENERATION_DEFAULTS["temperature"],
                   "Divide the logits by this before sampling; 0: greedy.")
flags.DEFINE_integer("top_k", GENERATION_DEFAULTS["top_k"], "Sample from the k most probable tokens only; 0: all.")
flags.DEFINE_float("top_p", GENERATION_DEFAULTS["top_p"], "Sample from the smallest set of tokens whose "
                   "probability reaches p (nucleus sampling); 1: all.")
flags.DEFINE_integer("beam_width", 0, "Beam search with this many hypotheses instead of sampling; 0: sample.")
flags.DEFINE_float("length_penalty", 0.0, "Beam search: score / ((5 + length) / 6) ** alpha; 0: plain sum.")
flags.DEFINE_integer("num_samples", 1, "Continuations per prompt (sampled; with beam search, the best ones).")
flags.DEFINE_integer("seed", GENERATION_DEFAULTS["seed"], "Sampling seed: the same seed gives the same text.")
flags.DEFINE_boolean("json", False, "One JSON object a line instead of text.")
flags.DEFINE_boolean("interactive", False, "Read prompts at a '> ' prompt and print tokens as they come.")
flags.DEFINE_boolean("jit_compile", False, "Compile each token's model call with XLA (--model_dir only).")
flags.DEFINE_boolean("timing", False, "Also print the generation speed (ms per generated token, after an "
                     "untimed first call that builds the graph) to stderr.")
common.define_checkpoint_flag(__name__)


def check_flags():
    f = FLAGS
    if bool(f.model_dir) == bool(f.saved_model):
        raise RnnLmError("give exactly one of --model_dir and --saved_model")
    if f.num_samples <= 0:
        raise RnnLmError("--max_tokens and --num_samples must be positive, --beam_width and --top_k >= 0")
    check_settings(settings_from_flags())
    if not math.isfinite(f.length_penalty):
        raise RnnLmError(f"--length_penalty must be a finite number, got {f.length_penalty}")
    if f.beam_width and f.num_samples > f.beam_width:
        raise RnnLmError(f"--num_samples {f.num_samples} exceeds --beam_width {f.beam_width}")
    if f.saved_model and (f.beam_width or f.interactive):
        raise RnnLmError("--beam_width and --interactive need --model_dir")


# What --interactive's commands change: {command: flag}.
SETTINGS = {"temperature": "temperature", "top_k": "top_k", "top_p": "top_p", "beam": "beam_width",
            "max_tokens": "max_tokens", "seed": "seed"}


def settings_from_flags():
    return {command: FLAGS[flag].value for command, flag in SETTINGS.items()}


def check_settings(s):
    """The sampling settings of the flags, or of --interactive's commands: one line for a bad one."""
    if s["max_tokens"] <= 0 or s["beam"] < 0 or s["top_k"] < 0:
        raise RnnLmError("--max_tokens and --num_samples must be positive, --beam_width and --top_k >= 0")
    if s["max_tokens"] > MAX_GENERATED_TOKENS:
        raise RnnLmError(f"--max_tokens {s['max_tokens']} exceeds the limit of {MAX_GENERATED_TOKENS} tokens")
    for name in ("temperature", "top_p"):
        if not math.isfinite(s[name]):
            raise RnnLmError(f"--{name} must be a finite number, got {s[name]}")
    if s["temperature"] < 0 or not 0 < s["top_p"] <= 1:
        raise RnnLmError(f"--temperature must be >= 0 and --top_p in (0, 1], got {s['temperature']}, {s['top_p']}")


def read_prompts():
    if FLAGS.prompt:
        return FLAGS.prompt
    if not sys.stdin.isatty():
        prompts = [line.rstrip("\n") for line in sys.stdin]
        if prompts:
            return prompts
    return [""]


def emit(prompt, continuation, separator, score=None):
    text = (prompt + separator + continuation) if prompt and continuation else (prompt or continuation)
    if FLAGS.json:
        row = {"prompt": prompt, "continuation": continuation, "text": text}
        if score is not None:
            row["score"] = score
        print(json.dumps(row, ensure_ascii=False))
    else:
        print(text)


def main(argv):
    check_flags()
    if FLAGS.saved_model:
        return generate_from_saved_model(read_prompts())
    from rnn_lm.config import Config
    Config.load(FLAGS.model_dir)  # a wrong directory is reported before TensorFlow loads
    common.load_tensorflow()
    from rnn_lm import checkpoints
    from rnn_lm.data.tokenizers import get_tokenizer
    from rnn_lm import progress
    from rnn_lm.generation import PIECE_TOKENS, Generator

    config, vocab, model = checkpoints.load_model(FLAGS.model_dir, checkpoint=FLAGS.checkpoint)
    tokenizer = get_tokenizer(config.data.level, FLAGS.model_dir)
    generator = Generator(model, vocab, tokenizer, jit_compile=FLAGS.jit_compile)
    if FLAGS.interactive:
        return interact(generator, tokenizer.separator)
    prompts = read_prompts()
    for prompt, unknown in zip(prompts, generator.encode_prompts(prompts)[2]):
        if unknown and len(unknown) == len(tokenizer.tokenize_prompt(prompt)):
            raise RnnLmError(f"the prompt {prompt!r} has only words outside the vocabulary "
                             f"(all would be <unk>); {FLAGS.model_dir}/vocab.txt lists the known ones")
    if FLAGS.beam_width:
        results = generator.beam_search(prompts, FLAGS.max_tokens, FLAGS.beam_width, FLAGS.length_penalty)
        for prompt, beams in zip(prompts, results):
            for continuation, score in beams[:FLAGS.num_samples]:
                emit(prompt, continuation, tokenizer.separator, round(score, 6))
        return
    repeated = [p for p in prompts for _ in range(FLAGS.num_samples)]
    piece = PIECE_TOKENS if progress.on_terminal() and not FLAGS.timing else None  # a bar, or the fastest way
    continuations, _ = timed(lambda: generator.sample(repeated, FLAGS.max_tokens, FLAGS.temperature,
                                                      FLAGS.top_k, FLAGS.top_p, FLAGS.seed, piece),
                             lambda result: max(result[1]), len(repeated))
    for prompt, continuation in zip(repeated, continuations):
        emit(prompt, continuation, tokenizer.separator)


def timed(generate, steps_of, batch_size):
    """Runs ``generate`` (a batch of ``batch_size`` continuations); with --timing, once more timed,
    reporting ms per decoding step."""
    result = generate()
    if FLAGS.timing:
        start = time.perf_counter()
        result = generate()
        ms = 1000 * (time.perf_counter() - start)
        steps = steps_of(result)  # tokens of the longest continuation, <eos> included
        print(f"{steps} decoding steps for a batch of {batch_size} in {ms:.1f} ms: "
              f"{ms / steps:.3f} ms per step", file=sys.stderr)
    return result


HISTORY_FILE = os.path.join(os.path.expanduser("~"), ".rnn_lm_history")
COMMANDS_HELP = ("commands: :temperature T, :top_k K, :top_p P, :beam N (0: sampling), :max_tokens N, :seed S, "
                 ":settings, :help")


def interact(generator, separator):
    settings = settings_from_flags()
    editing = _line_editing()
    print("Type a prompt and press Enter (an empty line starts a new sentence; Ctrl-D ends); "
          + COMMANDS_HELP + ".", file=sys.stderr)
    try:
        for n in itertools.count():
            try:
                prompt = _read_line("> ", editing)
            except EOFError:
                break
            if prompt.startswith(":"):
                _command(prompt[1:].split(), settings)
                continue
            unknown = generator.encode_prompts([prompt])[2][0]
            if unknown:
                print(f"not in the vocabulary, read as <unk>: {' '.join(unknown)}", file=sys.stderr)
            print(prompt, end="", flush=True)
            if settings["beam"]:
                text, _ = generator.beam_search([prompt], settings["max_tokens"], settings["beam"],
                                                FLAGS.length_penalty)[0][0]
                print((separator if prompt and text else "") + text, flush=True)
                continue
            pieces = generator.stream(prompt, settings["max_tokens"], settings["temperature"], settings["top_k"],
                                      settings["top_p"], settings["seed"] + n)
            for i, token in enumerate(pieces):
                print((separator if prompt or i else "") + token, end="", flush=True)
            print(flush=True)
    finally:
        if editing:
            _save_history(editing)


def _command(words, settings):
    """:NAME VALUE changes a setting for the prompts after it; :settings shows them, :help the commands."""
    if words in (["settings"], []):
        print(" ".join(f"{k}={v}" for k, v in settings.items()), file=sys.stderr)
        return
    if words[0] == "help" or words[0] not in SETTINGS or len(words) != 2:
        print(COMMANDS_HELP if words[0] == "help" else f"unknown command :{' '.join(words)}; {COMMANDS_HELP}",
              file=sys.stderr)
        return
    name, text = words
    kind = type(FLAGS[SETTINGS[name]].default)
    try:
        changed = dict(settings, **{name: kind(text)})
        check_settings(changed)
    except (ValueError, RnnLmError) as e:
        print(f"not changed: {e if isinstance(e, RnnLmError) else f'{name} takes a {kind.__name__}, got {text!r}'}",
              file=sys.stderr)
        return
    settings.update(changed)
    print(f"{name}={settings[name]}", file=sys.stderr)


def _line_editing():
    """On a terminal: line editing and history for input() (stdlib readline); the module, or None."""
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        return None
    try:
        import readline
    except ImportError:  # a Python built without it
        return None
    try:
        readline.read_history_file(HISTORY_FILE)
    except OSError:
        pass
    return readline


def _read_line(prompt, editing):
    """A line of input; EOFError at its end.  The prompt goes to the terminal, or to stderr when the
    output is a file (so that the file holds only the generated text)."""
    if editing:
        return input(prompt)
    print(prompt, end="", file=sys.stderr, flush=True)
    line = sys.stdin.readline()
    if not line:
        raise EOFError
    return line.rstrip("\n")


def _save_history(readline):
    try:
        readline.set_history_length(1000)
        readline.write_history_file(HISTORY_FILE)
    except OSError:
        pass


def generate_from_saved_model(prompts):
    common.load_tensorflow()
    import tensorflow as tf
    from rnn_lm.export import GENERATE_SIGNATURES, load_saved_model
    served = load_saved_model(FLAGS.saved_model, GENERATE_SIGNATURES, variables=("token_level",))
    generate = served.signatures["generate"]
    repeated = [p for p in prompts for _ in range(FLAGS.num_samples)]
    out = timed(lambda: generate(prompts=tf.constant(repeated), max_tokens=tf.constant(FLAGS.max_tokens),
                                 temperature=tf.constant(FLAGS.temperature), top_k=tf.constant(FLAGS.top_k),
                                 top_p=tf.constant(FLAGS.top_p), seed=tf.constant(FLAGS.seed, tf.int64)),
                lambda out: int(tf.reduce_max(out["lengths"])), len(repeated))
    separator = " " if served.token_level.numpy() == b"word" else ""
    for prompt, continuation in zip(repeated, out["continuations"].numpy()):
        emit(prompt, continuation.decode("utf-8"), separator)


def run():
    common.run_main(main)


if __name__ == "__main__":
    run()

"""rnn-lm-benchmark: rnn_lm's training, generation and evaluation speed against Keras' built-in layers.

    rnn-lm-benchmark --json_out=bench.json                    # everything (~15 min on 2 cores)
    rnn-lm-benchmark --configs=small --cells=lstm --rounds=4  # a quick look
    rnn-lm-benchmark --configs=wt2,wt103 --cells=lstm --jit=off # large vocabularies, full and adaptive softmax

Compares, in one process and interleaved, rnn_lm's real train step (with and
without XLA), the same step on keras.layers.LSTM / GRU(reset_after=False) /
SimpleRNN, and PyTorch when it imports; then greedy generation.  See
rnn_lm_tools/speed.py for what is measured and how.
"""

import json
import logging as std_logging
import os

from absl import flags
from absl import logging

from rnn_lm.bin import common
from rnn_lm.errors import RnnLmError

FLAGS = flags.FLAGS

flags.DEFINE_list("cells", ["lstm", "gru", "elman"], "Cells to benchmark.")
flags.DEFINE_list("configs", ["small", "medium"], "Model sizes: small (H=200, 20 steps), medium (H=650, "
                  "35 steps), both with vocabulary 10,000; wt2 and wt103 (H=200, 35 steps, WikiText-2's 33,278 "
                  "and WikiText-103's 267,735 words, Zipf-distributed ids); all 2 layers, batch 20; tiny is for "
                  "tests.")
flags.DEFINE_list("jit", ["off", "on"], "Which of rnn_lm's train steps to time: off (graph), on (XLA).")
flags.DEFINE_enum("bptt", "on", ["on", "off"], "Also rnn_lm with backpropagation through time written out "
                  "(--backward=written) beside autodiff's.")
flags.DEFINE_enum("torch", "auto", ["auto", "off"], "auto: include PyTorch when it imports.")
flags.DEFINE_enum("adaptive", "on", ["on", "off"], "At the large vocabularies (wt2, wt103), also rnn_lm and "
                  "PyTorch with the adaptive softmax.")
flags.DEFINE_string("adaptive_cutoffs", "", "The adaptive softmax's cutoffs at the large vocabularies, as "
                    "rnn-lm-train's --adaptive_cutoffs (rnn_lm and PyTorch alike); empty: training's defaults.")
flags.DEFINE_float("adaptive_factor", None, "The adaptive softmax's projection factor at the large vocabularies, as "
                   "rnn-lm-train's --adaptive_factor (PyTorch's div_value); unset: training's default.")
flags.DEFINE_enum("bfloat16", "auto", ["auto", "on", "off"], "rnn_lm with bfloat16 mixed precision; "
                  "auto: only where the CPU has native bfloat16 (AVX512_BF16 or AMX).")
flags.DEFINE_enum("float16", "off", ["on", "off"], "rnn_lm with float16 mixed precision and dynamic loss "
                  "scaling (pays on GPUs; a CPU emulates it).")
flags.DEFINE_boolean("profile", True, "Also time the step without the recurrence (embedding, softmax, loss, "
                     "update): the full step's time minus it is the recurrence's share.")
flags.DEFINE_integer("rounds", 6, "Interleaved rounds (order reversed every other round).")
flags.DEFINE_integer("steps_per_round", 3, "Train steps of each variant per round.")
flags.DEFINE_integer("warmup", 1, "Untimed steps of each variant after its first (tracing) call.")
flags.DEFINE_integer("generate_tokens", 50, "Tokens per greedy generation; 0: skip generation.")
flags.DEFINE_list("generate_batch_sizes", ["1", "32"], "Batch sizes of the generation benchmark.")
flags.DEFINE_integer("eval_tokens", 20_000, "Tokens of the evaluation benchmark (batch 1 against training's "
                     "batched default); 0: skip it.")
flags.DEFINE_integer("peak_size", 2048, "n of the n x n x n matmuls that measure the fp32 peak; 0: skip.")
flags.DEFINE_integer("seed", 0, "Seed of weights and random batches.")
flags.DEFINE_string("json_out", "", "Also write all results here as JSON.")

JIT_VARIANTS = {"off": "rnn_lm", "on": "rnn_lm_xla"}


def settings_from_flags():
    from rnn_lm import cpu
    from rnn_lm_tools import speed  # it loads TensorFlow: not before --help is answered

    f = FLAGS
    bad_jit = [j for j in f.jit if j not in JIT_VARIANTS]
    if bad_jit or not f.jit:
        raise RnnLmError(f"--jit must be a non-empty list of off, on; got {','.join(f.jit) or 'nothing'}")
    try:
        batch_sizes = tuple(int(b) for b in f.generate_batch_sizes)
    except ValueError:
        raise RnnLmError(f"--generate_batch_sizes must be integers, got {','.join(f.generate_batch_sizes)}")
    variants = tuple(JIT_VARIANTS[j] for j in dict.fromkeys(f.jit))
    if f.bptt == "on":
        variants += ("rnn_lm_bptt",)
    if f.bfloat16 == "on" or (f.bfloat16 == "auto" and cpu.native_bfloat16()):
        variants += ("rnn_lm_bf16",)
    if f.float16 == "on":
        variants += ("rnn_lm_fp16",)
    if f.adaptive == "on":
        variants += ("rnn_lm_adaptive",)
    variants += ("keras",)
    if f.torch == "auto":
        variants += ("torch",) + (("torch_adaptive",) if f.adaptive == "on" else ())
    if f.profile:
        variants += ("softmax",)
    return speed.Settings(
        cells=tuple(f.cells), configs=tuple(f.configs), variants=variants, rounds=f.rounds,
        steps_per_round=f.steps_per_round, warmup=f.warmup, generate_tokens=f.generate_tokens,
        generate_batch_sizes=batch_sizes, eval_tokens=f.eval_tokens, peak_size=f.peak_size,
        seed=f.seed, adaptive_cutoffs=f.adaptive_cutoffs, adaptive_factor=f.adaptive_factor).validate()


def _range(s, fmt="{:.0f}"):
    """'median [min-max]'."""
    return f"{fmt.format(s['median'])} [{fmt.format(s['min'])}–{fmt.format(s['max'])}]"


def print_report(results):
    m = results["machine"]
    print(f"machine: {m['cpu']}, {m['cpus']} CPUs, AVX-512 {'yes' if m['avx512f'] else 'no'}; "
          f"TensorFlow {m['tensorflow']}, Keras {m['keras']}, PyTorch {m['torch'] or 'not importable'}")
    peak = results["matmul_peak"]
    if peak:
        n = peak["size"]
        print(f"fp32 matmul peak (TensorFlow, {n}x{n}x{n}): {_range(peak['gflops'], '{:.1f}')} GFLOP/s")
    s = results["settings"]
    if results["train"]:
        print(f"\ntraining: {s['rounds']} interleaved rounds of {s['steps_per_round']} steps, "
              f"tokens/s median [min–max]")
        header = (f"{'config':<7}{'cell':<6}{'variant':<16}{'tokens/s':>22}{'x keras':>19}"
                  f"{'GFLOP/s':>9}{'%peak':>7}{'%limit':>7}{'1st call s':>11}{'RSS MB':>8}{'max RSS':>9}")
        print(header)
        print("-" * len(header))
        for r in results["train"]:
            ratio = _range(r["vs_keras"], "{:.2f}") if r["vs_keras"] else "-"
            pct = f"{r['percent_of_peak']:.0f}" if r["percent_of_peak"] is not None else "-"
            limit = f"{r['percent_of_limit']:.0f}" if r["percent_of_limit"] is not None else "-"
            gflops = f"{r['gflops']['median']:.1f}" if r["gflops"] else "-"
            print(f"{r['config']:<7}{r['cell']:<6}{r['variant']:<16}{_range(r['tokens_per_sec']):>22}"
                  f"{ratio:>19}{gflops:>9}{pct:>7}{limit:>7}{r['first_call_s']:>11.1f}"
                  f"{r['rss_mb']:>8.0f}{r['max_rss_mb']:>9.0f}")
    by_key = {(r["config"], r["cell"], r["variant"]): r for r in results["train"]}
    profile = [(key[:2], r, by_key[key[:2] + ("softmax",)]) for key, r in by_key.items()
               if key[2] == "rnn_lm" and key[:2] + ("softmax",) in by_key]
    if profile:
        print("\nwhere rnn_lm's step goes (median ms per step): the step without the recurrence "
              "(embedding, softmax, loss, update) and the rest")
        for (config, cell), full, soft in profile:
            full_ms, soft_ms = 1000 * full["sec_per_step"]["median"], 1000 * soft["sec_per_step"]["median"]
            print(f"{config:<7}{cell:<6} step {full_ms:7.1f}   softmax part {soft_ms:7.1f} "
                  f"({100 * soft_ms / full_ms:3.0f} %)   recurrence {full_ms - soft_ms:7.1f} "
                  f"({100 * (full_ms - soft_ms) / full_ms:3.0f} %)")
        print("the ceiling: the softmax part as measured plus the recurrence's matmuls at the limit, nothing "
              "else (no recurrence can be faster beside this softmax part)")
        for (config, cell), full, soft in profile:
            c = soft["ceiling"]
            against = "".join(f"   x {name} {c[key]:.2f}" for name, key in (("Keras", "vs_keras"), ("PyTorch", "vs_torch"))
                              if key in c)
            print(f"{config:<7}{cell:<6} step {1000 * c['sec_per_step']:7.1f}   {c['tokens_per_sec']:9.0f} tokens/s"
                  f"{against}")
    if results["generate"]:
        print(f"\ngreedy generation, {s['generate_tokens']} tokens, ms/token median [min–max]")
        header = (f"{'config':<7}{'cell':<6}{'batch':>5}{'rnn_lm (in-graph)':>24}"
                  f"{'keras (per token)':>24}{'rnn_lm x':>19}{'agree':>7}")
        print(header)
        print("-" * len(header))
        for r in results["generate"]:
            ms = r["ms_per_token"]
            print(f"{r['config']:<7}{r['cell']:<6}{r['batch_size']:>5}{_range(ms['rnn_lm'], '{:.3f}'):>24}"
                  f"{_range(ms['keras'], '{:.3f}'):>24}{_range(r['rnn_lm_vs_keras'], '{:.2f}'):>19}"
                  f"{r['tokens_agree']:>7.2f}")
            if r.get("adaptive_vs_full"):
                print(f"{'':<18}{_range(ms['rnn_lm_adaptive'], '{:.3f}'):>24}   (rnn_lm, adaptive softmax: "
                      f"x {_range(r['adaptive_vs_full'], '{:.2f}')} the full softmax's speed)")
    if results["evaluate"]:
        r0 = results["evaluate"][0]
        print(f"\nevaluation, {r0['tokens']} tokens, tokens/s median [min–max]: one exact stream against "
              f"{r0['batch_size']} streams with {r0['warmup']} tokens of warm-up (training's default)")
        header = f"{'config':<7}{'cell':<6}{'batch 1':>22}{'batched':>22}{'batched x':>19}{'ppl difference':>16}"
        print(header)
        print("-" * len(header))
        for r in results["evaluate"]:
            t, ppl = r["tokens_per_sec"], r["perplexity"]
            print(f"{r['config']:<7}{r['cell']:<6}{_range(t['batch_1']):>22}{_range(t['batched']):>22}"
                  f"{_range(r['batched_vs_batch_1'], '{:.2f}'):>19}"
                  f"{100 * (ppl['batched'] / ppl['batch_1'] - 1):>+15.3f}%")
    print(f"\npeak resident set (ru_maxrss): {results['max_rss_mb']:.0f} MB")
    for note in results["notes"]:
        print(f"note: {note}")


def main(argv):
    import tensorflow as tf

    from rnn_lm_tools import speed

    settings = settings_from_flags()
    if FLAGS.json_out and not os.path.isdir(os.path.dirname(os.path.abspath(FLAGS.json_out))):
        raise RnnLmError(f"--json_out: no folder {os.path.dirname(FLAGS.json_out)}")
    logging.set_verbosity(logging.INFO)
    # Every variant wraps the same Python method in its own tf.function, which
    # TensorFlow's retracing heuristic reports as retracing; it is not.
    tf.get_logger().setLevel(std_logging.ERROR)
    results = speed.run(settings)
    print_report(results)
    if FLAGS.json_out:
        with open(FLAGS.json_out, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=2)
            f.write("\n")
        print(f"results written to {FLAGS.json_out}")


def run():
    common.run_main(main)


if __name__ == "__main__":
    run()

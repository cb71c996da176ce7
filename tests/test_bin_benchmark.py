"""rnn-lm-benchmark end to end at its tiny size: the JSON it writes holds every section, each variant's
FLOPs per step as counted by hand (test_tools_benchmark.py), 16-bit final losses within 2 % of float32's,
greedy tokens that agree between rnn_lm and Keras; an unknown config is one line.

Timings are never asserted: they depend on the machine and its load.
"""

import json

import numpy as np
import pytest

from tests.helpers import run


def test_binary_end_to_end_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    proc = run("rnn_lm_tools.benchmark", "--configs=tiny", "--cells=gru", "--rounds=2", "--steps_per_round=1", "--warmup=0",
                       "--jit=off", "--torch=off", "--generate_tokens=3", "--generate_batch_sizes=1,2",
                       "--eval_tokens=300", "--bfloat16=on", "--float16=on", "--peak_size=64", f"--json_out={out}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "tokens/s" in proc.stdout and "ms/token" in proc.stdout
    results = json.loads(out.read_text())
    assert {"machine", "settings", "matmul_peak", "train", "generate", "evaluate", "max_rss_mb", "notes"} <= set(results)
    assert results["matmul_peak"]["gflops"]["median"] > 0
    assert [r["variant"] for r in results["train"]] == ["rnn_lm", "rnn_lm_bptt", "rnn_lm_bf16", "rnn_lm_fp16", "keras",
                                                        "softmax"]
    # Same weights and batches: the 16-bit steps' last loss is float32's to 16-bit accuracy.
    final = {r["variant"]: r["final_loss"] for r in results["train"]}
    for variant in ("rnn_lm_bf16", "rnn_lm_fp16"):
        assert abs(final[variant] - final["rnn_lm"]) < 0.02 * final["rnn_lm"], (variant, final)
    assert final["rnn_lm_bptt"] == pytest.approx(final["rnn_lm"], rel=1e-5)  # the same gradients, written out
    assert "where rnn_lm's step goes" in proc.stdout and "the ceiling" in proc.stdout
    # The ceiling: the softmax part's median time plus the recurrence's matmuls at the limit.
    by_variant = {r["variant"]: r for r in results["train"]}
    soft, keras = by_variant["softmax"], by_variant["keras"]
    recurrence = soft["ceiling"]["recurrence_limit_s"]
    assert recurrence > 0
    # The step's limit is its softmax part's and its recurrence's, each shape at the same rate.
    assert by_variant["rnn_lm"]["matmul_limit"]["seconds"] == pytest.approx(soft["matmul_limit"]["seconds"] + recurrence)
    assert soft["ceiling"]["sec_per_step"] == pytest.approx(soft["sec_per_step"]["median"] + recurrence)
    assert soft["ceiling"]["vs_keras"] == pytest.approx(keras["sec_per_step"]["median"] / soft["ceiling"]["sec_per_step"])
    assert "vs_torch" not in soft["ceiling"]
    for row in results["train"]:
        assert row["flops_per_step"] == (3 * 16 * 800 if row["variant"] == "softmax" else 112_128)
        assert row["tokens_per_sec"]["min"] <= row["tokens_per_sec"]["median"] <= row["tokens_per_sec"]["max"]
        assert {"gflops", "percent_of_peak", "vs_keras", "first_call_s", "rss_mb", "max_rss_mb"} <= set(row)
        assert (row["percent_of_limit"] is None) == (row["variant"] in ("rnn_lm_bf16", "rnn_lm_fp16"))
        # The 16-bit steps differentiate as training does by default: autodiff for a GRU this small.
        assert row["backward"] == {"rnn_lm_bptt": "written", "keras": None, "softmax": None}.get(row["variant"], "autodiff")
        assert np.isfinite(row["final_loss"])
    assert [r["batch_size"] for r in results["generate"]] == [1, 2]
    for row in results["generate"]:
        assert set(row["ms_per_token"]) == {"rnn_lm", "keras"}
        assert row["tokens_agree"] == 1.0  # same weights, same greedy tokens
    (evaluate,) = results["evaluate"]
    assert evaluate["tokens"] == 300 and set(evaluate["tokens_per_sec"]) == {"batch_1", "batched"}
    # Random ids under a random model: the warm-up's approximation moves the perplexity by little.
    assert evaluate["perplexity"]["batched"] == pytest.approx(evaluate["perplexity"]["batch_1"], rel=0.01)
    assert "evaluation, 300 tokens" in proc.stdout
    assert results["max_rss_mb"] > 0


def test_binary_rejects_an_unknown_config():
    proc = run("rnn_lm_tools.benchmark", "--configs=huge")
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert "--configs" in proc.stderr.strip().splitlines()[-1]


def test_binary_rejects_cutoffs_it_would_not_use_or_training_would_refuse():
    for args, needle in ((["--configs=wt2", "--adaptive_cutoffs=20000,4000"], "--adaptive_cutoffs"),
                         (["--configs=small", "--adaptive_cutoffs=4000"], "large vocabularies")):
        proc = run("rnn_lm_tools.benchmark", *args)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr
        assert needle in proc.stderr.strip().splitlines()[-1]

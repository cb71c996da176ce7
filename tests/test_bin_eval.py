"""rnn-lm-eval end to end, in fresh processes, on a model rnn-lm-train wrote (the ``trained`` fixture):
its test perplexity equals the one training printed, through the SavedModel equals through the
checkpoint, per-sentence scores equal the SavedModel's ``score`` signature, unknown words are counted;
a directory that is not a model, or a config.json that is not a config, is one line."""

import json
import os
import re

import pytest
import tensorflow as tf

from tests.helpers import TINY, assert_one_line_error, run, write_corpus


def test_eval_matches_training_test_perplexity(trained):
    model_dir, _, train_proc = trained
    proc = run("eval", f"--model_dir={model_dir}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    trained_ppl = float(train_proc.stdout.split("test perplexity ")[1].split()[0])
    evaluated = float(proc.stdout.split("perplexity ")[1].split(",")[0])
    assert evaluated == pytest.approx(trained_ppl, rel=1e-3)


def test_eval_on_a_text_file_counts_unknown_words(trained, tmp_path):
    model_dir, _, _ = trained
    text = tmp_path / "mine.txt"
    text.write_text("the cake zebra was eaten\n", encoding="utf-8")
    proc = run("eval", f"--model_dir={model_dir}", f"--text_file={text}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "6 tokens" in proc.stdout and "<unk> 16.67%" in proc.stdout


def test_eval_through_the_saved_model_equals_the_checkpoint(trained):
    model_dir, data, _ = trained
    text = os.path.join(data, "test.txt")
    from_checkpoint = run("eval", f"--model_dir={model_dir}", f"--text_file={text}")
    from_saved_model = run("eval", f"--saved_model={model_dir}/saved_model", f"--text_file={text}")
    for proc in (from_checkpoint, from_saved_model):
        assert proc.returncode == 0, proc.stderr[-2000:]
    ppl = [float(p.stdout.split("perplexity ")[1].split(",")[0]) for p in (from_checkpoint, from_saved_model)]
    assert ppl[0] == pytest.approx(ppl[1], rel=1e-4)


def test_per_sentence_scores_agree_with_the_saved_model(trained, tmp_path):
    model_dir, _, _ = trained
    lines = ["the cake which the children like was eaten by two small dogs", "dogs small two by eaten"]
    text = tmp_path / "nbest.txt"
    text.write_text("\n".join(lines) + "\n", encoding="utf-8")
    proc = run("eval", f"--model_dir={model_dir}", f"--text_file={text}", "--per_sentence")
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    served = tf.saved_model.load(os.path.join(model_dir, "saved_model")).signatures["score"](
        sentences=tf.constant(lines))
    assert [r["text"] for r in rows] == lines
    assert [r["num_tokens"] for r in rows] == [13, 6] == served["num_tokens"].numpy().tolist()
    for row, log_prob in zip(rows, served["log_prob"].numpy()):
        assert row["log_prob"] == pytest.approx(float(log_prob), rel=1e-4)
    assert rows[0]["perplexity"] < rows[1]["perplexity"]  # the sentence it was trained on


def test_eval_of_a_missing_model_dir(tmp_path):
    assert_one_line_error(run("eval", f"--model_dir={tmp_path / 'nothing'}"), "not an rnn_lm model directory")


def test_eval_of_a_config_json_that_is_not_a_config(tmp_path):
    """The library's refusals of each wrong field are in test_config.py."""
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text("[1, 2]")
    assert_one_line_error(run("eval", f"--model_dir={tmp_path / 'run'}"), "config.json", "not an rnn_lm config")


def test_nbest_lists_are_ranked_per_utterance_in_input_order(trained, tmp_path):
    """Kaldi's n-best text: 'utt-N words'; the scores are --per_sentence's, with the rank within the
    utterance, and the summary counts sentences, utterances and the speed."""
    model_dir, _, _ = trained
    good, bad = "the cake which the children like was eaten by two small dogs", "dogs small two by eaten"
    text = tmp_path / "nbest.txt"
    text.write_text(f"utt-a-1 {bad}\nutt-a-2 {good}\nutt-b-1 {good}\nutt-b-2 the\n", encoding="utf-8")
    proc = run("eval", f"--model_dir={model_dir}", f"--text_file={text}", "--nbest")
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [(r["id"], r["utterance"], r["text"]) for r in rows] == [
        ("utt-a-1", "utt-a", bad), ("utt-a-2", "utt-a", good), ("utt-b-1", "utt-b", good), ("utt-b-2", "utt-b", "the")]
    for utterance in ("utt-a", "utt-b"):
        mine = sorted((r for r in rows if r["utterance"] == utterance), key=lambda r: -r["log_prob"])
        assert [r["rank"] for r in mine] == [1, 2]
    assert rows[1]["rank"] == 1  # the sentence it was trained on beats its reversal
    plain = tmp_path / "plain.txt"
    plain.write_text(f"{bad}\n{good}\n{good}\nthe\n", encoding="utf-8")
    per_sentence = run("eval", f"--model_dir={model_dir}", f"--text_file={plain}", "--per_sentence")
    assert [json.loads(line)["log_prob"] for line in per_sentence.stdout.splitlines()] == [r["log_prob"] for r in rows]
    summary = json.loads(proc.stderr.strip().splitlines()[-1])
    assert summary["sentences"] == 4 and summary["utterances"] == 2 and summary["sentences_per_second"] > 0
    assert summary["sentence_start"] == "boundary"


def test_per_sentence_from_each_start_differs_and_is_named(trained, tmp_path):
    model_dir, _, _ = trained
    text = tmp_path / "lines.txt"
    text.write_text("the cake which the children like\n", encoding="utf-8")
    rows = {}
    for start in ("zero", "boundary", "learned"):
        proc = run("eval", f"--model_dir={model_dir}", f"--text_file={text}", "--per_sentence",
                   f"--sentence_start={start}")
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert json.loads(proc.stderr.strip().splitlines()[-1])["sentence_start"] == start
        rows[start] = json.loads(proc.stdout.splitlines()[0])["log_prob"]
    assert len(set(rows.values())) == 3


def test_cache_dynamic_and_tuning_report_perplexities(trained):
    """The flags reach the evaluators (whose figures test_adaptation.py checks): a cache with lambda 0
    is static evaluation; --tune reports each setting on valid and the chosen one on test."""
    model_dir, _, _ = trained
    ppl = lambda proc: float(proc.stdout.split("perplexity ")[1].split(",")[0])
    static = run("eval", f"--model_dir={model_dir}")
    off = run("eval", f"--model_dir={model_dir}", "--cache_size=20", "--cache_lambda=0")
    cache = run("eval", f"--model_dir={model_dir}", "--cache_size=20", "--cache_lambda=0.2", "--cache_theta=0.5")
    dynamic = run("eval", f"--model_dir={model_dir}", "--dynamic=sgd", "--dynamic_lr=0.05")
    for proc in (static, off, cache, dynamic):
        assert proc.returncode == 0, proc.stderr[-2000:]
    assert ppl(off) == pytest.approx(ppl(static), rel=1e-5)
    assert ppl(cache) != pytest.approx(ppl(static), rel=1e-4) and ppl(dynamic) != pytest.approx(ppl(static), rel=1e-4)
    tuned = run("eval", f"--model_dir={model_dir}", "--tune=cache", "--cache_size=20")
    assert tuned.returncode == 0, tuned.stderr[-2000:]
    assert tuned.stdout.count("valid (") == 1 + 16 and "chosen on valid: method=cache" in tuned.stdout
    assert "test (" in tuned.stdout and f"static perplexity {ppl(static):.2f}" in tuned.stdout
    # Tuned on valid, reported on the text asked for: the same lines in a file give the same figures.
    model_dir, data, _ = trained
    on_file = run("eval", f"--model_dir={model_dir}", "--tune=cache", "--cache_size=20",
                  f"--text_file={data}/test.txt")
    assert on_file.returncode == 0, on_file.stderr[-2000:]
    assert on_file.stdout.splitlines()[-1] == tuned.stdout.splitlines()[-1].replace("test (", f"{data}/test.txt (")
    sized = run("eval", f"--model_dir={model_dir}", "--tune=cache", "--tune_tokens=40")  # the size searched too
    assert sized.returncode == 0, sized.stderr[-2000:]
    assert sized.stdout.count("valid (40 tokens)") == 1 + 3 * 16 and "size=2000, theta=1.0, lam=0.3" in sized.stdout


def test_cache_and_dynamic_evaluation_together(trained):
    """--cache_size with --dynamic mixes the cache into dynamic evaluation (the figures are
    test_adaptation.py's); --tune=both reports, per dynamic setting, its best cache and itself alone,
    and on test the pair beside each method alone."""
    model_dir, _, _ = trained
    ppl = lambda proc: float(proc.stdout.split("perplexity ")[1].split(",")[0])
    dynamic = run("eval", f"--model_dir={model_dir}", "--dynamic=sgd", "--dynamic_lr=0.05")
    both = run("eval", f"--model_dir={model_dir}", "--dynamic=sgd", "--dynamic_lr=0.05", "--cache_size=20",
               "--cache_lambda=0.2")
    off = run("eval", f"--model_dir={model_dir}", "--dynamic=sgd", "--dynamic_lr=0.05", "--cache_size=20",
              "--cache_lambda=0")
    for proc in (dynamic, both, off):
        assert proc.returncode == 0, proc.stderr[-2000:]
    assert "method=sgd, lr=0.05, decay=0.0, segment=5, size=20, theta=1.0, lam=0.2" in both.stdout
    assert ppl(off) == pytest.approx(ppl(dynamic), rel=1e-5) and ppl(both) != pytest.approx(ppl(dynamic), rel=1e-4)
    tuned = run("eval", f"--model_dir={model_dir}", "--tune=both", "--dynamic=sgd", "--tune_tokens=40",
                "--cache_size=20")
    assert tuned.returncode == 0, tuned.stderr[-2000:]
    assert tuned.stdout.count("valid (40 tokens)") == 1 + 2 * 8, tuned.stdout
    assert tuned.stdout.splitlines()[-1].startswith("test (")
    fixed = run("eval", f"--model_dir={model_dir}", "--tune=dynamic", "--dynamic=sgd", "--tune_tokens=40",
                "--cache_size=20", "--cache_lambda=0.2")  # the cache given: dynamic evaluation tuned under it
    assert fixed.returncode == 0, fixed.stderr[-2000:]
    assert "chosen on valid: method=sgd" in fixed.stdout and "size=20, theta=1.0, lam=0.2" in fixed.stdout
    test_line = fixed.stdout.splitlines()[-1]
    assert "with sgd with the cache" in test_line and "sgd alone" in test_line and "the cache alone" in test_line


@pytest.mark.parametrize("args, needle", [
    (["--cache_size=10", "--dynamic=sgd", "--dynamic_segment=-2"], "--dynamic_segment positive"),
    (["--nbest"], "--nbest needs --text_file"),
    (["--cache_size=10", "--cache_lambda=1.5"], "--cache_lambda in [0, 1]"),
    # Adapting to a stream does not fit scoring lines on their own: not silently ignored.
    (["--per_sentence", "--cache_size=10"], "--cache_size adapts to a text read as one stream, which --per_sentence"),
    (["--nbest", "--dynamic=sgd", "--tune=dynamic"], "--dynamic and --tune adapt to a text read as one stream"),
])
def test_adaptive_flags_that_do_not_fit_are_one_line(trained, args, needle):
    assert_one_line_error(run("eval", f"--model_dir={trained[0]}", *args), needle)


def test_the_saved_model_takes_no_adaptive_flags(trained):
    model_dir, data, _ = trained
    assert_one_line_error(run("eval", f"--saved_model={model_dir}/saved_model", f"--text_file={data}/test.txt",
                              "--cache_size=10"), "--cache_size needs --model_dir")


def test_a_sentence_mode_model_scores_lines_alone_as_in_the_stream(tmp_path):
    """rnn-lm-train --reset_state=eos: the per-sentence total of a file's lines is its stream score."""
    data = write_corpus(tmp_path / "data", (40, 4, 4))
    model_dir = tmp_path / "run"
    trained = run("train", f"--model_dir={model_dir}", f"--data_dir={data}", *TINY, "--epochs=1",
                  "--reset_state=eos", "--noexport")
    assert trained.returncode == 0, trained.stderr[-2000:]
    text = tmp_path / "lines.txt"
    text.write_text("the cake which the children like\nwas eaten by two small dogs\nthe cake\n", encoding="utf-8")
    stream = run("eval", f"--model_dir={model_dir}", f"--text_file={text}")
    lines = run("eval", f"--model_dir={model_dir}", f"--text_file={text}", "--per_sentence")
    summary = json.loads(lines.stderr.strip().splitlines()[-1])
    tokens = int(stream.stdout.split(" tokens")[0].split()[-1])
    nats = float(stream.stdout.split(" nats/token")[0].split()[-1])
    assert tokens == summary["num_tokens"] == 17 and summary["sentence_start"] == "zero"
    assert -summary["log_prob"] == pytest.approx(nats * tokens, abs=1e-4 * tokens)


def test_tuning_a_character_model_reports_bits_per_character(tmp_path):
    """A character model's --tune line gives bits per character beside each perplexity: log2 of it, and
    the static one equals plain evaluation's."""
    import math
    data = write_corpus(tmp_path / "data", (20, 4, 4))
    model_dir = str(tmp_path / "char")
    trained = run("train", *TINY, "--epochs=1", "--level=char", f"--model_dir={model_dir}", f"--data_dir={data}")
    assert trained.returncode == 0, trained.stderr[-2000:]
    plain = run("eval", f"--model_dir={model_dir}")
    tuned = run("eval", f"--model_dir={model_dir}", "--tune=cache", "--cache_size=20", "--tune_tokens=40")
    for proc in (plain, tuned):
        assert proc.returncode == 0, proc.stderr[-2000:]
    last = tuned.stdout.splitlines()[-1]  # "...: static perplexity P, B bits/char, with cache P' (x% lower, B' bits/char)"
    perplexities = [float(x) for x in re.findall(r"(?:static perplexity|with cache) ([\d.]+)", last)]
    bits = [float(x) for x in re.findall(r"([\d.]+) bits/char", last)]
    assert len(perplexities) == len(bits) == 2, last
    figures = list(zip(perplexities, bits))
    for ppl, b in figures:
        assert b == pytest.approx(math.log2(ppl), abs=2e-3)
    assert f"{figures[0][1]:.4f} bits/char" in plain.stdout

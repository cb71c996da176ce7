"""The binaries end to end, in fresh processes: train, eval, generate, and bad input."""

import json
import math
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from test_training import write_corpus

ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
TINY = ["--num_layers=1", "--hidden_size=16", "--embedding_size=8", "--batch_size=4", "--num_steps=5",
        "--optimizer=adam", "--learning_rate=0.01", "--sample_tokens=6"]


def run(binary, *args):
    """``python -m rnn_lm.bin.<binary>``, or of the module ``binary`` when it is a dotted name."""
    module = binary if "." in binary else f"rnn_lm.bin.{binary}"
    return subprocess.run([sys.executable, "-m", module, *args],
                          capture_output=True, text=True, env=ENV, timeout=300)


def assert_one_line_error(proc, *needles):
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    errors = [l for l in proc.stderr.splitlines() if "error" in l.lower()]
    assert errors, proc.stderr
    for needle in needles:
        assert needle in errors[-1], errors[-1]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("bin")
    data = write_corpus(root / "data", (40, 4, 4))
    model_dir = str(root / "run")
    flagfile = root / "tiny.flags"  # absl flagfiles work, and flags given after them override them
    flagfile.write_text("\n".join(TINY + ["--epochs=1"]) + "\n")
    proc = run("train", f"--flagfile={flagfile}", f"--model_dir={model_dir}", f"--data_dir={data}", "--epochs=2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return model_dir, data, proc


def test_train_writes_a_self_describing_model_dir(trained):
    model_dir, _, proc = trained
    assert "test perplexity" in proc.stdout and "sample:" in proc.stdout
    for name in ("config.json", "vocab.txt", "checkpoints", "logs", "saved_model"):
        assert os.path.exists(os.path.join(model_dir, name)), name
    with open(os.path.join(model_dir, "config.json")) as f:
        config = json.load(f)
    assert config["model"]["hidden_size"] == 16 and config["train"]["epochs"] == 2
    for split, expected in [("train", {"loss", "perplexity", "training/learning_rate", "training/grad_norm",
                                       "speed/tokens_per_sec", "training/clipped_fraction",
                                       "spectral_norm/layer_1/W_hi", "_hparams_/session_start_info"}),
                            ("valid", {"loss", "perplexity", "sample"})]:
        folder = os.path.join(model_dir, "logs", split)
        values = [value for name in os.listdir(folder)
                  for event in tf.compat.v1.train.summary_iterator(os.path.join(folder, name))
                  for value in event.summary.value]
        tags = {value.tag for value in values}
        assert expected <= tags, (split, tags)
        # TensorBoard sorts tags by name: the loss and the perplexity come first.
        assert sorted(t for t in tags if not t.startswith("_"))[:2] == ["loss", "perplexity"]
        if split == "valid":  # the loss is the cross entropy: log perplexity
            last = {v.tag: tf.make_ndarray(v.tensor) for v in values if v.tag in ("loss", "perplexity")}
            assert abs(float(last["loss"]) - math.log(float(last["perplexity"]))) < 1e-5
    from tensorboard.plugins.hparams import plugin_data_pb2
    start = next(v for name in os.listdir(os.path.join(model_dir, "logs", "train"))
                 for event in tf.compat.v1.train.summary_iterator(os.path.join(model_dir, "logs", "train", name))
                 for v in event.summary.value if v.tag == "_hparams_/session_start_info")
    info = plugin_data_pb2.HParamsPluginData.FromString(start.metadata.plugin_data.content).session_start_info
    assert info.hparams["model.hidden_size"].number_value == 16 and info.hparams["model.cell"].string_value == "lstm"
    assert info.hparams["train.epochs"].number_value == 2 and info.group_name == "run"


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


def test_generate_is_reproducible_with_a_seed(trained):
    model_dir, _, _ = trained
    args = [f"--model_dir={model_dir}", "--prompt=the cake", "--prompt=", "--seed=3", "--max_tokens=8"]
    first, second = run("generate", *args), run("generate", *args)
    assert first.returncode == 0, first.stderr[-2000:]
    lines = first.stdout.splitlines()
    assert len(lines) == 2 and lines[0].startswith("the cake")
    assert first.stdout == second.stdout


@pytest.mark.parametrize("case", ["missing_dir", "empty_dir", "non_utf8", "too_small", "unknown_cell",
                                  "bad_dropout", "tied_sizes"])
def test_bad_input_gives_one_line_error(case, tmp_path):
    data = tmp_path / "data"
    args = []
    if case == "missing_dir":
        needles = ("no such directory",)
    elif case == "empty_dir":
        data.mkdir()
        needles = ("missing train.txt",)
    elif case == "non_utf8":
        write_corpus(data)
        (data / "valid.txt").write_bytes(b"the cake \xff was\n")
        needles = ("valid.txt", "not UTF-8", "offset 9")
    elif case == "too_small":
        write_corpus(data, (1, 1, 1))
        needles = ("fewer than one batch",)
    elif case == "unknown_cell":
        args, needles = ["--cell=transformer"], ("--cell",)
    elif case == "bad_dropout":
        args, needles = ["--dropout=1.0"], ("--dropout",)
    else:
        args, needles = ["--tie_embeddings", "--embedding_size=8"], ("--tie_embeddings",)
    model_dir = tmp_path / "run"
    proc = run("train", f"--model_dir={model_dir}", f"--data_dir={data}", *TINY, *args)
    assert_one_line_error(proc, *needles)
    assert not model_dir.exists()


def test_eval_of_a_missing_model_dir(tmp_path):
    assert_one_line_error(run("eval", f"--model_dir={tmp_path / 'nothing'}"), "not an rnn_lm model directory")


def test_library_code_reads_no_flags():
    """Flags are defined and read in rnn_lm/bin only."""
    package = os.path.join(os.path.dirname(__file__), os.pardir, "rnn_lm")
    for folder, _, files in os.walk(package):
        if os.path.basename(folder) == "bin":
            continue
        for name in files:
            if name.endswith(".py"):
                with open(os.path.join(folder, name), encoding="utf-8") as f:
                    source = f.read()
                assert "absl import flags" not in source and "absl.flags" not in source, name


def test_preset_with_overrides(tmp_path):
    """A preset sets the recipe; flags on the command line win over it."""
    data = write_corpus(tmp_path / "data", (30, 3, 3))
    model_dir = tmp_path / "run"
    proc = run("train", f"--model_dir={model_dir}", f"--data_dir={data}", "--preset=ptb_small",
               "--hidden_size=8", "--embedding_size=8", "--batch_size=4", "--max_steps=3", "--sample_tokens=3")
    assert proc.returncode == 0, proc.stderr[-2000:]
    config = json.loads((model_dir / "config.json").read_text())
    assert config["model"]["hidden_size"] == 8 and config["train"]["batch_size"] == 4  # overridden
    assert config["train"]["learning_rate"] == 20 and config["train"]["lr_decay"] == 0.5  # from the preset
    assert config["train"]["epochs"] == 13 and config["train"]["max_grad_norm"] == 0.25


def test_unknown_preset(tmp_path):
    assert_one_line_error(run("train", f"--model_dir={tmp_path}", "--preset=ptb_huge"), "ptb_huge", "ptb_small")


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


def test_export_binary_writes_a_loadable_saved_model(trained, tmp_path):
    model_dir, _, _ = trained
    out = tmp_path / "serving" / "1"
    proc = run("export", f"--model_dir={model_dir}", f"--output_dir={out}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    sentence = tf.constant(["the cake which"])
    new = tf.saved_model.load(str(out)).signatures["score"](sentences=sentence)["log_prob"]
    old = tf.saved_model.load(os.path.join(model_dir, "saved_model")).signatures["score"](sentences=sentence)
    np.testing.assert_allclose(new.numpy(), old["log_prob"].numpy(), rtol=1e-6)


def test_generate_from_stdin_as_json_with_top_k_and_beam(trained):
    model_dir, _, _ = trained
    proc = subprocess.run([sys.executable, "-m", "rnn_lm.bin.generate", f"--model_dir={model_dir}", "--json",
                           "--top_k=3", "--top_p=0.9", "--max_tokens=6"], input="the cake\nwhich\n",
                          capture_output=True, text=True, env=ENV, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["prompt"] for r in rows] == ["the cake", "which"]
    beams = run("generate", f"--model_dir={model_dir}", "--prompt=the cake", "--beam_width=3",
                "--num_samples=3", "--json", "--max_tokens=6")
    assert beams.returncode == 0, beams.stderr[-2000:]
    scores = [json.loads(line)["score"] for line in beams.stdout.splitlines()]
    assert len(scores) == 3 and scores == sorted(scores, reverse=True)


def test_generate_interactive_and_from_the_saved_model(trained):
    model_dir, _, _ = trained
    greedy = ["--temperature=0", "--max_tokens=6"]
    batch = run("generate", f"--model_dir={model_dir}", "--prompt=the cake", *greedy)
    served = run("generate", f"--saved_model={model_dir}/saved_model", "--prompt=the cake", *greedy)
    streamed = subprocess.run([sys.executable, "-m", "rnn_lm.bin.generate", f"--model_dir={model_dir}",
                               "--interactive", *greedy], input="the cake\n", capture_output=True, text=True,
                              env=ENV, timeout=300)
    for proc in (batch, served, streamed):
        assert proc.returncode == 0, proc.stderr[-2000:]
    # Three paths (one graph call, the SavedModel, token by token) give the same greedy text.
    assert batch.stdout == served.stdout == streamed.stdout
    assert batch.stdout.startswith("the cake")


def test_saved_model_cli_run_scores_and_generates(trained):
    model_dir, _, _ = trained
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    if not os.path.exists(cli):
        pytest.skip("saved_model_cli is not installed beside this interpreter")
    common = [cli, "run", "--dir", os.path.join(model_dir, "saved_model"), "--tag_set", "serve"]
    score = subprocess.run(common + ["--signature_def", "score", "--input_exprs", 'sentences=["the cake which"]'],
                           capture_output=True, text=True, env=ENV, timeout=300)
    assert score.returncode == 0, score.stderr[-2000:]
    assert "log_prob" in score.stdout and "perplexity" in score.stdout
    gen = subprocess.run(common + ["--signature_def", "generate", "--input_exprs",
                                   'prompts=["the cake"];max_tokens=5;temperature=0.0;top_k=0;top_p=1.0;seed=0'],
                         capture_output=True, text=True, env=ENV, timeout=300)
    assert gen.returncode == 0, gen.stderr[-2000:]
    assert "continuations" in gen.stdout


def test_eval_through_the_saved_model_equals_the_checkpoint(trained):
    model_dir, data, _ = trained
    text = os.path.join(data, "test.txt")
    from_checkpoint = run("eval", f"--model_dir={model_dir}", f"--text_file={text}")
    from_saved_model = run("eval", f"--saved_model={model_dir}/saved_model", f"--text_file={text}")
    for proc in (from_checkpoint, from_saved_model):
        assert proc.returncode == 0, proc.stderr[-2000:]
    ppl = [float(p.stdout.split("perplexity ")[1].split(",")[0]) for p in (from_checkpoint, from_saved_model)]
    assert ppl[0] == pytest.approx(ppl[1], rel=1e-4)


def test_sigterm_checkpoints_and_the_run_resumes(tmp_path):
    data = write_corpus(tmp_path / "data", (40, 3, 3))
    model_dir = tmp_path / "run"
    args = [sys.executable, "-m", "rnn_lm.bin.train", f"--model_dir={model_dir}", f"--data_dir={data}",
            "--epochs=100000", *TINY]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    deadline = time.time() + 240
    while not (model_dir / "checkpoints" / "checkpoint").exists() and time.time() < deadline:
        time.sleep(0.5)  # the first checkpoint comes at the end of the first (tiny) epoch
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 128 + signal.SIGTERM == 143, err[-2000:]  # not 0: `train && deploy` must not deploy
    assert "SIGTERM: stopped at step" in out and "run the same command to resume" in out
    stopped = int(out.split("stopped at step ")[1].split()[0])
    latest = tf.train.latest_checkpoint(str(model_dir / "checkpoints"))
    assert latest.endswith(f"ckpt-{stopped}")  # the step it stopped at was saved
    resumed = run("train", f"--model_dir={model_dir}", f"--data_dir={data}", "--epochs=100000",
                  f"--max_steps={stopped + 2}", *TINY)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resumed from {latest}" in resumed.stderr


def test_a_prompt_of_only_unknown_words_is_refused(trained):
    model_dir, _, _ = trained
    assert_one_line_error(run("generate", f"--model_dir={model_dir}", "--prompt=zebra quokka"),
                          "only words outside the vocabulary")


def test_agreement_binary(tmp_path):
    """On a (barely trained) built-in-corpus model: one accuracy per distance, in [0, 1]."""
    model_dir = tmp_path / "run"
    train = run("train", f"--model_dir={model_dir}", "--grammar_train_tokens=3000", "--max_steps=3", *TINY)
    assert train.returncode == 0, train.stderr[-2000:]
    proc = run("agreement", f"--model_dir={model_dir}", "--distances=0,4", "--pairs=10", "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["distance"] for r in rows] == [0, 4] and all(0 <= r["accuracy"] <= 1 for r in rows)
    assert_one_line_error(run("agreement", f"--model_dir={model_dir}", "--distances=1"), "distance 1")


def test_kill_test_binary_resumes_killed_runs_exactly(tmp_path):
    """Two runs killed at random moments (SIGKILL) and resumed: every logged loss equals the reference's."""
    data = write_corpus(tmp_path / "data", (40, 3, 3))
    out = tmp_path / "trials.json"
    proc = run("rnn_lm_tools.kill_test", f"--data_dir={data}", f"--work_dir={tmp_path / 'work'}", "--trials=2",
               "--steps=8", "--train_flags=" + ",".join(TINY), f"--json_out={out}")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    trials = json.loads(out.read_text())["trials"]
    assert len(trials) == 2 and all(t["ok"] and t["losses_equal"] for t in trials)
    assert "2 of 2 killed runs resumed" in proc.stdout


@pytest.mark.parametrize("script, flag", [
    ("rnn-lm-train", "--num_steps"), ("rnn-lm-eval", "--per_sentence"), ("rnn-lm-generate", "--beam_width"),
    ("rnn-lm-export", "--output_dir"), ("rnn-lm-grammar", "--max_depth"), ("rnn-lm-agreement", "--distances"),
    ("rnn-lm-diagnose", "--experiment"), ("rnn-lm-benchmark", "--configs"), ("rnn-lm-kill-test", "--trials"),
    ("rnn-lm-large-corpus", "--size_gb")])
def test_help_of_every_console_script_shows_its_docstring_and_flags(script, flag):
    """A console script's __main__ is a stub: --help must still show the binary's docstring and flags."""
    path = os.path.join(os.path.dirname(sys.executable), script)
    if not os.path.exists(path):
        pytest.skip(f"{script} is not installed beside this interpreter")
    proc = subprocess.run([path, "--help"], capture_output=True, text=True, env=ENV, timeout=300)
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]  # (absl exits with 1 after --help)
    assert proc.stdout.startswith(f"{script}: "), proc.stdout[:300]
    name = flag[2:]
    assert f"  --{name}:" in proc.stdout or f"  --[no]{name}:" in proc.stdout, proc.stdout[-2000:]
    assert "  --flagfile" not in proc.stdout  # absl's own flags stay behind --helpfull

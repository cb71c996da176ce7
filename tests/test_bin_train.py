"""rnn-lm-train end to end, each run a fresh process: a flagfile run writes a self-describing model
directory (config.json, vocab.txt, checkpoints, TensorBoard logs with the documented tags (loss and perplexity first) and the run's hparams, the
SavedModel); a preset sets the recipe and flags on the command line win; bad input (missing or empty
folders, bad bytes, a corpus below one batch, refused settings, non-finite numbers, a vocabulary of only
<unk> and <eos>) is one line naming the problem, a non-zero exit and no model directory.  Stopping and
resuming through the binary is in test_bin_model_dir.py."""

import json
import math
import os

import pytest
import tensorflow as tf

from tests.helpers import TINY, assert_one_line_error, run, write_corpus


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


@pytest.mark.parametrize("flag", ["--max_grad_norm=nan", "--learning_rate=nan", "--sample_temperature=inf"])
def test_non_finite_numbers_are_refused(tmp_path, flag):
    proc = run("train", f"--model_dir={tmp_path / 'run'}", "--grammar_train_tokens=3000", *TINY, flag)
    assert_one_line_error(proc, f"--{flag[2:].split('=')[0]} must be")
    assert not (tmp_path / "run").exists()


def test_a_vocabulary_of_only_unk_and_eos_is_refused(tmp_path):
    """The library's side (a valid split mostly <unk>) is in test_model_dir.py."""
    proc = run("train", f"--model_dir={tmp_path / 'run'}", "--grammar_train_tokens=3000", "--min_count=1000000",
               *TINY)
    assert proc.returncode == 1
    assert_one_line_error(proc, "the vocabulary holds only <unk> and <eos> (--min_count=1000000")
    assert not (tmp_path / "run").exists()

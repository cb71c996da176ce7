"""The shipped presets (rnn_lm/presets): each parses through rnn-lm-train's own flags into the documented values
(Zaremba et al.'s settings translated to the time-averaged cost), and each, its layers narrowed to
16 units (everything else as the preset says), trains two steps on a slice of its corpus."""

import json
import math
import subprocess
import sys
import textwrap

import pytest

from rnn_lm import presets
from tests.helpers import ENV, SHARED

# Zaremba, Sutskever & Vinyals (2014), section 4.1 and the TensorFlow tutorial: the cost is
# summed over num_steps there, so lr_here = lr * num_steps and clip_here = clip / num_steps.
ZAREMBA = {
    "ptb_small": dict(hidden_size=200, num_steps=20, lr=1.0, clip=5.0, dropout=0.0, epochs=13, decay=0.5,
                      decay_after=4, init_scale=0.1),
    "ptb_medium": dict(hidden_size=650, num_steps=35, lr=1.0, clip=5.0, dropout=0.5, epochs=39, decay=0.8,
                       decay_after=6, init_scale=0.05),
    "ptb_large": dict(hidden_size=1500, num_steps=35, lr=1.0, clip=10.0, dropout=0.65, epochs=55,
                      decay=1 / 1.15, decay_after=14, init_scale=0.04),
}

# Parses every preset with rnn-lm-train's flags (in one process: the binaries' flags share
# absl's global registry) and trains each, narrowed, for two steps on the slice.
SCRIPT = textwrap.dedent("""
    import dataclasses, json, sys
    from absl import flags
    from rnn_lm import presets
    from rnn_lm.bin import train as train_bin
    from rnn_lm import training
    word, char, out = sys.argv[1:4]
    results = {}
    for name in presets.available():
        flags.FLAGS.unparse_flags()
        data = ["--corpus=", "--data_dir=" + (char if name == "shakespeare_char" else word)]
        argv = train_bin.expand_preset(["train", "--preset=" + name, "--model_dir=" + out + "/" + name, *data])
        flags.FLAGS(argv)
        config = train_bin.config_from_flags()
        narrow = dataclasses.replace(config.model, hidden_size=16, embedding_size=16 if config.model.embedding_size else 0)
        if narrow.softmax == "adaptive":  # the slice's vocabulary is below the presets' cutoffs
            narrow = dataclasses.replace(narrow, adaptive_cutoffs="50,200")
        data = config.data
        if data.level == "subword":  # and too small for their pieces
            data = dataclasses.replace(data, subword_vocab_size=300)
        smoke = config.replace(model=narrow, data=data,
                               train=dataclasses.replace(config.train, max_steps=2, sample_tokens=5))
        result = training.train(smoke, out + "/" + name, export=False)
        with open(out + "/" + name + "/config.json") as f:
            vocab_size = json.load(f)["model"]["vocab_size"]  # as trained
        results[name] = dict(config=config.to_dict(), vocab_size=vocab_size, losses=result.step_losses,
                             test_perplexity=result.test_perplexity)
    print(json.dumps(results))
""")


@pytest.fixture(scope="module")
def preset_runs(tmp_path_factory):
    if not SHARED.is_dir():
        pytest.skip(f"shared corpora not found at {SHARED}")
    root = tmp_path_factory.mktemp("presets")
    word, char = root / "ptb", root / "chars"
    word.mkdir()
    char.mkdir()
    for split, n in (("train", 300), ("valid", 10), ("test", 10)):
        with open(SHARED / "ptb" / f"{split}.txt", encoding="utf-8") as f:
            (word / f"{split}.txt").write_text("".join(f.readline() for _ in range(n)), encoding="utf-8")
    text = (SHARED / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")
    for split, (a, b) in (("train", (0, 8000)), ("valid", (8000, 8600)), ("test", (8600, 9200))):
        (char / f"{split}.txt").write_text(text[a:b], encoding="utf-8")
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(word), str(char), str(root / "runs")],
                          capture_output=True, text=True, env=ENV, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_every_preset_trains_two_steps(preset_runs):
    assert sorted(preset_runs) == presets.available()
    for name, run in preset_runs.items():
        assert sorted(run["losses"]) == ["1", "2"], name
        vocab = run["vocab_size"]
        # Two steps from a uniform-ish start: the loss is near log |V|, finite, and so is perplexity.
        for loss in run["losses"].values():
            assert 0.5 * math.log(vocab) < loss < 2 * math.log(vocab), (name, loss)
        # (After two steps of norm lr x clip = 10, the large preset's perplexity is far above |V|: finite is
        # the test.)
        assert 1 < run["test_perplexity"] < math.inf, name


@pytest.mark.parametrize("name", sorted(ZAREMBA))
def test_zaremba_presets_translate_the_published_settings(preset_runs, name):
    z, c = ZAREMBA[name], preset_runs[name]["config"]
    m, t = c["model"], c["train"]
    assert (m["cell"], m["num_layers"], m["hidden_size"], m["embedding_size"]) == ("lstm", 2, z["hidden_size"],
                                                                                  z["hidden_size"])
    assert m["dropout"] == z["dropout"] and m["init_scale"] == z["init_scale"] and not m["tie_embeddings"]
    assert (t["batch_size"], t["num_steps"], t["epochs"], t["optimizer"]) == (20, z["num_steps"], z["epochs"], "sgd")
    assert t["learning_rate"] == pytest.approx(z["lr"] * z["num_steps"])
    assert t["max_grad_norm"] == pytest.approx(z["clip"] / z["num_steps"], rel=1e-5)
    assert t["lr_decay"] == pytest.approx(z["decay"], rel=1e-5)
    assert t["decay_start_epoch"] == z["decay_after"] + 1 and t["lr_schedule"] == "epoch"


@pytest.mark.parametrize("name, cell", [("ptb_gru", "gru"), ("ptb_elman", "elman")])
def test_other_cells_have_the_small_budget(preset_runs, name, cell):
    small, other = preset_runs["ptb_small"]["config"], preset_runs[name]["config"]
    assert other["model"]["cell"] == cell
    for part, keys in (("model", ("num_layers", "hidden_size", "embedding_size", "dropout")),
                       ("train", ("batch_size", "num_steps", "epochs", "max_grad_norm"))):
        for key in keys:
            assert other[part][key] == small[part][key], (name, key)


def test_ptb_small_plus_is_the_small_model_regularised(preset_runs):
    small, plus = preset_runs["ptb_small"]["config"], preset_runs["ptb_small_plus"]["config"]
    for key in ("cell", "num_layers", "hidden_size", "embedding_size"):
        assert plus["model"][key] == small["model"][key], key
    m, t = plus["model"], plus["train"]
    assert m["tie_embeddings"] and m["locked_dropout"] and m["dropout"] > 0 and m["embedding_dropout"] > 0
    assert t["weight_decay"] > 0 and t["lr_schedule"] == "plateau" and 0 < t["average_start_epoch"] <= t["epochs"]


def test_shakespeare_char_is_character_level_one_hot(preset_runs):
    c = preset_runs["shakespeare_char"]["config"]
    assert c["data"]["level"] == "char" and c["model"]["embedding_size"] == 0 and c["model"]["cell"] == "lstm"


@pytest.mark.parametrize("name, level, softmax", [("wikitext2_adaptive", "word", "adaptive"),
                                                   ("wikitext2_subword", "subword", "full"),
                                                   ("wikitext103_adaptive", "word", "adaptive")])
def test_wikitext_presets_name_their_level_and_softmax(preset_runs, name, level, softmax):
    c = preset_runs[name]["config"]
    assert (c["data"]["level"], c["model"]["softmax"]) == (level, softmax)
    assert c["data"]["stream_train"] == (name == "wikitext103_adaptive")
    if softmax == "adaptive":
        # WikiText-103: the defaults at its vocabulary, written out; WikiText-2: a head of 4,000 words,
        # measured closer to the full softmax than the defaults' 2,000 (docs/large_vocabularies.md).
        from rnn_lm.config import ModelConfig
        vocab = 33_278 if name.startswith("wikitext2") else 267_735
        defaults = ",".join(map(str, ModelConfig(vocab_size=vocab, softmax="adaptive").cutoffs))
        expected = "4000,20000" if name == "wikitext2_adaptive" else defaults
        assert c["model"]["adaptive_cutoffs"] == expected

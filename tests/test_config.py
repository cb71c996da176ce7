"""The run's settings (rnn_lm.config): every refused value is an RnnLmError of one line that names
its config field (model.hidden_size, data.stream_train; the binaries translate them to flags), derived
settings follow their documented defaults, and a config.json of the wrong shape or types is refused
field by field.  Reference: the rules in the fields' help texts."""

import dataclasses
import json
import re

import pytest

from rnn_lm.config import Config, DataConfig, ModelConfig, TrainConfig
from rnn_lm.errors import RnnLmError
from tests.helpers import tiny_config


@pytest.mark.parametrize("bad, needle", [
    (dict(hidden_size=-1), "model.hidden_size"), (dict(hidden_size=0), "model.hidden_size"),
    (dict(embedding_size=-1), "model.embedding_size"), (dict(num_layers=0), "model.num_layers"),
    (dict(init_scale=-0.1), "model.init_scale"), (dict(dropout=1.0), "model.dropout"),
    (dict(dropout=-0.1), "model.dropout"),
    (dict(tie_embeddings=True, embedding_size=3, hidden_size=4), "model.tie_embeddings"),
    (dict(cell="rnn"), "model.cell"), (dict(activation="softmax"), "model.activation"),
    (dict(embedding_dropout=1.0), "model.embedding_dropout"), (dict(input_dropout=1.0), "model.input_dropout"),
    (dict(embedding_dropout=0.1, embedding_size=0), "needs an embedding"),
], ids=lambda x: ",".join(f"{k}={v}" for k, v in x.items()) if isinstance(x, dict) else None)
def test_model_config_validation(bad, needle):
    config = ModelConfig(**{**dict(vocab_size=7, hidden_size=4, embedding_size=4), **bad})
    with pytest.raises(RnnLmError, match=re.escape(needle)) as e:
        config.validate()
    assert "\n" not in str(e.value)  # the binaries print it as one line


def test_input_dropout_defaults_to_dropout():
    assert ModelConfig(dropout=0.3).input_dropout_rate == 0.3
    assert ModelConfig(dropout=0.3, input_dropout=0.5).input_dropout_rate == 0.5
    assert ModelConfig(dropout=0.3, input_dropout=0.0).input_dropout_rate == 0.0


def test_stream_train_needs_a_data_dir():
    for data in (DataConfig(stream_train=True), DataConfig(corpus="grammar", stream_train=True),
                 DataConfig(corpus="ptb", data_dir="x", stream_train=True)):
        with pytest.raises(RnnLmError, match="data.stream_train"):
            data.validate()


def test_config_json_of_the_wrong_type_is_one_line(tmp_path):
    """A stored config (as rnn-lm-train writes it, the vocabulary's size filled in) round-trips; each
    wrong type, value or unknown field in it is refused naming the field."""
    cfg = tiny_config(str(tmp_path / "data"))
    cfg = cfg.replace(model=dataclasses.replace(cfg.model, vocab_size=13))
    run = tmp_path / "run"
    run.mkdir()
    cfg.save(str(run))
    assert Config.load(str(run)) == cfg
    path = run / "config.json"
    good = json.loads(path.read_text())
    for section, field, value, needle in [("model", "hidden_size", "24", "model.hidden_size must be int"),
                                          ("train", "max_grad_norm", None, "train.max_grad_norm must be float"),
                                          ("model", "num_layers", -1, "model.num_layers must be positive"),
                                          ("model", "colour", 1, "model has no field 'colour'")]:
        bad = json.loads(json.dumps(good))
        bad[section][field] = value
        path.write_text(json.dumps(bad))
        with pytest.raises(RnnLmError, match=needle) as e:
            Config.load(str(run))
        assert "\n" not in str(e.value)
    path.write_text("[1, 2]")
    with pytest.raises(RnnLmError, match=r"config is not an rnn_lm config \(a JSON list, not an object\)"):
        Config.load(str(run))


@pytest.mark.parametrize("native", [True, False])
def test_mixed_precision_auto_is_decided_when_the_run_starts(tmp_path, monkeypatch, native):
    """auto: bfloat16 on a CPU with native bfloat16 (as rnn_lm.cpu reads /proc/cpuinfo), float32 elsewhere;
    config.json records the decision, not 'auto'."""
    from rnn_lm import cpu, model_dir as model_dir_lib
    from tests.helpers import tiny_config, write_corpus
    monkeypatch.setattr(cpu, "native_bfloat16", lambda path="/proc/cpuinfo": native)
    want = "bfloat16" if native else "float32"
    assert TrainConfig(compute_dtype="auto").resolved().compute_dtype == want
    assert TrainConfig(compute_dtype="float16").resolved().compute_dtype == "float16"
    cfg = tiny_config(write_corpus(tmp_path / "data", (20, 3, 3)), compute_dtype="auto")
    config, _ = model_dir_lib.prepare(cfg, str(tmp_path / "run"))
    assert config.train.compute_dtype == want


def test_native_bfloat16_reads_the_cpu_flags(tmp_path):
    from rnn_lm import cpu
    for flags, native in (("fpu avx2 avx512f", False), ("fpu avx512f avx512_bf16", True), ("amx_bf16 sse", True)):
        (tmp_path / "cpuinfo").write_text(f"model name\t: Chip\nflags\t\t: {flags}\n")
        assert cpu.native_bfloat16(tmp_path / "cpuinfo") == native
    assert not cpu.native_bfloat16(tmp_path / "absent")

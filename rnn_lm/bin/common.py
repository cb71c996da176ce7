"""What every binary shares: flags made from the config, --help, and the one-line error for bad input."""

import contextlib
import dataclasses
import logging as logging_lib
import os
import signal
import sys
import tempfile

from absl import app
from absl import flags
from absl import logging as absl_logging

from rnn_lm import config as config_lib
from rnn_lm.errors import EXIT_ERROR, RnnLmError, exit_status_for_signal, reason


def run_main(main):
    """``app.run(main)``, turning an RnnLmError into ``<binary>: error: ...`` and its exit status
    (1 for bad input, 3 for a diverged run: ``rnn_lm.errors``)."""

    def guarded(argv):
        if len(argv) > 1:
            raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
        _quiet_unless_verbose()
        try:
            return main(argv)
        except RnnLmError as e:
            fail(e.naming_flags(config_lib.flag_name), e.exit_status)
        except OSError as e:  # a file the code did not expect to fail (a full or read-only disk)
            fail(f"{e.filename}: {reason(e)}" if e.filename else reason(e))
        except KeyboardInterrupt:
            print(f"{_name()}: interrupted", file=sys.stderr)
            sys.exit(exit_status_for_signal(signal.SIGINT))

    _help_from(sys.modules[main.__module__])
    app.run(guarded)


def _quiet():
    return not flags.FLAGS["verbosity"].present


def _quiet_unless_verbose():
    """TensorFlow's own chatter hidden unless --verbosity is given: the INFO and WARNING lines of its
    Python modules (saver timings, SavedModel notices; see also ``load_tensorflow``).  rnn_lm's own
    lines and every error stay."""
    if _quiet():
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # read when TensorFlow loads, after this
        absl_logging.get_absl_handler().addFilter(_only_ours)


def load_tensorflow():
    """Imports TensorFlow and finds its devices, with what its C++ side writes meanwhile (CUDA probing
    on a machine without a GPU, CPU features) held back (``native_output_held``).  The binaries call it
    where they need TensorFlow, after checking their input."""
    with native_output_held():
        import tensorflow as tf
        tf.config.list_physical_devices()


@contextlib.contextmanager
def native_output_held():
    """Unless --verbosity is given, what native code writes to the process's stderr (file descriptor
    2) inside the block is held back, and shown only if the block fails: the C++ start-up lines of
    TensorFlow, LiteRT's "Created TensorFlow Lite XNNPACK delegate" notice."""
    if not _quiet():
        yield
        return
    saved = os.dup(2)
    sys.stderr.flush()
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            held.seek(0)
            sys.stderr.write(held.read().decode("utf-8", "replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _only_ours(record):
    """Log records of rnn_lm (and its harnesses), and errors of anyone."""
    return record.levelno >= logging_lib.ERROR or any(
        f"{os.sep}{package}{os.sep}" in record.pathname for package in ("rnn_lm", "rnn_lm_tools"))


def define_config_flags(module_name, skip=()):
    """Defines a flag for every field of the config dataclasses (``rnn_lm.config.SECTIONS``) but those
    in ``skip`` ({(section, field)}): its name (``config.flag_name``), default, help and choices are
    the field's, so the flags cannot drift from the config.  They are ``module_name``'s flags (its
    --help lists them)."""
    module_name = _help_module(module_name)
    define = {bool: flags.DEFINE_boolean, int: flags.DEFINE_integer, float: flags.DEFINE_float,
              str: flags.DEFINE_string}
    for section, cls in config_lib.SECTIONS.items():
        for field in dataclasses.fields(cls):
            if (section, field.name) in skip:
                continue
            name, help_text = config_lib.flag_name(section, field.name), field.metadata["help"]
            if field.metadata.get("choices"):
                flags.DEFINE_enum(name, field.default, field.metadata["choices"], help_text,
                                  module_name=module_name)
            else:
                define[type(field.default)](name, field.default, help_text, module_name=module_name)


def _help_module(module_name):
    """The module whose flags --help lists: run as ``python -m rnn_lm.bin.X`` the binary is
    ``__main__``, and absl lists the flags of the file it ran (``sys.argv[0]``), as it names the flags
    a file defines without naming its module."""
    return sys.argv[0] if module_name == "__main__" else module_name


def define_checkpoint_flag(module_name):
    """--checkpoint, for the binaries that read a trained model."""
    from rnn_lm.model_dir import CHECKPOINT_NAMES
    module_name = _help_module(module_name)
    flags.DEFINE_string("checkpoint", "latest", f"Which weights of --model_dir: {CHECKPOINT_NAMES} (latest: the "
                        "newest checkpoint; best: the best validation perplexity, checkpoints/best; ckpt-N: step N).",
                        module_name=module_name)


def _help_from(module):
    """absl's --help prints the docstring of ``__main__`` and the flags defined in the file of
    ``sys.argv[0]``.  A console script's ``__main__`` is a stub that imports the binary's module, so
    both are taken from that module (run as ``python -m``, the module is ``__main__`` already)."""
    if module.__name__ == "__main__":
        return
    sys.modules["__main__"].__doc__ = module.__doc__
    for flag in flags.FLAGS.get_key_flags_for_module(module.__name__):
        flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)


def fail(message, status=EXIT_ERROR):
    """Prints ``<binary>: error: message`` and exits with ``status`` (1: bad input)."""
    print(f"{_name()}: error: {message}", file=sys.stderr)
    sys.exit(status)


def _name():
    return os.path.basename(sys.argv[0]).replace(".py", "") or "rnn-lm"

"""Named training recipes, shipped as absl flagfiles (``--preset=NAME``).

Each ``NAME.cfg`` holds flags of ``rnn-lm-train``; flags given on the command
line override the preset's.
"""

import os

from rnn_lm.errors import RnnLmError

PRESETS_DIR = os.path.dirname(os.path.abspath(__file__))


def available():
    return sorted(name[:-4] for name in os.listdir(PRESETS_DIR) if name.endswith(".cfg"))


def preset_path(name):
    path = os.path.join(PRESETS_DIR, name + ".cfg")
    if not os.path.isfile(path):
        raise RnnLmError(f"unknown --preset {name!r}; available: {', '.join(available())}")
    return path

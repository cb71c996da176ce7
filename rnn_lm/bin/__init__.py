"""The absl binaries. Flags are defined here and only here."""

import os

# TensorFlow's C++ start-up chatter would bury the binaries' own messages.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

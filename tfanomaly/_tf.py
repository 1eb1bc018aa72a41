"""Import TensorFlow without its start-up chatter on stderr (oneDNN, CUDA probing), which TF 2.21
writes through absl before any log level applies. Used by the CLI; library users keep TF's output.
"""

from __future__ import annotations

import os
import sys


def import_tensorflow_quietly():
    """Import TF and probe its devices with stderr (fd 2) sent to /dev/null, then restore it."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import tensorflow as tf

        tf.config.list_physical_devices()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
    return tf

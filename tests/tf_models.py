"""Small real TensorFlow/Keras models with seeded weights, for the TF front end's tests.

Run as `python tests/tf_models.py OUT_DIR KIND` (TensorFlow is imported only in that process, so the test
process itself stays free of it). KIND: functional | sequential | saved_model | h5_legacy | no_signature.
Prints the written path(s), one a line.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

KINDS = ("functional", "sequential", "saved_model", "h5_legacy", "no_signature")


def functional(out: Path) -> Path:
    """Keras 3 functional CNN: image [None, 32, 32, 3] NHWC -> 10 logits."""
    import keras

    keras.utils.set_random_seed(0)
    x = keras.Input((32, 32, 3), name="image")
    y = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv")(x)
    y = keras.layers.MaxPooling2D(2, name="pool")(y)
    y = keras.layers.Flatten(name="flatten")(y)
    y = keras.layers.Dense(10, name="logits")(y)
    path = out / "functional.keras"
    keras.Model(x, y, name="small_cnn").save(path)
    return path


def sequential(out: Path) -> Path:
    """Keras 3 Sequential MLP 20 -> 16 -> 4; its Input has no name of ours (Keras picks one)."""
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((20,)), keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(4)])
    path = out / "sequential.keras"
    model.save(path)
    return path


def saved_model(out: Path) -> Path:
    """A tf.Module with a serving signature: x [None, 8] -> {"score": [None, 2], "embedding": [None, 4]}.

    The dict's keys are not in sorted order, so output ordering bugs show."""
    import tensorflow as tf

    tf.random.set_seed(0)

    class Head(tf.Module):
        def __init__(self):
            super().__init__()
            self.w1 = tf.Variable(tf.random.normal([8, 4], seed=1), name="w1")
            self.w2 = tf.Variable(tf.random.normal([4, 2], seed=2), name="w2")

        @tf.function(input_signature=[tf.TensorSpec([None, 8], tf.float32, name="x")])
        def serve(self, x):
            embedding = tf.nn.tanh(x @ self.w1)
            return {"score": tf.nn.softmax(embedding @ self.w2), "embedding": embedding}

    module = Head()
    path = out / "saved_model"
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return path


def h5_legacy(out: Path) -> Path:
    """A Keras 2 (tf-keras) functional model saved as .h5: features [None, 6] -> softmax over 3.

    Built in a child: TF_USE_LEGACY_KERAS must be set before tensorflow is first imported."""
    path = out / "h5_legacy.h5"
    code = (
        "import sys, tf_keras\n"
        "tf_keras.utils.set_random_seed(0)\n"
        "x = tf_keras.Input((6,), name='features')\n"
        "y = tf_keras.layers.Dense(5, activation='relu', name='hidden')(x)\n"
        "y = tf_keras.layers.Dense(3, activation='softmax', name='probs')(y)\n"
        "tf_keras.Model(x, y, name='legacy_mlp').save(sys.argv[1])\n"
    )
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1")
    # the child's chatter goes to stderr: this script's stdout carries only the written paths
    subprocess.run([sys.executable, "-c", code, str(path)], env=env, check=True, stdout=sys.stderr)
    return path


def no_signature(out: Path) -> Path:
    """A SavedModel from a tf.Module that has a traced tf.function but no signatures at all."""
    import tensorflow as tf

    class Bare(tf.Module):
        def __init__(self):
            super().__init__()
            self.w = tf.Variable(tf.ones([8, 2]), name="w")

        @tf.function(input_signature=[tf.TensorSpec([None, 8], tf.float32, name="x")])
        def apply(self, x):
            return x @ self.w

    module = Bare()
    path = out / "no_signature"
    tf.saved_model.save(module, str(path), signatures={})  # {}: no signature; None would pick `apply`
    return path


def build(out: Path, kind: str) -> Path:
    if kind not in KINDS:
        raise SystemExit(f"unknown kind {kind!r}; one of {', '.join(KINDS)}")
    out.mkdir(parents=True, exist_ok=True)
    return globals()[kind](out)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(f"usage: python {Path(__file__).name} OUT_DIR KIND  (KIND: {' | '.join(KINDS)})")
    print(build(Path(sys.argv[1]), sys.argv[2]))

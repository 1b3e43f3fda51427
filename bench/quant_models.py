"""A labelled image set and a MobileNet-class frozen graph, made here, for int8 calibration: the tests' and the
quantization figures' (bench/quantization_figures.py) shared fixtures. Seeded: the same bytes every run."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

CLASSES = ("cat", "dog", "owl")


def class_image(class_index: int, index: int, size: tuple[int, int] = (96, 80)) -> bytes:
    """An RGB PNG whose pattern depends on its class: stripes of a class-given period and tint, shifted per image."""
    from PIL import Image

    rng = np.random.default_rng(100 * class_index + index)
    y, x = np.mgrid[0 : size[1], 0 : size[0]]
    pattern = 128 + 100 * np.sin(x / (4 + 3 * class_index) + index) * np.cos(y / (5 + index))
    tint = np.roll([1.0, 0.6, 0.3], class_index)
    pixels = pattern[..., None] * tint + rng.normal(0, 12, (*pattern.shape, 3))
    buffer = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def write_labelled_zip(path: Path, per_class: int, classes: Sequence[str] = CLASSES) -> Path:
    """The user's images: PNG in one folder per class, under the folder the zip was made from."""
    with zipfile.ZipFile(path, "w") as archive:
        for c, label in enumerate(classes):
            for i in range(per_class):
                archive.writestr(f"photos/{label}/{i}.png", class_image(c, i))
    return path


def write_small_mobilenet(path: Path, classes: int = 5, per_class: int = 4, width: int = 1) -> Path:
    """A MobileNet-class frozen graph: MobileNet v1's layers (a strided conv, depthwise-separable blocks with
    BatchNorm and ReLU6, global pooling, softmax), 4 blocks on 32x32 RGB, `width` times 8 to 64 channels, seeded
    random weights, frozen as
    bench/reply_time.py freezes the 224x224 MobileNet. Not Keras's whole MobileNet: with random weights its
    27 layers make int8 round-off grow to 65 % of scale on these images, which says nothing of trained ones."""
    import keras
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    keras.utils.set_random_seed(0)
    layers = keras.layers
    image = keras.Input((32, 32, 3), name="image")
    x = layers.ReLU(6.0)(layers.BatchNormalization()(layers.Conv2D(8 * width, 3, 2, "same", use_bias=False)(image)))
    for filters, stride in ((16, 1), (32, 2), (32, 1), (64, 2)):
        x = layers.ReLU(6.0)(layers.BatchNormalization()(layers.DepthwiseConv2D(3, stride, "same", use_bias=False)(x)))
        x = layers.ReLU(6.0)(layers.BatchNormalization()(layers.Conv2D(filters * width, 1, use_bias=False)(x)))
    scores = layers.Dense(classes, activation="softmax")(layers.GlobalAveragePooling2D()(x))
    model = keras.Model(image, scores)
    _keep_activations_alive(model, per_class)
    function = tf.function(lambda image: model(image, training=False))
    concrete = function.get_concrete_function(tf.TensorSpec([1, 32, 32, 3], tf.float32, name="image"))
    path.write_bytes(convert_variables_to_constants_v2(concrete).graph.as_graph_def().SerializeToString())
    return path


def _keep_activations_alive(model: Any, per_class: int) -> None:
    """Each BatchNormalization's moving statistics set from its inputs on the images, as training would:
    at Keras's initial ones activations shrink layer by layer, and after MobileNet's 27 layers every image gets
    nearly the same scores, a classifier with nothing to agree on."""
    import keras
    from PIL import Image

    size = tuple(model.input.shape[1:3])
    images = np.stack(
        [
            np.asarray(Image.open(io.BytesIO(class_image(c, i))).resize(size), np.float32) / 255.0
            for c in range(len(CLASSES))
            for i in range(per_class)
        ]
    )
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            inputs = np.asarray(keras.Model(model.input, layer.input)(images))
            gamma, beta, _, _ = layer.get_weights()
            layer.set_weights([gamma, beta, inputs.mean(axis=(0, 1, 2)), inputs.var(axis=(0, 1, 2)) + 1e-3])

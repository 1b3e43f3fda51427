"""Helpers to run converted artifacts the way their users will."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def run_tflite(path: Path, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run a .tflite by its signature (keys) when it has one, else by tensor names."""
    import tensorflow as tf

    interpreter = tf.lite.Interpreter(model_path=str(path))
    signatures = interpreter.get_signature_list()
    if signatures:
        runner = interpreter.get_signature_runner(next(iter(signatures)))
        return {k: np.asarray(v) for k, v in runner(**feeds).items()}
    for detail in interpreter.get_input_details():
        interpreter.resize_tensor_input(detail["index"], feeds[detail["name"]].shape)
    interpreter.allocate_tensors()
    for detail in interpreter.get_input_details():
        interpreter.set_tensor(detail["index"], feeds[detail["name"]])
    interpreter.invoke()
    return {d["name"]: interpreter.get_tensor(d["index"]) for d in interpreter.get_output_details()}


def run_frozen_graph(path: Path, feeds: dict[str, np.ndarray], outputs: list[str]) -> dict[str, np.ndarray]:
    """The source graph's own outputs, computed by TensorFlow."""
    import tensorflow as tf

    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString(path.read_bytes())
    graph = tf.Graph()
    with graph.as_default():
        tf.graph_util.import_graph_def(graph_def, name="")
    with tf.compat.v1.Session(graph=graph) as session:
        values = session.run([f"{name}:0" for name in outputs], {f"{k}:0": v for k, v in feeds.items()})
    return dict(zip(outputs, values, strict=True))


def random_input(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random(shape, dtype=np.float32)

"""Multi-output models keep each output under its own key in every artifact, in whatever order the
outputs are chosen: PoseNet-like heads where two outputs have the same dtype and shape
(displacement_fwd, displacement_bwd), which tensorflowjs cannot tell apart by itself."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from converter import ConversionOptions, Target
from converter.conversion import convert_in_process
from converter.tfjs_runtime import run_tfjs_model
from tests.converter.conftest import random_input, run_frozen_graph, run_tflite

TARGETS = (Target.TFLITE, Target.TFJS, Target.FROZEN_GRAPH, Target.SAVED_MODEL)
TIGHT = {"rtol": 1e-4, "atol": 1e-5}
IMAGE_SHAPE = (1, 8, 8, 3)
# Channels per head; the two displacement heads are alike, as in PoseNet.
POSE_HEADS = {"heatmap": 2, "offsets": 4, "displacement_fwd": 3, "displacement_bwd": 3}
KERAS_HEADS = ("heatmap", "displacement_fwd", "displacement_bwd")


@pytest.fixture(scope="module")
def pose_saved_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tf.Module SavedModel whose serving signature returns four heads, each by a different op."""
    import tensorflow as tf

    class PoseHeads(tf.Module):
        def __init__(self) -> None:
            rng = np.random.default_rng(1)
            self.kernels = {
                key: tf.Variable(rng.standard_normal((3, channels)).astype("float32"))
                for key, channels in POSE_HEADS.items()
            }

        @tf.function(input_signature=[tf.TensorSpec(IMAGE_SHAPE, tf.float32, name="image")])
        def serve(self, image: Any) -> dict[str, Any]:
            def head(key: str) -> Any:
                return tf.einsum("bhwc,cd->bhwd", image, self.kernels[key])

            return {
                "heatmap": tf.sigmoid(head("heatmap")),
                "offsets": head("offsets") * 2.0,
                "displacement_fwd": tf.tanh(head("displacement_fwd")),
                "displacement_bwd": head("displacement_bwd") - 1.0,
            }

    module = PoseHeads()
    path = tmp_path_factory.mktemp("pose") / "pose_saved_model"
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return path


@pytest.fixture(scope="module")
def pose_keras(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A functional Keras model with three named outputs, two of them alike."""
    import keras

    keras.utils.set_random_seed(3)
    image = keras.Input(shape=IMAGE_SHAPE[1:], name="image")
    trunk = keras.layers.Conv2D(4, 3, padding="same", name="trunk")(image)
    heatmap = keras.layers.Conv2D(2, 1, activation="sigmoid", name="heatmap")(trunk)
    forward = keras.layers.Conv2D(3, 1, activation="tanh", name="displacement_fwd")(trunk)
    backward = keras.layers.Conv2D(3, 1, name="displacement_bwd")(trunk)
    path = tmp_path_factory.mktemp("pose_keras") / "pose.keras"
    keras.Model(image, [heatmap, forward, backward]).save(path)
    return path


def _saved_model_outputs(path: Path, image: np.ndarray) -> dict[str, np.ndarray]:
    import tensorflow as tf

    result = tf.saved_model.load(str(path)).signatures["serving_default"](image=tf.constant(image))
    return {key: value.numpy() for key, value in result.items()}


def _keras_outputs(path: Path, image: np.ndarray) -> dict[str, np.ndarray]:
    import keras

    model = keras.saving.load_model(path, compile=False)
    return {name: np.asarray(value) for name, value in zip(model.output_names, model(image), strict=True)}


def _unzipped_saved_model_outputs(zip_path: Path, work: Path, image: np.ndarray) -> dict[str, np.ndarray]:
    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(work)
    (folder,) = work.iterdir()
    return _saved_model_outputs(folder, image)


CASES = [
    ("saved_model", ("heatmap", "offsets", "displacement_fwd", "displacement_bwd")),  # the bug report
    ("saved_model", ("displacement_bwd", "heatmap", "displacement_fwd")),  # a subset, reordered
    ("saved_model", ()),  # all of the signature's outputs
    ("keras", ("displacement_bwd", "heatmap", "displacement_fwd")),
    ("keras", ("displacement_fwd", "displacement_bwd")),
    ("keras", ()),
]


@pytest.mark.parametrize(("kind", "chosen"), CASES, ids=[f"{kind}-{'-'.join(c) or 'all'}" for kind, c in CASES])
def test_every_artifact_keeps_each_output_under_its_key(
    kind: str, chosen: tuple[str, ...], request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    source = request.getfixturevalue("pose_saved_model" if kind == "saved_model" else "pose_keras")
    image = random_input(IMAGE_SHAPE)
    expected = (_saved_model_outputs if kind == "saved_model" else _keras_outputs)(source, image)
    # The two alike heads hold different values, so a swap between them cannot pass.
    assert not np.allclose(expected["displacement_fwd"], expected["displacement_bwd"], atol=1e-2)

    result = convert_in_process(
        source, tmp_path / "out", ConversionOptions(targets=TARGETS, outputs=chosen), tmp_path / "work"
    )

    keys = [spec.key or spec.name for spec in result.outputs]
    if chosen:
        assert keys == list(chosen)
    else:
        assert sorted(keys) == sorted(expected)

    assert [check.target for check in result.validation] == list(TARGETS)
    for check in result.validation:
        assert check.status == "passed", (check.target, check.message)
        assert [output.name for output in check.outputs] == keys, check.target
        assert all(output.passed for output in check.outputs), check

    tfjs = Path(result.artifact(Target.TFJS).path)
    signature = json.loads((tfjs / "model.json").read_text())["signature"]
    assert list(signature["outputs"]) == keys
    for key in keys:
        run = run_tfjs_model(tfjs, {"image": image}, [key])
        np.testing.assert_allclose(run.outputs[key], expected[key], **TIGHT, err_msg=f"TF.js {key}")
    # Called without output names, as most web code does, TF.js returns them in the chosen order.
    assert list(run_tfjs_model(tfjs, {"image": image}).output_names) == keys

    by_target = {
        "tflite": run_tflite(Path(result.artifact(Target.TFLITE).path), {"image": image}),
        "pb": run_frozen_graph(Path(result.artifact(Target.FROZEN_GRAPH).path), {"image": image}, keys),
        "savedmodel": _unzipped_saved_model_outputs(
            Path(result.artifact(Target.SAVED_MODEL).path), tmp_path / "unzipped", image
        ),
    }
    for target, outputs in by_target.items():
        assert sorted(outputs) == sorted(keys), target
        for key in keys:
            np.testing.assert_allclose(outputs[key], expected[key], **TIGHT, err_msg=f"{target} {key}")


def test_alike_inputs_are_keyed_too(tmp_path: Path) -> None:
    """Two inputs of one shape: tensorflowjs would list them by tensor name ('left:0')."""
    import tensorflow as tf

    class Pair(tf.Module):
        @tf.function(
            input_signature=[
                tf.TensorSpec([1, 4], tf.float32, name="left"),
                tf.TensorSpec([1, 4], tf.float32, name="right"),
            ]
        )
        def serve(self, left: Any, right: Any) -> dict[str, Any]:
            return {"difference": left - right, "ratio": left / (right + 1.0)}

    module = Pair()
    tf.saved_model.save(module, str(tmp_path / "pair"), signatures={"serving_default": module.serve})
    options = ConversionOptions(targets=(Target.TFJS,), outputs=("ratio", "difference"))
    result = convert_in_process(tmp_path / "pair", tmp_path / "out", options, tmp_path / "work")

    assert [check.status for check in result.validation] == ["passed"], result.validation
    tfjs = Path(result.artifact(Target.TFJS).path)
    signature = json.loads((tfjs / "model.json").read_text())["signature"]
    assert list(signature["inputs"]) == ["left", "right"]
    assert list(signature["outputs"]) == ["ratio", "difference"]
    left, right = random_input((1, 4), seed=1), random_input((1, 4), seed=2)
    run = run_tfjs_model(tfjs, {"left": left, "right": right}, ["difference", "ratio"])
    np.testing.assert_allclose(run.outputs["difference"], left - right, **TIGHT)
    np.testing.assert_allclose(run.outputs["ratio"], left / (right + 1.0), **TIGHT)

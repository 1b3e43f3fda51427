"""Every real TF.js graph model in tests/data (copies of ../shared/models/tfjs, MIT, see each LICENSE)
goes to TFLite and to a frozen graph, and both compute what the original computes in TF.js itself.

Between them the models carry fused convolutions, fused depthwise convolutions, fused matmuls,
PReLU, float16- and uint8-quantized weights and v1 control flow (rvm).
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bench.tfjs_model_shapes import RVM_STATES, SHAPES
from converter import ConversionOptions, Target, inspect
from converter.conversion import convert_in_process
from converter.formats import ModelFormat
from converter.options import parse_shape
from converter.tfjs_runtime import run_tfjs_model
from tests.converter.conftest import random_input, run_frozen_graph

DATA = Path(__file__).resolve().parents[1] / "data"
MODELS = ["blazeface", "emotion", "faceboxes", "facemesh", "movenet-lightning", "rvm", "selfie"]


def _rvm_inputs(path: Path) -> Path:
    rng = np.random.default_rng(3)
    zeros = {state: np.float32(0) for state in RVM_STATES}
    np.savez(path, src=rng.random((1, 128, 128, 3), dtype=np.float32), downsample_ratio=np.float32(0.5), **zeros)
    return path


@pytest.mark.parametrize("name", MODELS)
def test_real_tfjs_model_to_tflite_and_frozen_graph(name: str, tmp_path: Path, tf: Any) -> None:
    options = ConversionOptions(
        targets=(Target.TFLITE, Target.FROZEN_GRAPH),
        shapes=tuple(parse_shape(text) for text in SHAPES.get(name, ())),
        verify_inputs=str(_rvm_inputs(tmp_path / "rvm.npz")) if name == "rvm" else None,
    )
    result = convert_in_process(DATA / f"tfjs_{name}", tmp_path / "out", options, tmp_path / "work")

    assert result.format is ModelFormat.TFJS_GRAPH
    assert [check.target for check in result.validation] == [Target.TFLITE, Target.FROZEN_GRAPH]
    for check in result.validation:
        assert check.status == "passed", f"{check.target}: {check.message}"
        assert check.outputs and all(output.max_rel_error < 1e-3 for output in check.outputs)
    # The frozen graph is a model convbot (and TensorFlow) reads back as a frozen graph.
    pb = result.artifact(Target.FROZEN_GRAPH)
    assert pb is not None and Path(pb.path).name == f"tfjs_{name}.pb"
    summary = inspect(pb.path)
    assert summary.format is ModelFormat.FROZEN_GRAPH
    assert {spec.name for spec in result.outputs} <= {node.name for node in summary.nodes}


def test_saved_model_from_tfjs_runs_like_tfjs(tmp_path: Path, tf: Any) -> None:
    """The zipped SavedModel unzips to one folder; its serving signature takes and returns the TF.js names."""
    archive = tmp_path / "emotion.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for file in (DATA / "tfjs_emotion").iterdir():
            zipped.write(file, f"web_model/{file.name}")
    options = ConversionOptions(targets=(Target.SAVED_MODEL, Target.FROZEN_GRAPH))
    result = convert_in_process(archive, tmp_path / "out", options, tmp_path / "work")
    assert [check.status for check in result.validation] == ["passed", "passed"]

    saved = result.artifact(Target.SAVED_MODEL)
    assert saved is not None and Path(saved.path).name == "emotion_saved_model.zip"
    with zipfile.ZipFile(saved.path) as zipped:
        assert "emotion_saved_model/saved_model.pb" in zipped.namelist()
        zipped.extractall(tmp_path / "unzipped")
    assert inspect(saved.path).format is ModelFormat.SAVED_MODEL
    serving = tf.saved_model.load(str(tmp_path / "unzipped" / "emotion_saved_model")).signatures["serving_default"]
    image = random_input((2, 64, 64, 1))  # the batch stays dynamic, as in TF.js
    got = serving(input_1=tf.constant(image))["Identity"].numpy()
    expected = run_tfjs_model(DATA / "tfjs_emotion", {"input_1": image}, ["Identity"]).outputs["Identity"]
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    pb = result.artifact(Target.FROZEN_GRAPH)
    assert pb is not None
    from_pb = run_frozen_graph(Path(pb.path), {"input_1": image}, ["Identity"])["Identity"]
    np.testing.assert_allclose(from_pb, expected, rtol=1e-4, atol=1e-5)

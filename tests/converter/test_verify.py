"""Verification runs every artifact where its users will and must catch broken ones."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import flatbuffers
import numpy as np
import pytest
from tensorflow.lite.python import schema_py_generated as schema

from converter import ConversionOptions, Quantization, Target
from converter.conversion import convert_in_process
from converter.formats import ModelFormat
from converter.result import Artifact
from converter.summary import TensorSpec
from converter.verify import make_inputs, reference_runner, verify_artifacts

HEADS = ["heatmap", "offset_2", "displacement_fwd_2", "displacement_bwd_2"]


@pytest.fixture(scope="module")
def pose_result(multihead_graph, tmp_path_factory: pytest.TempPathFactory, tf: Any) -> Any:
    tmp = tmp_path_factory.mktemp("pose")
    return convert_in_process(multihead_graph.path, tmp / "out", ConversionOptions(), tmp / "work")


def _pack(model: Any) -> bytes:
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _verify(multihead_graph, artifact: Artifact) -> Any:
    inputs = make_inputs([TensorSpec("image", "float32", (1, 33, 33, 3))], {"image": (1, 33, 33, 3)})
    reference = reference_runner(ModelFormat.FROZEN_GRAPH, multihead_graph.path, HEADS)
    (check,) = verify_artifacts([artifact], HEADS, inputs, reference)
    return check


def test_every_conversion_is_verified_and_passes(pose_result) -> None:
    checks = {check.target: check for check in pose_result.validation}
    assert set(checks) == {Target.TFLITE, Target.TFJS}
    for check in checks.values():
        assert check.status == "passed", check.message
        assert [o.name for o in check.outputs] == HEADS
        assert all(o.max_rel_error < 1e-4 for o in check.outputs)
    tflite_inputs = checks[Target.TFLITE].inputs_manifest
    assert [(e.key, e.name, e.shape) for e in tflite_inputs] == [("image", "image", (1, 33, 33, 3))]
    assert {e.key for e in checks[Target.TFLITE].outputs_manifest} == set(HEADS)
    assert {e.key for e in checks[Target.TFJS].outputs_manifest} == set(HEADS)


def test_corrupted_tflite_weights_fail(pose_result, multihead_graph, tmp_path: Path) -> None:
    artifact = pose_result.artifact(Target.TFLITE)
    model = schema.ModelT.InitFromPackedBuf(bytearray(Path(artifact.path).read_bytes()), 0)
    biggest = max((b for b in model.buffers if b.data is not None), key=lambda b: len(b.data))
    weights = np.frombuffer(bytes(biggest.data), dtype=np.float32).copy()
    weights[: len(weights) // 3] *= -3.0  # a damaged download or a bad quantizer
    biggest.data = np.frombuffer(weights.tobytes(), dtype=np.uint8)
    broken = tmp_path / "broken.tflite"
    broken.write_bytes(_pack(model))
    check = _verify(multihead_graph, replace(artifact, path=str(broken)))
    assert check.status == "failed"
    assert any(not o.passed and o.max_rel_error > 1e-2 for o in check.outputs)


def test_swapped_tflite_outputs_fail(pose_result, multihead_graph, tmp_path: Path) -> None:
    artifact = pose_result.artifact(Target.TFLITE)
    model = schema.ModelT.InitFromPackedBuf(bytearray(Path(artifact.path).read_bytes()), 0)
    # Point the two same-shaped heads at each other's tensors, as a careless output mapping would.
    outputs = {entry.name.decode(): entry for entry in model.signatureDefs[0].outputs}
    fwd, bwd = outputs["displacement_fwd_2"], outputs["displacement_bwd_2"]
    fwd.tensorIndex, bwd.tensorIndex = bwd.tensorIndex, fwd.tensorIndex
    broken = tmp_path / "swapped.tflite"
    broken.write_bytes(_pack(model))
    check = _verify(multihead_graph, replace(artifact, path=str(broken)))
    assert check.status == "failed"
    failed = {o.name for o in check.outputs if not o.passed}
    assert failed == {"displacement_fwd_2", "displacement_bwd_2"}


def test_corrupted_and_swapped_tfjs_fail(pose_result, multihead_graph, tmp_path: Path) -> None:
    artifact = pose_result.artifact(Target.TFJS)
    corrupted = tmp_path / "corrupted"
    shutil.copytree(artifact.path, corrupted)
    shard = next(corrupted.glob("*.bin"))
    values = np.frombuffer(shard.read_bytes(), dtype=np.float32).copy()
    values[::7] += 0.5
    shard.write_bytes(values.tobytes())
    check = _verify(multihead_graph, replace(artifact, path=str(corrupted)))
    assert check.status == "failed"

    swapped = tmp_path / "swapped"
    shutil.copytree(artifact.path, swapped)
    model_json = swapped / "model.json"
    text = model_json.read_text()
    text = text.replace('"displacement_fwd_2"', '"@tmp@"').replace('"displacement_bwd_2"', '"displacement_fwd_2"')
    model_json.write_text(text.replace('"@tmp@"', '"displacement_bwd_2"'))
    check = _verify(multihead_graph, replace(artifact, path=str(swapped)))
    assert check.status == "failed"
    assert {o.name for o in check.outputs if not o.passed} == {"displacement_fwd_2", "displacement_bwd_2"}


def test_tfjs_model_that_throws_at_run_time_is_an_error(tmp_path: Path, tf: Any) -> None:
    """What tensorflowjs_converter alone makes of a TF1 graph with a keep_prob default: the model
    loads, then throws at its first execute, since the default counts as a second input."""
    from tensorflowjs.converters import tf_saved_model_conversion_v2 as tfjs

    graph = tf.Graph()
    with graph.as_default():
        image = tf.compat.v1.placeholder(tf.float32, [1, 4], name="image")
        keep_prob = tf.compat.v1.placeholder_with_default(1.0, [], name="keep_prob")
        tf.identity(tf.nn.relu(image) * keep_prob, name="scores")
    frozen = tmp_path / "graph.pb"
    frozen.write_bytes(graph.as_graph_def().SerializeToString())
    raw = tmp_path / "raw_tfjs"
    tfjs.convert_tf_frozen_model(str(frozen), "scores", str(raw))
    artifact = Artifact.from_path(Target.TFJS, raw, Quantization.NONE)
    inputs = make_inputs([TensorSpec("image", "float32", (1, 4))], {"image": (1, 4)})
    reference = reference_runner(ModelFormat.FROZEN_GRAPH, frozen, ["scores"])
    (check,) = verify_artifacts([artifact], ["scores"], inputs, reference)
    assert check.status == "error"
    assert check.message.startswith("TF.js failed at execute")


def test_without_node_the_report_says_so(pose_result, multihead_graph, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVBOT_NODE", "/nonexistent/node")
    check = _verify(multihead_graph, pose_result.artifact(Target.TFJS))
    assert check.status == "not run"
    assert check.message == "TF.js not run: Node.js not found"


def test_quantized_variants_report_their_error(fer_model: Path, tmp_path: Path, tf: Any) -> None:
    options = ConversionOptions(tflite_quantization=Quantization.DYNAMIC, tfjs_quantization=Quantization.UINT8)
    result = convert_in_process(fer_model, tmp_path / "out", options, tmp_path / "work")
    for check in result.validation:
        assert check.status in ("passed", "failed")
        (output,) = check.outputs
        assert output.name == "predictions" and 0 < output.max_abs_error < 1
        assert check.tolerance == 0.1


def test_user_inputs_from_npz(multihead_graph, tmp_path: Path, tf: Any) -> None:
    inputs = tmp_path / "inputs.npz"
    np.savez(inputs, image=np.full((1, 33, 33, 3), 0.25, np.float32))
    options = ConversionOptions(targets=(Target.TFLITE,), verify_inputs=str(inputs))
    result = convert_in_process(multihead_graph.path, tmp_path / "out", options, tmp_path / "work")
    assert result.validation[0].status == "passed"
    np.save(tmp_path / "wrong.npy", np.zeros(3))
    bad = ConversionOptions(targets=(Target.TFLITE,), verify_inputs=str(tmp_path / "inputs_missing.npz"))
    with pytest.raises(Exception, match="cannot read the inputs file"):
        convert_in_process(multihead_graph.path, tmp_path / "out2", bad, tmp_path / "work2")
    assert json.dumps(result.to_dict())  # the report serialises


def test_the_report_says_which_tfjs_backend_ran_the_artifact(pose_result, tmp_path: Path, tf: Any) -> None:
    from tensorflowjs.converters import tf_saved_model_conversion_v2 as tfjs

    from cli.render import render_manifest

    checks = {check.target: check for check in pose_result.validation}
    assert checks[Target.TFJS].engine == "wasm"
    assert checks[Target.TFLITE].engine == ""
    assert "TF.js execute() (wasm backend): inputs image; outputs " in render_manifest(pose_result)
    assert json.loads(json.dumps(pose_result.to_dict()))["validation"][1]["engine"] == "wasm"

    # Einsum has no kernel in TF.js's WASM backend: the artifact is run, and judged, on CPU.
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [1, 4], name="x")
        tf.identity(tf.einsum("bi,io->bo", x, tf.constant(np.arange(12, dtype=np.float32).reshape(4, 3))), name="y")
    frozen = tmp_path / "einsum.pb"
    frozen.write_bytes(graph.as_graph_def().SerializeToString())
    tfjs.convert_tf_frozen_model(str(frozen), "y", str(tmp_path / "einsum_tfjs"))
    artifact = Artifact.from_path(Target.TFJS, tmp_path / "einsum_tfjs", Quantization.NONE)
    inputs = make_inputs([TensorSpec("x", "float32", (1, 4))], {"x": (1, 4)})
    (check,) = verify_artifacts([artifact], ["y"], inputs, reference_runner(ModelFormat.FROZEN_GRAPH, frozen, ["y"]))
    assert check.status == "passed", check.message
    assert check.engine == "cpu"

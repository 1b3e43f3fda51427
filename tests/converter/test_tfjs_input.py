"""converter.tfjs_input: TF.js graph models rebuilt as TensorFlow GraphDefs, run in TensorFlow and
compared with the same TF.js model run in TF.js (Node.js, see converter.tfjs_runtime).

Test models (MIT, see their LICENSE): emotion (_FusedConv2D, float32 weights) and facemesh
(_FusedConv2D with Prelu, standalone Prelu, float16-quantized weights).
"""

from __future__ import annotations

import json
import os
import struct
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from converter import inspect
from converter.errors import UnsupportedModelError
from converter.tfjs_input import read_tfjs_weights, tfjs_to_graph_def
from converter.tfjs_runtime import run_tfjs_model

DATA = Path(__file__).parent.parent / "data"
MODELS = ["tfjs_emotion", "tfjs_facemesh"]


def _input_shape(model: dict[str, Any], info: dict[str, Any], name: str) -> list[int]:
    signature = (model.get("signature") or {}).get("inputs") or {}
    for spec in signature.values():
        if str(spec.get("name", "")).split(":")[0] == name and "dim" in spec.get("tensorShape", {}):
            return [max(1, int(d.get("size", 1))) for d in spec["tensorShape"]["dim"]]
    shape = info["inputs"][name]["shape"]
    assert shape is not None, f"input {name} has no shape"
    return [1 if d < 0 else int(d) for d in shape]


def _run_tf(graph_def: Any, feeds: dict[str, NDArray[Any]], outputs: list[str]) -> list[NDArray[Any]]:
    import tensorflow as tf

    graph = tf.Graph()
    with graph.as_default():
        tf.graph_util.import_graph_def(graph_def, name="")
    with tf.compat.v1.Session(graph=graph) as session:
        values = session.run(outputs, {f"{name}:0": value for name, value in feeds.items()})
    return [np.asarray(value) for value in values]


@pytest.mark.parametrize("model_name", MODELS)
def test_rebuilt_graph_matches_tfjs(model_name: str) -> None:
    model_dir = DATA / model_name
    model = json.loads((model_dir / "model.json").read_text())
    graph_def, info = tfjs_to_graph_def(model_dir)

    ops = {node.op for node in graph_def.node}
    assert not ops & {"_FusedConv2D", "FusedDepthwiseConv2dNative", "_FusedMatMul", "Prelu"}
    assert all(node.device == "" for node in graph_def.node)
    assert info["rewritten"].get("_FusedConv2D", 0) > 0

    rng = np.random.default_rng(7)
    feeds = {name: rng.random(_input_shape(model, info, name), dtype=np.float32) for name in info["inputs"]}
    outputs = info["outputs"]
    assert outputs
    got = _run_tf(graph_def, feeds, outputs)
    reference = run_tfjs_model(model_dir, feeds, outputs).outputs
    for name, value in zip(outputs, got, strict=True):
        want = reference[name]
        assert value.shape == want.shape, name
        error = float(np.max(np.abs(value.astype(np.float64) - want)))
        assert error <= 1e-4 * max(1.0, float(np.max(np.abs(want)))), (name, error)


def test_prelu_keeps_its_name_and_is_split() -> None:
    graph_def, info = tfjs_to_graph_def(DATA / "tfjs_facemesh")
    by_name = {node.name: node for node in graph_def.node}
    prelu = by_name["StatefulPartitionedCall/model_1/p_re_lu_2/Relu"]
    assert prelu.op == "AddV2"
    assert by_name[prelu.input[0]].op == "Relu"
    assert info["rewritten"]["Prelu"] > 0
    fused = by_name["StatefulPartitionedCall/model_1/batch_normalization_1/FusedBatchNormV3"]
    assert fused.op == "AddV2"
    assert by_name["StatefulPartitionedCall/model_1/batch_normalization_1/FusedBatchNormV3/conv"].op == "Conv2D"
    assert by_name["StatefulPartitionedCall/model_1/batch_normalization_1/FusedBatchNormV3/bias_add"].op == "BiasAdd"


def _write_model(folder: Path, nodes: list[dict[str, Any]], manifest: list[dict[str, Any]]) -> None:
    model = {
        "format": "graph-model",
        "modelTopology": {"node": nodes, "versions": {"producer": 1}},
        "weightsManifest": manifest,
    }
    (folder / "model.json").write_text(json.dumps(model))


def test_read_weights_dequantizes(tmp_path: Path) -> None:
    uint8 = np.array([0, 128, 255], dtype=np.uint8)
    half = np.array([1.5, -0.25], dtype="<f2")
    uint16 = np.array([0, 1000], dtype="<u2")
    ints = np.array([[7, -3]], dtype="<i4")
    strings = b"".join(struct.pack("<I", len(s)) + s for s in (b"ab", b""))
    blob = uint8.tobytes() + half.tobytes() + uint16.tobytes() + ints.tobytes() + np.array([1, 0], "u1").tobytes()
    blob += strings
    (tmp_path / "g1-shard1of2.bin").write_bytes(blob[:5])  # a weight split across two shards
    (tmp_path / "g1-shard2of2.bin").write_bytes(blob[5:])
    manifest = [
        {
            "paths": ["g1-shard1of2.bin", "g1-shard2of2.bin"],
            "weights": [
                {
                    "name": "q8",
                    "shape": [3],
                    "dtype": "float32",
                    "quantization": {"dtype": "uint8", "min": -1.0, "scale": 0.5, "original_dtype": "float32"},
                },
                {"name": "h", "shape": [2, 1], "dtype": "float32", "quantization": {"dtype": "float16"}},
                {
                    "name": "q16",
                    "shape": [2],
                    "dtype": "int32",
                    "quantization": {"dtype": "uint16", "min": 2.0, "scale": 0.01},
                },
                {"name": "i", "shape": [1, 2], "dtype": "int32"},
                {"name": "b", "shape": [2], "dtype": "bool"},
                {"name": "s", "shape": [2], "dtype": "string"},
            ],
        }
    ]
    weights = read_tfjs_weights(tmp_path, manifest)
    np.testing.assert_array_equal(weights["q8"], np.array([-1.0, 63.0, 126.5], np.float32))
    assert weights["q8"].dtype == np.float32
    np.testing.assert_array_equal(weights["h"], np.array([[1.5], [-0.25]], np.float32))
    assert weights["h"].dtype == np.float32
    np.testing.assert_array_equal(weights["q16"], np.array([2, 12], np.int32))
    np.testing.assert_array_equal(weights["i"], ints)
    np.testing.assert_array_equal(weights["b"], np.array([True, False]))
    assert list(weights["s"]) == [b"ab", b""]


def test_missing_shard_is_named(tmp_path: Path) -> None:
    (tmp_path / "one.bin").write_bytes(b"\0" * 8)
    manifest = [{"paths": ["one.bin", "two.bin"], "weights": [{"name": "w", "shape": [4], "dtype": "float32"}]}]
    with pytest.raises(UnsupportedModelError, match=r"two\.bin"):
        read_tfjs_weights(tmp_path, manifest)


@pytest.mark.parametrize("path", ["../secret.bin", "%2e%2e/%2e%2e/secret.bin", "/etc/hostname"])
def test_a_shard_path_out_of_the_model_folder_is_refused(path: str, tmp_path: Path) -> None:
    """Manifest paths are URLs relative to model.json; an upload's paths must not reach other files."""
    upload = tmp_path / "upload.zip"
    model = json.loads((DATA / "tfjs_emotion" / "model.json").read_text())
    model["weightsManifest"][0]["paths"] = [path]
    with zipfile.ZipFile(upload, "w") as archive:
        archive.writestr("web/model.json", json.dumps(model))
        archive.writestr("web/%2e%2e/%2e%2e/secret.bin", b"\0" * 64)  # literally named folders
        archive.writestr("secret.bin", b"\0" * 64)
    with pytest.raises(UnsupportedModelError, match="lies outside the model folder"):
        inspect(upload)


def test_unknown_op_is_refused(tmp_path: Path) -> None:
    nodes = [
        {"name": "x", "op": "Placeholder", "attr": {"dtype": {"type": "DT_FLOAT"}}},
        {"name": "y", "op": "TotallyMadeUpOp", "input": ["x"]},
    ]
    _write_model(tmp_path, nodes, [])
    with pytest.raises(UnsupportedModelError, match="TotallyMadeUpOp cannot be represented in TensorFlow"):
        tfjs_to_graph_def(tmp_path)


def test_fused_matmul_and_missing_type_attrs(tmp_path: Path) -> None:
    """A hand-made _FusedMatMul (BiasAdd + LeakyRelu) and a Prelu without T attrs run in TensorFlow."""
    rng = np.random.default_rng(3)
    w = rng.standard_normal((3, 4)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    alpha = np.full(4, 0.25, np.float32)
    (tmp_path / "w.bin").write_bytes(w.tobytes() + b.tobytes() + alpha.tobytes())
    const = {"op": "Const", "attr": {"dtype": {"type": "DT_FLOAT"}}}
    nodes = [
        {"name": "x", "op": "Placeholder", "attr": {"dtype": {"type": "DT_FLOAT"}}},
        {**const, "name": "w"},
        {**const, "name": "b"},
        {**const, "name": "alpha"},
        {
            "name": "dense",
            "op": "_FusedMatMul",
            "input": ["x", "w", "b"],
            "device": "/device:CPU:0",
            "attr": {
                "T": {"type": "DT_FLOAT"},
                "transpose_a": {"b": False},
                "transpose_b": {"b": False},
                "num_args": {"i": "1"},
                "leakyrelu_alpha": {"f": 0.1},
                "fused_ops": {"list": {"s": ["Qmlhc0FkZA==", "TGVha3lSZWx1"]}},
            },
        },  # BiasAdd, LeakyRelu
        {"name": "act", "op": "Prelu", "input": ["dense", "alpha"]},
        {"name": "out", "op": "Identity", "input": ["act"]},
    ]
    manifest = [
        {
            "paths": ["w.bin"],
            "weights": [
                {"name": "w", "shape": [3, 4], "dtype": "float32"},
                {"name": "b", "shape": [4], "dtype": "float32"},
                {"name": "alpha", "shape": [4], "dtype": "float32"},
            ],
        }
    ]
    _write_model(tmp_path, nodes, manifest)
    graph_def, info = tfjs_to_graph_def(tmp_path)
    assert info["outputs"] == ["out:0"]
    assert info["rewritten"] == {"_FusedMatMul": 1, "Prelu": 1}
    x = rng.standard_normal((5, 3)).astype(np.float32)
    (got,) = _run_tf(graph_def, {"x": x}, ["out:0"])
    z = x @ w + b
    z = np.where(z > 0, z, 0.1 * z)
    want = np.where(z > 0, z, 0.25 * z)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("model_name", MODELS)
def test_rebuilt_graph_converts_to_tflite(model_name: str, tmp_path: Path) -> None:
    import tensorflow as tf

    model_dir = DATA / model_name
    model = json.loads((model_dir / "model.json").read_text())
    graph_def, info = tfjs_to_graph_def(model_dir)
    frozen = tmp_path / "graph.pb"
    frozen.write_bytes(graph_def.SerializeToString())
    shapes = {name: _input_shape(model, info, name) for name in info["inputs"]}
    outputs = [name.split(":")[0] for name in info["outputs"]]
    converter = tf.compat.v1.lite.TFLiteConverter.from_frozen_graph(str(frozen), list(shapes), outputs, shapes)
    interpreter = tf.lite.Interpreter(model_content=converter.convert())
    interpreter.allocate_tensors()
    rng = np.random.default_rng(11)
    feeds = {name: rng.random(shape, dtype=np.float32) for name, shape in shapes.items()}
    for detail in interpreter.get_input_details():
        interpreter.set_tensor(detail["index"], feeds[detail["name"]])
    interpreter.invoke()
    got = {d["name"]: interpreter.get_tensor(d["index"]) for d in interpreter.get_output_details()}
    want = _run_tf(graph_def, feeds, info["outputs"])
    for name, value in zip(outputs, want, strict=True):
        error = float(np.max(np.abs(got[name].astype(np.float64) - value)))
        assert error <= 1e-4 * max(1.0, float(np.max(np.abs(value)))), (name, error)


def test_control_only_merge_is_dropped(tmp_path: Path) -> None:
    """Grappler's If lowering leaves a `branch_executed` Merge only control inputs point at; it goes."""
    placeholder = {"op": "Placeholder", "attr": {"dtype": {"type": "DT_FLOAT"}}}
    nodes = [
        {**placeholder, "name": "x"},
        {"name": "pred", "op": "Placeholder", "attr": {"dtype": {"type": "DT_BOOL"}}},
        {"name": "switch", "op": "Switch", "input": ["x", "pred"]},
        {"name": "pivot_f", "op": "Identity", "input": ["switch"]},
        {"name": "pivot_t", "op": "Identity", "input": ["switch:1"]},
        {"name": "neg", "op": "Neg", "input": ["pivot_f"]},
        {"name": "output", "op": "Merge", "input": ["neg", "pivot_t"]},
        {"name": "branch_executed", "op": "Merge", "input": ["pivot_t", "pivot_f"]},
        {"name": "out", "op": "Identity", "input": ["output", "^branch_executed"]},
    ]
    _write_model(tmp_path, nodes, [])
    graph_def, info = tfjs_to_graph_def(tmp_path)
    names = {node.name for node in graph_def.node}
    assert "branch_executed" not in names
    assert "output" in names
    assert info["outputs"] == ["out:0"]
    assert info["rewritten"] == {"Merge (control-only, dropped)": 1}
    x = np.array([1.0, -2.0], np.float32)
    for pred, want in ((True, x), (False, -x)):
        (got,) = _run_tf(graph_def, {"x": x, "pred": np.array(pred)}, ["out:0"])
        np.testing.assert_array_equal(got, want)

"""A TF.js artifact carries only ops TF.js 4.22 runs, whatever machine converted it.

The hard-swish graph is the bug report's: with oneDNN on (x86's default), TensorFlow's optimizer,
run by tensorflowjs, fused ``x * relu6(x + 3) / 6`` into ``_FusedConv2D`` as ``_FusedHardSwish``,
which no TF.js backend implements.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from converter.errors import ConversionError
from converter.formats import Target
from converter.options import ConversionOptions
from converter.tfjs_export import check_tfjs_files
from converter.tfjs_ops import ensure_tfjs_runs_ops, fused_ops_of, tfjs_fused_activations, tfjs_op_problems
from converter.tfjs_runtime import NODE_DIR, run_tfjs_model
from tests.converter.conftest import random_input, run_frozen_graph

DATA = Path(__file__).resolve().parent.parent / "data"
REAL_TFJS_MODELS = sorted(path.name for path in DATA.glob("tfjs_*") if (path / "model.json").is_file())
TFJS_BUNDLES = NODE_DIR / "node_modules" / "@tensorflow"
IMAGE_SHAPE = (1, 16, 16, 3)


def _write_frozen_conv_graph(path: Path, activation: Callable[[Any], Any]) -> Path:
    """image [1,16,16,3] -> Conv2D+BiasAdd -> activation -> Conv2D+BiasAdd -> activation -> output."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    rng = np.random.default_rng(0)
    w1, b1 = rng.normal(0, 0.5, (3, 3, 3, 8)).astype(np.float32), rng.normal(0, 1, 8).astype(np.float32)
    w2, b2 = rng.normal(0, 0.3, (3, 3, 8, 4)).astype(np.float32), rng.normal(0, 1, 4).astype(np.float32)

    @tf.function(input_signature=[tf.TensorSpec(IMAGE_SHAPE, tf.float32, name="image")])
    def model(image: Any) -> Any:
        x = activation(tf.nn.bias_add(tf.nn.conv2d(image, w1, 1, "SAME"), b1))
        x = activation(tf.nn.bias_add(tf.nn.conv2d(x, w2, 1, "SAME"), b2))
        return tf.identity(x, name="output")

    graph_def = convert_variables_to_constants_v2(model.get_concrete_function()).graph.as_graph_def()
    path.write_bytes(graph_def.SerializeToString())
    return path


def _hard_swish(x: Any) -> Any:
    import tensorflow as tf

    return x * tf.nn.relu6(x + 3.0) / 6.0  # as Keras's MobileNetV3 writes it


def _relu(x: Any) -> Any:
    import tensorflow as tf

    return tf.nn.relu(x)


def _tanh(x: Any) -> Any:
    import tensorflow as tf

    return tf.tanh(x)


def _tfjs_outputs(model_dir: Path, image: np.ndarray) -> np.ndarray:
    return run_tfjs_model(model_dir, {"image": image}, ["output"]).outputs["output"]


def _graph_outputs(graph: Path, image: np.ndarray) -> np.ndarray:
    return run_frozen_graph(graph, {"image": image}, ["output"])["output"]


def _model_ops(model_dir: Path) -> set[str]:
    model = json.loads((model_dir / "model.json").read_text())
    nodes = model["modelTopology"]["node"]
    return {node["op"] for node in nodes} | {op for node in nodes for op in fused_ops_of(node)}


def _edit_nodes(model_dir: Path, edit: Callable[[dict[str, Any]], bool]) -> list[str]:
    """Apply ``edit`` to every node of model.json; the names of the nodes it changed."""
    model_json = model_dir / "model.json"
    model = json.loads(model_json.read_text())
    changed = [node["name"] for node in model["modelTopology"]["node"] if edit(node)]
    model_json.write_text(json.dumps(model))
    return changed


def _set_fused_activation(node: dict[str, Any], activation: str) -> bool:
    if node["op"] != "_FusedConv2D":
        return False
    encoded = [base64.b64encode(op.encode()).decode() for op in ("BiasAdd", activation)]
    node["attr"]["fused_ops"]["list"]["s"] = encoded
    return True


@pytest.fixture(scope="module")
def relu_tfjs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A TF.js model of the relu conv graph: two _FusedConv2D with fused_ops BiasAdd, Relu."""
    from converter.conversion import convert_in_process

    root = tmp_path_factory.mktemp("relu")
    graph = _write_frozen_conv_graph(root / "relu.pb", _relu)
    options = ConversionOptions(targets=(Target.TFJS,), inputs=("image",), outputs=("output",), verify=False)
    convert_in_process(graph, root / "out", options, root / "work")
    return root / "out" / "relu_tfjs"


def test_hard_swish_graph_becomes_a_tfjs_model_that_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from converter.isolation import convert

    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "1")  # a machine where oneDNN is on, as x86 by default
    graph = _write_frozen_conv_graph(tmp_path / "hswish.pb", _hard_swish)
    options = ConversionOptions(targets=(Target.TFJS,), inputs=("image",), outputs=("output",))

    result = convert(graph, tmp_path / "out", options)

    (check,) = result.validation
    assert check.status == "passed", check.message
    model_dir = tmp_path / "out" / "hswish_tfjs"
    assert "_FusedHardSwish" not in _model_ops(model_dir)
    image = random_input(IMAGE_SHAPE)
    np.testing.assert_allclose(_tfjs_outputs(model_dir, image), _graph_outputs(graph, image), rtol=1e-4, atol=1e-4)


def test_the_tfjs_artifact_is_the_same_with_onednn_on_and_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from converter.isolation import convert

    graph = _write_frozen_conv_graph(tmp_path / "hswish.pb", _hard_swish)
    options = ConversionOptions(targets=(Target.TFJS,), inputs=("image",), outputs=("output",), verify=False)
    folders = []
    for onednn in ("0", "1"):
        monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", onednn)  # as on ARM (off) and on x86 (on by default)
        convert(graph, tmp_path / onednn, options)
        folders.append(tmp_path / onednn / "hswish_tfjs")

    off, on = folders
    assert json.loads((on / "model.json").read_text()) == json.loads((off / "model.json").read_text())
    assert sorted(p.name for p in on.iterdir()) == sorted(p.name for p in off.iterdir())
    assert all((on / p.name).read_bytes() == p.read_bytes() for p in off.glob("*.bin"))


def test_fused_activation_tfjs_lacks_is_split_into_standard_ops(relu_tfjs: Path, tmp_path: Path) -> None:
    model_dir = Path(shutil.copytree(relu_tfjs, tmp_path / "tanh_tfjs"))
    edited = _edit_nodes(model_dir, lambda node: _set_fused_activation(node, "Tanh"))
    tanh_graph = _write_frozen_conv_graph(tmp_path / "tanh.pb", _tanh)

    split = ensure_tfjs_runs_ops(model_dir)

    assert split == sorted(edited) and len(split) == 2
    assert "_FusedConv2D" not in _model_ops(model_dir)
    image = random_input(IMAGE_SHAPE)
    np.testing.assert_allclose(_tfjs_outputs(model_dir, image), _graph_outputs(tanh_graph, image), atol=1e-5)


def test_fused_hard_swish_is_split_into_standard_ops(relu_tfjs: Path, tmp_path: Path) -> None:
    # What tensorflowjs writes for the hard-swish graph where oneDNN is on.
    model_dir = Path(shutil.copytree(relu_tfjs, tmp_path / "hswish_tfjs"))
    edited = _edit_nodes(model_dir, lambda node: _set_fused_activation(node, "_FusedHardSwish"))
    hard_swish_graph = _write_frozen_conv_graph(tmp_path / "hswish.pb", _hard_swish)

    split = ensure_tfjs_runs_ops(model_dir)

    assert split == sorted(edited) and len(split) == 2
    assert check_tfjs_files(model_dir) == []  # its constants 3 and 1/6 are in a shard of their own
    image = random_input(IMAGE_SHAPE)
    np.testing.assert_allclose(_tfjs_outputs(model_dir, image), _graph_outputs(hard_swish_graph, image), atol=1e-5)


def test_fusion_convbot_cannot_split_is_refused_naming_it(relu_tfjs: Path, tmp_path: Path) -> None:
    model_dir = Path(shutil.copytree(relu_tfjs, tmp_path / "edited"))

    def fuse_batch_norm(node: dict[str, Any]) -> bool:
        if node["op"] != "_FusedConv2D":
            return False
        node["attr"]["fused_ops"]["list"]["s"] = [base64.b64encode(b"FusedBatchNorm").decode()]
        return True

    _edit_nodes(model_dir, fuse_batch_norm)

    with pytest.raises(ConversionError) as caught:
        ensure_tfjs_runs_ops(model_dir)

    message = caught.value.message
    assert "cannot run _FusedConv2D fusing FusedBatchNorm" in message
    assert "TF_ENABLE_ONEDNN_OPTS=0" in message and "\n" not in message


def test_op_tfjs_lacks_is_refused_naming_it(relu_tfjs: Path, tmp_path: Path) -> None:
    model_dir = Path(shutil.copytree(relu_tfjs, tmp_path / "edited"))

    def to_erfinv(node: dict[str, Any]) -> bool:
        if node["name"] != "output":
            return False
        node["op"] = "Erfinv"
        return True

    _edit_nodes(model_dir, to_erfinv)

    with pytest.raises(ConversionError) as caught:
        ensure_tfjs_runs_ops(model_dir)

    assert caught.value.message.startswith("TF.js 4.22 cannot run Erfinv (node 'output'): ")
    assert "\n" not in caught.value.message


@pytest.mark.parametrize("name", REAL_TFJS_MODELS)
def test_every_real_tfjs_model_passes_the_op_check(name: str) -> None:
    model = json.loads((DATA / name / "model.json").read_text())
    assert tfjs_op_problems(model) == []


def test_fused_activation_list_is_what_the_installed_tfjs_implements() -> None:
    # Each backend's applyActivation compares `activation === '<name>'`; wasm lists an enum.
    cpu = (TFJS_BUNDLES / "tfjs-backend-cpu" / "dist" / "utils" / "fused_utils.js").read_text()
    core = (TFJS_BUNDLES / "tfjs-core" / "dist" / "ops" / "fused_util.js").read_text()
    wasm = (TFJS_BUNDLES / "tfjs-backend-wasm" / "dist" / "kernels" / "types.js").read_text()
    for bundle in (cpu, core):
        assert set(re.findall(r"activation === '(\w+)'", bundle)) == tfjs_fused_activations()
    assert set(re.findall(r'FusableActivation\["(\w+)"\]', wasm)) == tfjs_fused_activations()

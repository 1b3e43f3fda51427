"""converter.tfjs_runtime end to end: tiny TensorFlow models, converted with tensorflowjs in-process,
run in the real TF.js runtime (Node.js + @tensorflow/tfjs from node/) and compared with TensorFlow.

Needs `cd node && npm ci` to have been run.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

# Before anything imports tensorflowjs: tensorflow_decision_forests (pulled in by tensorflowjs)
# imports IPython for a banner when stdout is captured, and IPython is not installed.
os.environ.setdefault("TFDF_DISABLE_WELCOME_MESSAGE", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from converter import tfjs_runtime
from converter.tfjs_runtime import TfjsRun, TfjsRunError, TfjsRunner, TfjsUnavailable, run_tfjs_model, shared_runner
from tests.converter.conftest import run_frozen_graph

EMOTION = Path(__file__).parent.parent / "data" / "tfjs_emotion"
RTOL = ATOL = 1e-5
Array = NDArray[Any]


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _signature_outputs(model_dir: Path) -> list[str]:
    return list(json.loads((model_dir / "model.json").read_text())["signature"]["outputs"])


def _assert_close(run: TfjsRun, expected: dict[str, Array]) -> None:
    assert list(run.outputs) == list(expected)
    for name, want in expected.items():
        got = run.outputs[name]
        assert got.shape == want.shape, name
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL, err_msg=name)


@dataclass(frozen=True)
class Converted:
    """A TF.js model folder and a way to get TensorFlow's answer for the same feeds."""

    model_dir: Path
    reference: Callable[[Array], dict[str, Array]]
    names: dict[str, str] = field(default_factory=dict)


# ------------------------------------------------------------------------------- models


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tfjs_runtime")


@pytest.fixture(scope="module")
def saved_model_js(work: Path) -> Converted:
    """SavedModel with signature input key "features" and three outputs: "scores" and "logits"
    (both float32 (None, 3)) and "total" (None, 1), converted with convert_tf_saved_model.

    tensorflowjs 4.22 finds an output's signature key by matching dtype and shape, so only "total"
    keeps its key; "scores" and "logits" are keyed by their tensor names ("Identity_1:0", ...).
    `names` maps each signature key to the name TF.js knows it by; `reference` is keyed by those.
    """
    import tensorflow as tf
    from tensorflowjs.converters import tf_saved_model_conversion_v2 as tfjs

    rng = _rng(1)

    class Heads(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w1 = tf.Variable(rng.normal(0, 0.5, (6, 8)).astype(np.float32))
            self.b1 = tf.Variable(rng.normal(0, 0.1, (8,)).astype(np.float32))
            self.w2 = tf.Variable(rng.normal(0, 0.5, (8, 3)).astype(np.float32))

        @tf.function(input_signature=[tf.TensorSpec([None, 6], tf.float32, name="features")])
        def serve(self, features: Any) -> dict[str, Any]:
            hidden = tf.nn.relu(tf.matmul(features, self.w1) + self.b1)
            logits = tf.matmul(hidden, self.w2)
            return {"scores": tf.nn.softmax(logits), "logits": logits, "total": tf.reduce_sum(hidden, 1, True)}

    module = Heads()
    saved = work / "heads_saved_model"
    tf.saved_model.save(module, str(saved), signatures={"serving_default": module.serve})
    out = work / "heads_saved_model_js"
    tfjs.convert_tf_saved_model(str(saved), str(out), signature_def="serving_default", saved_model_tags="serve")

    concrete = module.serve.get_concrete_function()
    # The flat outputs follow the sorted keys (tf.nest); their tensor names are the graph's.
    tensors = dict(zip(sorted(concrete.structured_outputs), (t.name for t in concrete.outputs), strict=True))
    names = {key: (key if key == "total" else tensors[key]) for key in tensors}

    def reference(x: Array) -> dict[str, Array]:
        return {names[key]: value.numpy() for key, value in module.serve(tf.constant(x)).items()}

    return Converted(out, reference, names)


@pytest.fixture(scope="module")
def frozen_js(work: Path) -> Converted:
    """Frozen graph (tf.function + convert_variables_to_constants_v2) with input node "pixels",
    converted with convert_tf_frozen_model: no signature inputs, outputs by node name."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2
    from tensorflowjs.converters import tf_saved_model_conversion_v2 as tfjs

    rng = _rng(2)
    kernel = tf.Variable(rng.normal(0, 0.3, (3, 3, 2, 4)).astype(np.float32))
    dense = tf.Variable(rng.normal(0, 0.5, (4, 5)).astype(np.float32))

    @tf.function
    def classify(pixels: Any) -> Any:
        x = tf.nn.relu(tf.nn.conv2d(pixels, kernel, 1, "SAME"))
        return tf.nn.softmax(tf.matmul(tf.reduce_mean(x, axis=[1, 2]), dense))

    concrete = classify.get_concrete_function(tf.TensorSpec([None, 6, 6, 2], tf.float32, name="pixels"))
    frozen = convert_variables_to_constants_v2(concrete)
    output = frozen.outputs[0].op.name
    pb = work / "frozen.pb"
    pb.write_bytes(frozen.graph.as_graph_def().SerializeToString())
    out = work / "frozen_js"
    tfjs.convert_tf_frozen_model(str(pb), output, str(out))

    def reference(x: Array) -> dict[str, Array]:
        return {output: classify(tf.constant(x)).numpy()}

    return Converted(out, reference)


def _v1_graph_js(work: Path, name: str, build: Callable[[Any, Any], list[str]]) -> Path:
    """Build a TF1-style graph with `build(tf, v1)` (returns output node names), convert it."""
    import tensorflow as tf
    from tensorflowjs.converters import tf_saved_model_conversion_v2 as tfjs

    graph = tf.Graph()
    with graph.as_default():
        outputs = build(tf, tf.compat.v1)
    pb = work / f"{name}.pb"
    pb.write_bytes(graph.as_graph_def().SerializeToString())
    out = work / f"{name}_js"
    tfjs.convert_tf_frozen_model(str(pb), ",".join(outputs), str(out))
    return out


WEIGHTS = np.arange(12, dtype=np.float32).reshape(4, 3) / 10


@pytest.fixture(scope="module")
def with_default_js(work: Path) -> Path:
    """TF1 graph: Placeholder "input" (None, 4) and PlaceholderWithDefault "keep_prob" (1.0),
    output "output" = (input @ W) * keep_prob. tensorflowjs leaves keep_prob as a graph input."""

    def build(tf: Any, v1: Any) -> list[str]:
        x = v1.placeholder(tf.float32, (None, 4), name="input")
        keep_prob = v1.placeholder_with_default(1.0, shape=[], name="keep_prob")
        tf.identity(tf.matmul(x, tf.constant(WEIGHTS)) * keep_prob, name="output")
        return ["output"]

    return _v1_graph_js(work, "with_default", build)


@pytest.fixture(scope="module")
def heads_js(work: Path) -> Path:
    """TF1 graph with an int32 input "count" and three outputs handed to the converter in the
    order zeta, alpha, mid: float "zeta", bool "alpha", int32 "mid"."""

    def build(tf: Any, v1: Any) -> list[str]:
        count = v1.placeholder(tf.int32, (None, 3), name="count")
        tf.identity(tf.cast(count, tf.float32) * 0.5, name="zeta")
        tf.greater(count, 3, name="alpha")
        tf.add(count * 2, 1, name="mid")
        return ["zeta", "alpha", "mid"]

    return _v1_graph_js(work, "heads", build)


@pytest.fixture(scope="module")
def cond_js(work: Path) -> Converted:
    """tf.function with a data-dependent tf.cond (StatelessIf): TF.js refuses model.execute()."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2
    from tensorflowjs.converters import tf_saved_model_conversion_v2 as tfjs

    @tf.function
    def branch(x: Any) -> Any:
        return tf.cond(tf.reduce_sum(x) > 0, lambda: x * 2.0, lambda: -x)

    frozen = convert_variables_to_constants_v2(branch.get_concrete_function(tf.TensorSpec([None, 3], tf.float32, "x")))
    output = frozen.outputs[0].op.name
    pb = work / "cond.pb"
    pb.write_bytes(frozen.graph.as_graph_def().SerializeToString())
    out = work / "cond_js"
    tfjs.convert_tf_frozen_model(str(pb), output, str(out))
    return Converted(out, lambda x: {output: branch(tf.constant(x)).numpy()})


def _copy(model_dir: Path, dest: Path) -> Path:
    shutil.copytree(model_dir, dest)
    return dest


# ----------------------------------------------------------------- SavedModel conversions


def test_saved_model_by_signature_key_matches_tensorflow(saved_model_js: Converted) -> None:
    x = _rng(10).normal(size=(3, 6)).astype(np.float32)
    run = run_tfjs_model(saved_model_js.model_dir, {"features": x})

    # outputs=None: all the model's outputs, by signature key, in model.json's signature order.
    assert run.output_names == tuple(_signature_outputs(saved_model_js.model_dir))
    assert set(run.output_names) == set(saved_model_js.names.values())
    assert "total" in run.output_names
    assert "scores" not in run.output_names  # same dtype and shape as "logits": key lost
    assert run.input_names == ("features",)
    assert not run.used_async
    assert run.backend == "wasm"  # the default "auto" runs it on WASM
    expected = saved_model_js.reference(x)
    _assert_close(run, {name: expected[name] for name in run.output_names})


def test_saved_model_inputs_and_outputs_by_any_name(saved_model_js: Converted) -> None:
    x = _rng(11).normal(size=(2, 6)).astype(np.float32)
    expected = saved_model_js.reference(x)
    signature = json.loads((saved_model_js.model_dir / "model.json").read_text())["signature"]
    assert signature["inputs"]["features"]["name"] == "features:0"
    total_tensor = signature["outputs"]["total"]["name"]  # e.g. "Identity_2:0"
    total_node = total_tensor.split(":")[0]
    assert total_node != "total"

    # A signature key, a node name or a tensor name all reach the same placeholder / node.
    for feed_name in ("features", "features:0"):
        run = run_tfjs_model(saved_model_js.model_dir, {feed_name: x}, ["total"])
        _assert_close(run, {"total": expected["total"]})
    run = run_tfjs_model(saved_model_js.model_dir, {"features": x}, [total_tensor, total_node])
    _assert_close(run, {total_tensor: expected["total"], total_node: expected["total"]})
    # The real layer name of a head is not an output name TF.js knows.
    with pytest.raises(TfjsRunError) as failure:
        run_tfjs_model(saved_model_js.model_dir, {"features": x}, ["scores"])
    assert failure.value.stage == "execute"
    assert "not found in the graph" in str(failure.value)


def test_outputs_come_back_in_the_order_asked(saved_model_js: Converted) -> None:
    x = _rng(12).normal(size=(4, 6)).astype(np.float32)
    expected = saved_model_js.reference(x)
    names = saved_model_js.names
    for order in ([names["scores"], names["total"]], [names["total"], names["logits"], names["scores"]]):
        run = run_tfjs_model(saved_model_js.model_dir, {"features": x}, order)
        assert list(run.outputs) == order
        _assert_close(run, {name: expected[name] for name in order})


def test_float64_input_is_fed_as_float32(saved_model_js: Converted) -> None:
    x = _rng(13).normal(size=(2, 6))
    run = run_tfjs_model(saved_model_js.model_dir, {"features": x})
    expected = saved_model_js.reference(x.astype(np.float32))
    _assert_close(run, {name: expected[name] for name in run.output_names})


def test_wasm_backend_works_offline(saved_model_js: Converted) -> None:
    x = _rng(14).normal(size=(3, 6)).astype(np.float32)
    run = run_tfjs_model(saved_model_js.model_dir, {"features": x}, backend="wasm")
    assert run.backend == "wasm"
    expected = saved_model_js.reference(x)
    _assert_close(run, {name: expected[name] for name in run.output_names})


# ------------------------------------------------------------------ frozen-graph conversions


def test_frozen_graph_by_node_name_matches_tensorflow(frozen_js: Converted) -> None:
    x = _rng(20).uniform(size=(2, 6, 6, 2)).astype(np.float32)
    expected = frozen_js.reference(x)
    (output,) = expected
    run = run_tfjs_model(frozen_js.model_dir, {"pixels": x})
    assert run.input_names == ("pixels",)
    assert run.output_names == (output,)
    _assert_close(run, expected)
    # "pixels:0" is the same tensor; outputs may be asked by node or tensor name.
    run = run_tfjs_model(frozen_js.model_dir, {"pixels:0": x}, [f"{output}:0"])
    _assert_close(run, {f"{output}:0": expected[output]})


def test_frozen_graph_outputs_follow_model_json_not_converter_order(work: Path, heads_js: Path) -> None:
    count = np.array([[1, 4, 7], [0, 3, 9]], dtype=np.int64)  # int64 goes in as int32
    run = run_tfjs_model(heads_js, {"count": count})
    assert run.input_names == ("count",)
    # TF.js takes the model's outputs from model.json's signature, whose order is the converter's
    # (not the "zeta,alpha,mid" it was given).
    assert run.output_names == tuple(_signature_outputs(heads_js))
    assert set(run.output_names) == {"zeta", "alpha", "mid"}
    assert list(run.outputs) == list(run.output_names)
    expected = run_frozen_graph(work / "heads.pb", {"count": count.astype(np.int32)}, ["zeta", "alpha", "mid"])
    assert run.outputs["alpha"].dtype == np.bool_
    assert run.outputs["mid"].dtype == np.int32
    assert run.outputs["zeta"].dtype == np.float32
    for name, want in expected.items():
        np.testing.assert_array_equal(run.outputs[name], want, err_msg=name)


def test_int64_that_does_not_fit_int32_is_refused(heads_js: Path) -> None:
    with pytest.raises(ValueError, match="int32"):
        run_tfjs_model(heads_js, {"count": np.array([[2**40, 0, 0]], dtype=np.int64)})


def test_placeholder_with_default_is_an_input_tfjs_demands_when_fed_positionally(
    work: Path, with_default_js: Path
) -> None:
    model_json = json.loads((with_default_js / "model.json").read_text())
    ops = {node["name"]: node["op"] for node in model_json["modelTopology"]["node"]}
    assert ops["keep_prob"] == "PlaceholderWithDefault"  # the converter leaves it in

    x = _rng(30).normal(size=(2, 4)).astype(np.float32)
    # Positionally, as web code calls a model (model.execute(tensor) / model.predict(tensor)),
    # TF.js counts keep_prob as a second input and throws.
    with pytest.raises(TfjsRunError) as failure:
        run_tfjs_model(with_default_js, {"input": x}, positional=True)
    assert failure.value.stage == "execute"
    assert "Input tensor count mismatch" in str(failure.value)
    assert "2 non-resource placeholders" in str(failure.value)

    # By name, TF.js 4.22 falls back to the default value.
    run = run_tfjs_model(with_default_js, {"input": x})
    assert run.input_names == ("input", "keep_prob")
    expected = run_frozen_graph(work / "with_default.pb", {"input": x}, ["output"])
    _assert_close(run, expected)
    # Both inputs given positionally (in input_names order) works too.
    run = run_tfjs_model(with_default_js, {"input": x, "keep_prob": np.float32(0.5)}, positional=True)
    _assert_close(run, {"output": expected["output"] * 0.5})


def test_dynamic_control_flow_falls_back_to_execute_async(cond_js: Converted) -> None:
    for sign in (1.0, -1.0):
        x = sign * _rng(40).uniform(0.1, 1.0, size=(2, 3)).astype(np.float32)
        run = run_tfjs_model(cond_js.model_dir, {"x": x})
        assert run.used_async
        _assert_close(run, cond_js.reference(x))


# ---------------------------------------------------------------------------- failures


def test_corrupted_model_json_fails_at_load(frozen_js: Converted, tmp_path: Path) -> None:
    broken = _copy(frozen_js.model_dir, tmp_path / "broken")
    text = (broken / "model.json").read_text()
    (broken / "model.json").write_text(text[: len(text) // 2])
    with pytest.raises(TfjsRunError) as failure:
        run_tfjs_model(broken, {"pixels": np.zeros((1, 6, 6, 2), np.float32)})
    assert failure.value.stage == "load"
    assert "model.json is not valid JSON" in str(failure.value)


def test_unsupported_op_fails_only_at_execute(frozen_js: Converted, tmp_path: Path) -> None:
    """TF.js maps ops lazily: a model with an op it lacks loads, and fails when run."""
    broken = _copy(frozen_js.model_dir, tmp_path / "unknown_op")
    model_json = json.loads((broken / "model.json").read_text())
    node = next(node for node in model_json["modelTopology"]["node"] if node["op"] in ("Relu", "_FusedConv2D"))
    node["op"] = "NoSuchOp"
    (broken / "model.json").write_text(json.dumps(model_json))
    with pytest.raises(TfjsRunError) as failure:
        run_tfjs_model(broken, {"pixels": np.zeros((1, 6, 6, 2), np.float32)})
    assert failure.value.stage == "execute"
    assert "Unknown op 'NoSuchOp'" in str(failure.value)


def test_missing_shard_fails_at_load(frozen_js: Converted, tmp_path: Path) -> None:
    broken = _copy(frozen_js.model_dir, tmp_path / "no_shard")
    shards = sorted(broken.glob("*.bin"))
    assert shards
    shards[0].unlink()
    with pytest.raises(TfjsRunError) as failure:
        run_tfjs_model(broken, {"pixels": np.zeros((1, 6, 6, 2), np.float32)})
    assert failure.value.stage == "load"
    assert shards[0].name in str(failure.value)
    assert "missing" in str(failure.value)


def test_truncated_shard_fails(frozen_js: Converted, tmp_path: Path) -> None:
    broken = _copy(frozen_js.model_dir, tmp_path / "short_shard")
    shard = sorted(broken.glob("*.bin"))[0]
    shard.write_bytes(shard.read_bytes()[:-8])
    with pytest.raises(TfjsRunError) as failure:
        run_tfjs_model(broken, {"pixels": np.zeros((1, 6, 6, 2), np.float32)})
    assert failure.value.stage == "load"


def test_wrong_input_fails_at_execute(frozen_js: Converted) -> None:
    with pytest.raises(TfjsRunError) as failure:
        run_tfjs_model(frozen_js.model_dir, {"pixels": np.zeros((1, 5, 6, 2), np.float32)})
    assert failure.value.stage == "execute"
    assert "shape" in str(failure.value)
    with pytest.raises(TfjsRunError) as failure:
        run_tfjs_model(frozen_js.model_dir, {"image": np.zeros((1, 6, 6, 2), np.float32)})
    assert failure.value.stage == "execute"
    assert "not part of graph" in str(failure.value)
    with pytest.raises(TfjsRunError) as failure:
        run_tfjs_model(frozen_js.model_dir, {"pixels": np.zeros((1, 6, 6, 2), np.float32)}, ["no_such_node"])
    assert failure.value.stage == "execute"


def test_node_missing(frozen_js: Converted, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVBOT_NODE", str(tmp_path / "no-such-node"))
    assert tfjs_runtime.node_executable() is None
    with pytest.raises(TfjsUnavailable) as failure:
        run_tfjs_model(frozen_js.model_dir, {"pixels": np.zeros((1, 6, 6, 2), np.float32)})
    assert str(failure.value) == "TF.js not run: Node.js not found"


def test_tfjs_package_missing(frozen_js: Converted, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tfjs_runtime, "TFJS_PACKAGE", tmp_path / "node_modules" / "package.json")
    with pytest.raises(TfjsUnavailable) as failure:
        run_tfjs_model(frozen_js.model_dir, {"pixels": np.zeros((1, 6, 6, 2), np.float32)})
    assert str(failure.value) == "TF.js not run: @tensorflow/tfjs not installed; run scripts/setup.sh"


def test_timeout(frozen_js: Converted) -> None:
    """The timeout counts Node.js's start: a fresh process cannot answer in 10 ms."""
    fresh = TfjsRunner()
    with pytest.raises(TfjsRunError) as failure:
        run_tfjs_model(frozen_js.model_dir, {"pixels": np.zeros((1, 6, 6, 2), np.float32)}, timeout=0.01, runner=fresh)
    assert fresh.pid is None  # killed
    assert failure.value.stage == "timeout"
    assert str(failure.value).startswith("TF.js run timed out")


# ------------------------------------------------------------------------- layers models


def test_tf_keras_layers_model_matches(work: Path) -> None:
    import tf_keras
    from tensorflowjs.converters import converter as tfjs

    tf_keras.utils.set_random_seed(0)
    inp = tf_keras.Input(shape=(5,), name="values")
    hidden = tf_keras.layers.Dense(7, activation="tanh", name="hidden")(inp)
    out = tf_keras.layers.Dense(2, name="result")(hidden)
    model = tf_keras.Model(inp, out)
    h5 = work / "tf_keras.h5"
    model.save(str(h5))
    out_dir = work / "tf_keras_layers"
    tfjs.dispatch_keras_h5_to_tfjs_layers_model_conversion(str(h5), str(out_dir))

    x = _rng(50).normal(size=(3, 5)).astype(np.float32)
    run = run_tfjs_model(out_dir, {"values": x}, kind="layers")
    assert run.input_names == ("values",)
    assert run.output_names == ("result",)
    _assert_close(run, {"result": model.predict(x, verbose=0)})


def test_keras3_layers_model_does_not_load_in_tfjs(work: Path) -> None:
    """tensorflowjs 4.22 copies Keras 3's config as it is ("batch_shape", new inbound_nodes), which
    TF.js 4.22's loadLayersModel cannot read."""
    import keras
    from tensorflowjs.converters import converter as tfjs

    inp = keras.Input(shape=(5,), name="values")
    model = keras.Model(inp, keras.layers.Dense(2, name="result")(inp))
    h5 = work / "keras3.h5"
    model.save(str(h5))
    out_dir = work / "keras3_layers"
    tfjs.dispatch_keras_h5_to_tfjs_layers_model_conversion(str(h5), str(out_dir))
    with pytest.raises(TfjsRunError) as failure:
        run_tfjs_model(out_dir, {"values": np.zeros((1, 5), np.float32)}, kind="layers")
    assert failure.value.stage == "load"
    assert "batchInputShape" in str(failure.value)


# ------------------------------------------------------------------------ a real model


def test_real_emotion_model_runs() -> None:
    model_json = json.loads((EMOTION / "model.json").read_text())
    (placeholder,) = (node for node in model_json["modelTopology"]["node"] if node["op"] == "Placeholder")
    dims = [int(d["size"]) for d in placeholder["attr"]["shape"]["shape"]["dim"]]
    assert dims == [-1, 64, 64, 1]
    faces = _rng(60).uniform(0, 1, size=(2, *dims[1:])).astype(np.float32)

    run = run_tfjs_model(EMOTION, {placeholder["name"]: faces})
    assert run.input_names == ("input_1:0",)  # its signature keys are tensor names
    assert run.output_names == ("Identity:0",)
    (probabilities,) = run.outputs.values()
    assert probabilities.shape == (2, 7)
    assert np.isfinite(probabilities).all()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)

    wasm = run_tfjs_model(EMOTION, {"input_1:0": faces}, ["Identity"], backend="wasm")
    np.testing.assert_allclose(wasm.outputs["Identity"], probabilities, rtol=RTOL, atol=ATOL)


def test_a_shard_path_out_of_the_model_folder_is_not_read(tmp_path: Path) -> None:
    """An uploaded model.json naming '../secret.bin': TF.js in Node.js refuses it instead of reading it."""
    model_dir = tmp_path / "model"
    shutil.copytree(EMOTION, model_dir)
    shard = next(model_dir.glob("*.bin"))
    shard.rename(tmp_path / "secret.bin")
    model = json.loads((model_dir / "model.json").read_text())
    model["weightsManifest"][0]["paths"] = ["../secret.bin"]
    (model_dir / "model.json").write_text(json.dumps(model))
    with pytest.raises(TfjsRunError, match="lies outside the model folder") as caught:
        run_tfjs_model(model_dir, {"input_1": np.zeros((1, 64, 64, 1), np.float32)}, None)
    assert caught.value.stage == "load"


# ------------------------------------------------------------- the warm Node.js process


@pytest.fixture(scope="module")
def endless_loop_js(work: Path) -> Path:
    """TF1 graph whose while loop never ends: i + 1 stops growing at 2**24 and stays above -1."""

    def build(tf: Any, v1: Any) -> list[str]:
        start = v1.placeholder(tf.float32, (), name="start")
        tf.identity(tf.while_loop(lambda i: i > -1.0, lambda i: i + 1.0, [start]), name="end")
        return ["end"]

    return _v1_graph_js(work, "endless_loop", build)


@pytest.fixture(scope="module")
def einsum_js(work: Path) -> Converted:
    """A frozen graph whose only op of note is Einsum, a kernel TF.js's WASM backend lacks."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2
    from tensorflowjs.converters import tf_saved_model_conversion_v2 as tfjs

    weights = tf.constant(_rng(3).normal(size=(4, 3)).astype(np.float32))

    @tf.function
    def project(x: Any) -> Any:
        return tf.einsum("bi,io->bo", x, weights)

    frozen = convert_variables_to_constants_v2(project.get_concrete_function(tf.TensorSpec([None, 4], tf.float32, "x")))
    output = frozen.outputs[0].op.name
    pb = work / "einsum.pb"
    pb.write_bytes(frozen.graph.as_graph_def().SerializeToString())
    out = work / "einsum_js"
    tfjs.convert_tf_frozen_model(str(pb), output, str(out))
    return Converted(out, lambda x: {output: project(tf.constant(x)).numpy()})


def test_one_warm_process_runs_many_models_many_times(frozen_js: Converted, saved_model_js: Converted) -> None:
    run_tfjs_model(frozen_js.model_dir, {"pixels": np.zeros((1, 6, 6, 2), np.float32)})
    pid = shared_runner().pid
    assert pid is not None
    for seed in range(5):
        pixels = _rng(70 + seed).uniform(size=(2, 6, 6, 2)).astype(np.float32)
        _assert_close(run_tfjs_model(frozen_js.model_dir, {"pixels": pixels}), frozen_js.reference(pixels))
        features = _rng(80 + seed).normal(size=(3, 6)).astype(np.float32)
        expected = saved_model_js.reference(features)
        run = run_tfjs_model(saved_model_js.model_dir, {"features": features}, ["total"])
        _assert_close(run, {"total": expected["total"]})
        assert run.backend == "wasm"
    assert shared_runner().pid == pid


def test_a_model_rewritten_in_place_is_loaded_again(frozen_js: Converted, tmp_path: Path) -> None:
    model_dir = _copy(frozen_js.model_dir, tmp_path / "model")
    pixels = np.zeros((1, 6, 6, 2), np.float32)
    run_tfjs_model(model_dir, {"pixels": pixels})
    text = (model_dir / "model.json").read_text()
    (model_dir / "model.json").write_text(text[: len(text) // 2])
    with pytest.raises(TfjsRunError, match=r"model\.json is not valid JSON"):
        run_tfjs_model(model_dir, {"pixels": pixels})


def test_a_killed_node_process_is_replaced(frozen_js: Converted) -> None:
    pixels = _rng(90).uniform(size=(1, 6, 6, 2)).astype(np.float32)
    run_tfjs_model(frozen_js.model_dir, {"pixels": pixels})
    pid = shared_runner().pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    _assert_close(run_tfjs_model(frozen_js.model_dir, {"pixels": pixels}), frozen_js.reference(pixels))
    assert shared_runner().pid not in (None, pid)


def test_a_hanging_run_times_out_and_the_next_run_works(endless_loop_js: Path, frozen_js: Converted) -> None:
    pixels = _rng(91).uniform(size=(1, 6, 6, 2)).astype(np.float32)
    run_tfjs_model(frozen_js.model_dir, {"pixels": pixels})
    pid = shared_runner().pid
    with pytest.raises(TfjsRunError) as failure:
        run_tfjs_model(endless_loop_js, {"start": np.float32(0)}, timeout=3)
    assert failure.value.stage == "timeout"
    assert str(failure.value) == "TF.js run timed out after 3 s"
    assert shared_runner().pid is None  # killed with its run
    _assert_close(run_tfjs_model(frozen_js.model_dir, {"pixels": pixels}), frozen_js.reference(pixels))
    assert shared_runner().pid not in (None, pid)


def test_a_kernel_wasm_lacks_runs_on_cpu(einsum_js: Converted) -> None:
    ops = {node["op"] for node in json.loads((einsum_js.model_dir / "model.json").read_text())["modelTopology"]["node"]}
    assert "Einsum" in ops
    x = _rng(92).normal(size=(2, 4)).astype(np.float32)
    with pytest.raises(TfjsRunError, match="Einsum"):
        run_tfjs_model(einsum_js.model_dir, {"x": x}, backend="wasm")
    run = run_tfjs_model(einsum_js.model_dir, {"x": x})
    assert run.backend == "cpu"
    assert "Einsum" in run.fallback
    _assert_close(run, einsum_js.reference(x))

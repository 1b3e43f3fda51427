"""The tiny models from bench/model_factory.py load and run with TensorFlow."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from bench import model_factory as mf


@pytest.fixture(scope="session")
def tf() -> Any:
    import tensorflow

    return tensorflow


@pytest.fixture(scope="session")
def classifier(tf: Any) -> Any:
    return mf.keras_classifier()


@pytest.fixture(scope="session")
def expected_probs(classifier: Any) -> NDArray[Any]:
    return np.asarray(classifier(mf.classifier_sample(), training=False))


def load_graph_def(tf: Any, path: Path) -> Any:
    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString(path.read_bytes())
    return graph_def


def run_frozen(tf: Any, graph_def: Any, feeds: Mapping[str, Any], fetches: Sequence[str]) -> list[NDArray[Any]]:
    graph = tf.Graph()
    with graph.as_default():
        tf.graph_util.import_graph_def(graph_def, name="")
    with tf.compat.v1.Session(graph=graph) as sess:
        results: list[NDArray[Any]] = sess.run(
            [f"{name}:0" for name in fetches], {f"{name}:0": v for name, v in feeds.items()}
        )
    return results


def test_tensorflow_and_tensorflowjs_import_together(tf: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # ydf/tensorflow_decision_forests (pulled in by tensorflowjs) vs protobuf is a pin trap.
    # Second trap: tensorflow_decision_forests/__init__.py does `import IPython` to show
    # a welcome banner whenever sys.stdout is not the real fd 1/2 (pytest capture,
    # contextlib.redirect_stdout, ...), and IPython is not installed.  Unless
    # TFDF_DISABLE_WELCOME_MESSAGE is set (or ydf was imported first) `import
    # tensorflowjs` then fails with ModuleNotFoundError: No module named 'IPython'.
    monkeypatch.setenv("TFDF_DISABLE_WELCOME_MESSAGE", "1")
    import tensorflowjs

    assert tf.__version__ == "2.19.0"
    assert tensorflowjs.__version__ == "4.22.0"


def test_classifier_is_a_softmax(expected_probs: NDArray[Any]) -> None:
    assert expected_probs.shape == (2, mf.CLASSIFIER_CLASSES)
    np.testing.assert_allclose(expected_probs.sum(axis=1), 1.0, rtol=1e-5)


def test_saved_model(tf: Any, tmp_path: Path, classifier: Any, expected_probs: NDArray[Any]) -> None:
    facts = mf.write_saved_model(tmp_path / "sm", classifier)
    assert facts.signature_keys == ("serve", "serving_default")
    assert facts.inputs == ("image",) and facts.outputs == ("output_0",)
    assert facts.input_shapes == {"image": (None, 8, 8, 3)}
    assert facts.output_shapes == {"output_0": (None, 4)}
    serving = tf.saved_model.load(str(facts.path)).signatures["serving_default"]
    result = serving(image=tf.constant(mf.classifier_sample()))
    assert set(result) == set(facts.outputs)
    np.testing.assert_allclose(result["output_0"].numpy(), expected_probs, rtol=1e-5, atol=1e-6)


def test_frozen_from_keras(tf: Any, tmp_path: Path, classifier: Any, expected_probs: NDArray[Any]) -> None:
    facts = mf.write_frozen_from_keras(tmp_path / "frozen.pb", classifier)
    assert facts.inputs == ("image",) and facts.outputs == ("Identity",)
    graph_def = load_graph_def(tf, facts.path)
    assert mf.graph_sinks(graph_def) == ["Identity"]
    assert not any(n.op in ("VarHandleOp", "ReadVariableOp") for n in graph_def.node)
    (got,) = run_frozen(tf, graph_def, {"image": mf.classifier_sample()}, facts.outputs)
    np.testing.assert_allclose(got, expected_probs, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("writer", "name"),
    [
        (mf.write_h5, "m.h5"),
        (mf.write_keras_v3, "m.keras"),
    ],
)
def test_keras_files(tmp_path: Path, classifier: Any, expected_probs: NDArray[Any], writer: Any, name: str) -> None:
    import keras

    facts = writer(tmp_path / name, classifier)
    loaded = keras.saving.load_model(facts.path)
    assert [t.name for t in loaded.inputs] == list(facts.inputs)
    assert loaded.output_names == list(facts.outputs)
    np.testing.assert_allclose(loaded.predict(mf.classifier_sample(), verbose=0), expected_probs, rtol=1e-5)


def test_weights_only_h5(tmp_path: Path, classifier: Any, expected_probs: NDArray[Any]) -> None:
    import h5py

    facts = mf.write_weights_only_h5(tmp_path / "m.weights.h5", classifier)
    with h5py.File(facts.path) as f:
        assert "model_config" not in f.attrs and set(f) == {"layers", "vars"}
    fresh = mf.keras_classifier()
    fresh.set_weights([np.zeros_like(w) for w in fresh.get_weights()])
    fresh.load_weights(facts.path)
    np.testing.assert_allclose(fresh(mf.classifier_sample()), expected_probs, rtol=1e-5)


def test_tf_keras_files(tmp_path: Path, expected_probs: NDArray[Any]) -> None:
    import h5py
    import keras

    weights = mf.write_tf_keras_weights_h5(tmp_path / "w.h5")
    full = mf.write_tf_keras_h5(tmp_path / "tk.h5")
    with h5py.File(weights.path) as f:
        assert f.attrs["keras_version"].startswith("2.") and "model_config" not in f.attrs
        assert "layer_names" in f.attrs
    with h5py.File(full.path) as f:
        assert f.attrs["keras_version"].startswith("2.") and "model_config" in f.attrs
    model = mf.tf_keras_classifier()
    model.set_weights([np.zeros_like(w) for w in model.get_weights()])
    model.load_weights(str(weights.path))
    np.testing.assert_allclose(model(mf.classifier_sample()), expected_probs, rtol=1e-5)
    # Keras 3 reads the Keras 2 full-model HDF5.
    loaded = keras.saving.load_model(full.path)
    np.testing.assert_allclose(loaded.predict(mf.classifier_sample(), verbose=0), expected_probs, rtol=1e-5)


def test_lambda_refused_in_safe_mode(tmp_path: Path) -> None:
    import keras

    facts = mf.write_keras_with_lambda(tmp_path / "l.keras", tmp_path / "l.h5")
    x = np.ones((1, 4), np.float32)
    for path in (facts.path, *facts.extra_paths):
        with pytest.raises(ValueError, match="Lambda"):
            keras.saving.load_model(path)  # safe_mode=True is the default
        with pytest.raises(ValueError, match="safe_mode"):
            keras.saving.load_model(path, safe_mode=True)
        model = keras.saving.load_model(path, safe_mode=False)
        dense = model.get_layer("dense")
        np.testing.assert_allclose(model(x), 2 * np.asarray(dense(x)), rtol=1e-6)


def test_multi_output_saved_model(tf: Any, tmp_path: Path) -> None:
    facts = mf.write_multi_output_keras(tmp_path / "mo")
    assert facts.inputs == ("features",) and facts.outputs == ("class_probs", "score")
    serving = tf.saved_model.load(str(facts.path)).signatures["serving_default"]
    result = serving(features=tf.ones((3, 6)))
    assert {k: tuple(v.shape) for k, v in result.items()} == {"class_probs": (3, 3), "score": (3, 1)}


def test_tf1_graph(tf: Any, tmp_path: Path) -> None:
    from google.protobuf import text_format

    facts = mf.write_tf1_graph(tmp_path / "g.pb", tmp_path / "g.pbtxt")
    assert tf.compat.v1.control_flow_v2_enabled()  # the global toggle was restored
    assert facts.inputs == ("input",) and facts.outputs == ("probabilities",)
    assert facts.optional_inputs == ("is_training", "keep_prob")
    graph_def = load_graph_def(tf, facts.path)
    from_text = text_format.Parse(facts.extra_paths[0].read_text(), tf.compat.v1.GraphDef())
    assert from_text == graph_def

    nodes = {n.name: n for n in graph_def.node}
    placeholders = {n for n, d in nodes.items() if d.op in ("Placeholder", "PlaceholderWithDefault")}
    assert placeholders == {*facts.inputs, *facts.optional_inputs, *facts.other_placeholders}
    assert nodes["logits"].op == "BiasAdd" and nodes["probabilities"].op == "Softmax"
    assert sorted(mf.graph_sinks(graph_def)) == sorted((*facts.outputs, *facts.leftover_sinks))
    ops = {n.op for n in graph_def.node}
    assert {"Switch", "Merge", "Assert", "ScalarSummary", "SaveV2", "RandomUniform"} <= ops
    assert not ops & {"VariableV2", "Assign", "FusedBatchNorm", "FusedBatchNormV3"}
    assert any(n.startswith("gradients/") for n in nodes)
    assert "^input_check/Assert" in nodes["checked_input"].input

    x = np.random.RandomState(0).uniform(size=(2, 16, 16, 3)).astype(np.float32)
    (probs,) = run_frozen(tf, graph_def, {"input": x}, facts.outputs)
    assert probs.shape == (2, mf.TF1_CLASSES)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    train_feeds = {"input": x, "is_training": True, "keep_prob": 0.5}
    fetches = [*facts.outputs, "Merge/MergeSummary", "gradients/AddN_2"]
    train_probs, summary, grad = run_frozen(tf, graph_def, train_feeds, fetches)
    assert train_probs.shape == probs.shape and not np.allclose(train_probs, probs)
    assert isinstance(summary, bytes) and grad.shape == (3, 3, 3, 8)


def test_multihead_graph(tf: Any, tmp_path: Path) -> None:
    facts = mf.write_multihead_graph(tmp_path / "pose.pb")
    assert facts.inputs == ("image",)
    assert facts.outputs == ("heatmap", "offset_2", "displacement_fwd_2", "displacement_bwd_2")
    graph_def = load_graph_def(tf, facts.path)
    assert mf.graph_sinks(graph_def) == list(facts.outputs)
    assert {n.name: n.op for n in graph_def.node if n.name in facts.outputs} == {
        "heatmap": "Sigmoid",
        "offset_2": "BiasAdd",
        "displacement_fwd_2": "BiasAdd",
        "displacement_bwd_2": "BiasAdd",
    }
    x = np.random.RandomState(0).uniform(size=(1, 33, 33, 3)).astype(np.float32)
    results = run_frozen(tf, graph_def, {"image": x}, facts.outputs)
    for name, value in zip(facts.outputs, results, strict=True):
        assert value.shape == facts.output_shapes[name]
    assert results[0].min() >= 0.0 and results[0].max() <= 1.0


def test_frozen_graphs_are_deterministic(tf: Any, tmp_path: Path) -> None:
    a = mf.write_tf1_graph(tmp_path / "a.pb", tmp_path / "a.pbtxt")
    b = mf.write_tf1_graph(tmp_path / "b.pb", tmp_path / "b.pbtxt")
    assert a.path.read_bytes() == b.path.read_bytes()
    c = mf.write_multihead_graph(tmp_path / "c.pb")
    d = mf.write_multihead_graph(tmp_path / "d.pb")
    assert c.path.read_bytes() == d.path.read_bytes()


def test_fer_data_file_is_vendored() -> None:
    data = Path(__file__).parent / "data"
    assert (data / "fer_emotion_model.hdf5").stat().st_size > 100_000
    assert "MIT License" in (data / "LICENSE-fer").read_text()

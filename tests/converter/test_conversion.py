"""Conversions of every input format: the artifacts load, run and compute what the source does."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bench import model_factory
from converter import BadOptionsError, ConversionOptions, Quantization, Target
from converter.conversion import convert_in_process
from converter.protos import GraphDef
from converter.tfjs_export import check_tfjs_files
from converter.tfjs_runtime import run_tfjs_model
from tests.converter.conftest import random_input, run_frozen_graph, run_tflite

TIGHT = {"rtol": 1e-4, "atol": 1e-5}


def _convert(model: Path, tmp_path: Path, **options: Any) -> Any:
    return convert_in_process(model, tmp_path / "out", ConversionOptions(**options), tmp_path / "work")


def _tfjs_manifest(folder: str) -> dict[str, Any]:
    assert check_tfjs_files(Path(folder)) == []
    return json.loads((Path(folder) / "model.json").read_text())


def test_multihead_graph_keeps_the_four_head_names(multihead_graph, tmp_path: Path, tf: Any) -> None:
    result = _convert(multihead_graph.path, tmp_path)
    tflite = result.artifact(Target.TFLITE)
    image = random_input((1, 33, 33, 3))
    got = run_tflite(Path(tflite.path), {"image": image})
    heads = list(multihead_graph.outputs)
    assert sorted(got) == sorted(heads)
    expected = run_frozen_graph(multihead_graph.path, {"image": image}, heads)
    for head in heads:
        np.testing.assert_allclose(got[head], expected[head], **TIGHT)
    # TF.js: the graph model's outputs are the same node names.
    manifest = _tfjs_manifest(result.artifact(Target.TFJS).path)
    node_names = {node["name"] for node in manifest["modelTopology"]["node"]}
    assert set(heads) <= node_names and "image" in node_names
    run = run_tfjs_model(Path(result.artifact(Target.TFJS).path), {"image": image}, heads)
    for head in heads:
        np.testing.assert_allclose(run.outputs[head], expected[head], **TIGHT)
    assert result.artifact(Target.TFLITE).sha256 and result.artifact(Target.TFLITE).size > 1000
    assert set(result.versions) >= {"tensorflow", "tensorflowjs"}
    assert "convert_tflite" in result.timings and "convert_tfjs" in result.timings


def test_tf1_graph_optional_placeholders_become_their_defaults(tf1_graph, tmp_path: Path, tf: Any) -> None:
    result = _convert(tf1_graph.path, tmp_path)
    assert [s.name for s in result.inputs] == ["input"]
    image = random_input((1, 16, 16, 3))
    got = run_tflite(Path(result.artifact(Target.TFLITE).path), {"input": image})
    expected = run_frozen_graph(tf1_graph.path, {"input": image}, ["probabilities"])
    np.testing.assert_allclose(got["probabilities"], expected["probabilities"], **TIGHT)
    manifest = _tfjs_manifest(result.artifact(Target.TFJS).path)
    ops = {node["name"]: node["op"] for node in manifest["modelTopology"]["node"]}
    # Left as PlaceholderWithDefault, TF.js would demand is_training and keep_prob at run time.
    assert [name for name, op in ops.items() if op.startswith("Placeholder")] == ["input"]
    # Fed positionally, as web code calls model.predict(tensor): works only with one input left.
    run = run_tfjs_model(Path(result.artifact(Target.TFJS).path), {"input": image}, positional=True)
    np.testing.assert_allclose(next(iter(run.outputs.values())), expected["probabilities"], **TIGHT)


def test_choosing_an_intermediate_node_as_input_and_output(multihead_graph, tmp_path: Path, tf: Any) -> None:
    summary_nodes = [n for n in multihead_graph_nodes(multihead_graph.path) if n[1] == "Relu6"]
    trunk = summary_nodes[-1][0]
    result = _convert(
        multihead_graph.path,
        tmp_path,
        targets=(Target.TFLITE,),
        inputs=(f"'{trunk}:0'",),
        outputs=("heatmap",),
        shapes=((trunk, (1, 9, 9, 16)),),
    )
    assert [s.name for s in result.inputs] == [trunk]
    assert [s.name for s in result.outputs] == ["heatmap"]
    got = run_tflite(Path(result.artifact(Target.TFLITE).path), {trunk: random_input((1, 9, 9, 16))})
    assert list(got) == ["heatmap"] and got["heatmap"].shape == (1, 9, 9, 17)


def multihead_graph_nodes(path: Path) -> list[tuple[str, str]]:
    graph = GraphDef()
    graph.ParseFromString(path.read_bytes())
    return [(node.name, node.op) for node in graph.node]


def test_unknown_node_names_get_the_closest(multihead_graph, tmp_path: Path) -> None:
    with pytest.raises(BadOptionsError) as caught:
        _convert(multihead_graph.path, tmp_path, outputs=("heatmapp",))
    assert caught.value.message.startswith("no node named heatmapp; closest: heatmap")


def test_unknown_dimensions_must_be_given(multihead_graph, tmp_path: Path, tf: Any) -> None:
    dynamic = model_factory.write_with_unknown_dims(multihead_graph.path, tmp_path / "dynamic.pb")
    with pytest.raises(BadOptionsError) as caught:
        _convert(dynamic, tmp_path, targets=(Target.TFLITE,))
    assert "image [1,?,?,3] (dimension 1, 2)" in caught.value.message
    assert "--shape image:" in caught.value.message
    result = _convert(dynamic, tmp_path, targets=(Target.TFLITE,), shapes=(("image", (1, 33, 33, 3)),))
    got = run_tflite(Path(result.artifact(Target.TFLITE).path), {"image": random_input((1, 33, 33, 3))})
    assert got["heatmap"].shape == (1, 9, 9, 17)


def test_saved_model_keeps_its_signature_keys(saved_model, tmp_path: Path, tf: Any) -> None:
    archive = tmp_path / "classifier.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for file in saved_model.path.rglob("*"):
            if file.is_file():
                zf.write(file, f"export/{file.relative_to(saved_model.path)}")
    result = _convert(archive, tmp_path, targets=(Target.TFLITE, Target.TFJS, Target.FROZEN_GRAPH))
    assert [check.status for check in result.validation] == ["passed"] * 3
    tflite = Path(result.artifact(Target.TFLITE).path)
    assert tflite.name == "classifier.tflite"
    image = random_input((2, 8, 8, 3))
    got = run_tflite(tflite, {"image": image})
    loaded = tf.saved_model.load(str(saved_model.path))
    expected = loaded.signatures["serving_default"](image=tf.constant(image))
    np.testing.assert_allclose(got["output_0"], expected["output_0"].numpy(), **TIGHT)
    frozen = run_frozen_graph(Path(result.artifact(Target.FROZEN_GRAPH).path), {"image": image}, ["output_0"])
    np.testing.assert_allclose(frozen["output_0"], expected["output_0"].numpy(), **TIGHT)
    manifest = _tfjs_manifest(result.artifact(Target.TFJS).path)
    assert list(manifest["signature"]["inputs"]) == ["image"]
    assert list(manifest["signature"]["outputs"]) == ["output_0"]


def test_keras_model_to_a_zipped_saved_model_and_a_frozen_graph(keras_v3, tmp_path: Path, tf: Any) -> None:
    import keras

    result = _convert(keras_v3.path, tmp_path, targets=(Target.SAVED_MODEL, Target.FROZEN_GRAPH))
    assert [check.status for check in result.validation] == ["passed", "passed"], result.validation
    with zipfile.ZipFile(result.artifact(Target.SAVED_MODEL).path) as zf:
        zf.extractall(tmp_path / "unzipped")
    (folder,) = (tmp_path / "unzipped").iterdir()
    image = random_input((3, 8, 8, 3))
    got = tf.saved_model.load(str(folder)).signatures["serving_default"](image=tf.constant(image))["probs"]
    expected = np.asarray(keras.saving.load_model(keras_v3.path, compile=False)(image, training=False))
    np.testing.assert_allclose(got.numpy(), expected, **TIGHT)
    # The frozen graph is fed and fetched by the Keras names, like the other artifacts.
    pb = Path(result.artifact(Target.FROZEN_GRAPH).path)
    np.testing.assert_allclose(run_frozen_graph(pb, {"image": image}, ["probs"])["probs"], expected, **TIGHT)


@pytest.mark.parametrize("fixture", ["keras_h5", "keras_v3"])
def test_keras_models_convert_with_layer_names(
    fixture: str, request: pytest.FixtureRequest, tmp_path: Path, tf: Any
) -> None:
    import keras

    facts = request.getfixturevalue(fixture)
    result = _convert(facts.path, tmp_path)
    image = random_input((1, 8, 8, 3))
    expected = np.asarray(keras.saving.load_model(facts.path, compile=False)(image, training=False))
    got = run_tflite(Path(result.artifact(Target.TFLITE).path), {"image": image})
    np.testing.assert_allclose(got["probs"], expected, **TIGHT)
    tfjs = Path(result.artifact(Target.TFJS).path)
    assert list(_tfjs_manifest(str(tfjs))["signature"]["outputs"]) == ["probs"]
    run = run_tfjs_model(tfjs, {"image": image}, ["probs"])
    np.testing.assert_allclose(run.outputs["probs"], expected, **TIGHT)
    # TF.js 4.22 cannot load the layers models tensorflowjs makes from Keras 3 files: refused up front.
    with pytest.raises(BadOptionsError, match="Keras 3"):
        _convert(facts.path, tmp_path / "layers", targets=(Target.TFJS_LAYERS,))


def test_real_keras2_emotion_model(fer_model: Path, tmp_path: Path, tf: Any) -> None:
    import keras

    result = _convert(fer_model, tmp_path)
    face = random_input((1, 64, 64, 1), seed=3)
    expected = np.asarray(keras.saving.load_model(fer_model, compile=False)(face, training=False))
    got = run_tflite(Path(result.artifact(Target.TFLITE).path), {"input_1": face})
    np.testing.assert_allclose(got["predictions"], expected, **TIGHT)
    assert got["predictions"].shape == (1, 7)
    graph_model = run_tfjs_model(Path(result.artifact(Target.TFJS).path), {"input_1": face}, ["predictions"])
    np.testing.assert_allclose(graph_model.outputs["predictions"], expected, **TIGHT)


def test_tfjs_layers_model_from_a_keras2_file(models_dir: Path, tmp_path: Path, tf: Any) -> None:
    import tf_keras

    facts = model_factory.write_tf_keras_h5(models_dir / "keras2_classifier.h5")
    result = _convert(facts.path, tmp_path, targets=(Target.TFJS_LAYERS,))
    layers_dir = Path(result.artifact(Target.TFJS_LAYERS).path)
    assert _tfjs_manifest(str(layers_dir))["format"] == "layers-model"
    image = random_input((1, 8, 8, 3))
    expected = tf_keras.models.load_model(facts.path, compile=False)(image, training=False).numpy()
    run = run_tfjs_model(layers_dir, {"image": image}, kind="layers")
    np.testing.assert_allclose(next(iter(run.outputs.values())), expected, **TIGHT)


def test_quantization_variants_shrink_weights(fer_model: Path, tmp_path: Path, tf: Any) -> None:
    sizes = {}
    for quant in (Quantization.NONE, Quantization.FLOAT16, Quantization.DYNAMIC):
        result = _convert(fer_model, tmp_path / quant.value, targets=(Target.TFLITE,), tflite_quantization=quant)
        path = Path(result.artifact(Target.TFLITE).path)
        sizes[quant] = path.stat().st_size
        out = run_tflite(path, {"input_1": random_input((1, 64, 64, 1))})
        assert np.isfinite(out["predictions"]).all()
    assert sizes[Quantization.FLOAT16] < 0.7 * sizes[Quantization.NONE]
    assert sizes[Quantization.DYNAMIC] < 0.5 * sizes[Quantization.NONE]
    result = _convert(fer_model, tmp_path / "uint8", targets=(Target.TFJS,), tfjs_quantization=Quantization.UINT8)
    manifest = _tfjs_manifest(result.artifact(Target.TFJS).path)
    dtypes = {w.get("quantization", {}).get("dtype") for g in manifest["weightsManifest"] for w in g["weights"]}
    assert "uint8" in dtypes


def test_select_tf_ops_fallback_is_recorded(tmp_path: Path, tf: Any) -> None:
    graph = tf.Graph()
    with graph.as_default():
        image = tf.compat.v1.placeholder(tf.float32, [1, 4, 4, 1], name="image")
        tf.identity(tf.image.resize(image, [8, 8], method="bicubic"), name="upscaled")
    path = tmp_path / "bicubic.pb"
    path.write_bytes(graph.as_graph_def().SerializeToString())
    result = _convert(path, tmp_path, targets=(Target.TFLITE,))
    assert result.needs_flex_delegate
    assert any("Flex delegate" in warning for warning in result.warnings)
    # TensorFlow's own interpreter links the Flex delegate, so the Flex model is run and checked.
    (check,) = result.validation
    assert check.status == "passed", check.message


def test_tfjs_check_catches_a_missing_shard(multihead_graph, tmp_path: Path, tf: Any) -> None:
    result = _convert(multihead_graph.path, tmp_path, targets=(Target.TFJS,))
    folder = Path(result.artifact(Target.TFJS).path)
    broken = tmp_path / "broken"
    shutil.copytree(folder, broken)
    shard = next(broken.glob("*.bin"))
    shard.write_bytes(shard.read_bytes()[:-4])
    assert "manifest declares" in check_tfjs_files(broken)[0]
    shard.unlink()
    assert check_tfjs_files(broken) == [f"weight shard {shard.name} is missing"]


def test_tfjs_graph_model_to_tflite_verified_against_tfjs(tmp_path: Path, tf: Any) -> None:
    """A real TF.js model (fused convolutions, Prelu, float16 weights) to TFLite, checked against TF.js itself."""
    facemesh = Path(__file__).resolve().parents[1] / "data" / "tfjs_facemesh"
    result = _convert(facemesh / "model.json", tmp_path, targets=(Target.TFLITE,))
    assert result.format.value == "tfjs-graph"
    tflite = result.artifact(Target.TFLITE)
    assert Path(tflite.path).name == "tfjs_facemesh.tflite"
    (check,) = result.validation
    assert check.status == "passed", check.message
    assert {o.name for o in check.outputs} == {"Identity", "Identity_1", "Identity_2"}
    assert all(o.max_rel_error < 1e-4 for o in check.outputs)
    got = run_tflite(Path(tflite.path), {"input_1": random_input((1, 192, 192, 3))})
    assert got["Identity_2"].shape == (1, 1404)


@pytest.fixture
def references_computed(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The sources whose reference outputs were computed (not shared) in this test, one entry each time."""
    from converter import conversion

    computed: list[Path] = []
    compute = conversion.Verification._compute_expected

    def counted(self: Any) -> Any:
        computed.append(self.source.path)
        return compute(self)

    monkeypatch.setattr(conversion.Verification, "_compute_expected", counted)
    monkeypatch.setattr(conversion, "_SHARED_REFERENCE", {})  # whatever an earlier test left
    return computed


def test_variants_of_one_model_share_its_reference_outputs(
    multihead_graph, tmp_path: Path, references_computed: list[Path]
) -> None:
    """--compare-quant converts one model several times in one process: the source runs once for all of them, and
    each variant is still checked against it."""
    for quant in (Quantization.NONE, Quantization.FLOAT16, Quantization.DYNAMIC):
        options = ConversionOptions(targets=(Target.TFLITE,), tflite_quantization=quant)
        result = convert_in_process(multihead_graph.path, tmp_path / quant.value, options, tmp_path / f"w{quant.value}")
        (check,) = result.validation
        assert check.status == "passed" and check.quantization is quant
    assert len(references_computed) == 1


def test_the_same_bytes_fetched_into_another_folder_share_the_reference(
    multihead_graph, tmp_path: Path, references_computed: list[Path]
) -> None:
    """A worker fetches each job's model from the storage into a folder of its own: the next job on the same
    upload reuses the reference outputs (keyed by content, not path); other bytes never do."""
    options = ConversionOptions(targets=(Target.TFLITE,))
    copies = []
    for job in ("job-1", "job-2"):
        copy = tmp_path / job / "model" / multihead_graph.path.name
        copy.parent.mkdir(parents=True)
        shutil.copyfile(multihead_graph.path, copy)
        copies.append(copy)
    for copy in copies:
        result = convert_in_process(copy, copy.parent.parent / "out", options, copy.parent.parent / "work")
        assert result.validation[0].status == "passed"
    assert len(references_computed) == 1

    changed = tmp_path / "job-3" / "model" / multihead_graph.path.name
    changed.parent.mkdir(parents=True)
    graph = GraphDef.FromString(copies[0].read_bytes())
    graph.node.add(name="unused", op="NoOp")  # other bytes, the same outputs: computed again all the same
    changed.write_bytes(graph.SerializeToString())
    convert_in_process(changed, tmp_path / "job-3" / "out", options, tmp_path / "job-3" / "work")
    assert len(references_computed) == 2


@pytest.mark.parametrize("quantization", [Quantization.UINT8, Quantization.UINT16])
def test_tfjs_uint8_of_a_detector_with_an_infinite_threshold_loads_and_passes(
    quantization: Quantization, tmp_path: Path
) -> None:
    """An NMS score threshold of -inf, quantized to 8 or 16 bits, gets a range of -Infinity, which TF.js's JSON
    reader refuses (the model did not load: "No number after minus sign in JSON"): such a weight stays float16."""
    model = model_factory.write_ssd(tmp_path / "ssd.pb")
    options = ConversionOptions(targets=(Target.TFJS,), tfjs_quantization=quantization)
    result = convert_in_process(model, tmp_path / "out", options, tmp_path / "work")

    (check,) = result.validation
    assert check.status == "passed", check.message
    (artifact,) = result.artifacts
    manifest = json.loads((Path(artifact.path) / "model.json").read_text())
    weights = [weight for group in manifest["weightsManifest"] for weight in group["weights"]]
    stored = {weight["name"]: weight.get("quantization", {}).get("dtype") for weight in weights}
    assert stored["non_max_suppression_with_scores/score_threshold"] == "float16"
    assert quantization.value in stored.values()  # the other weights are still quantized as asked

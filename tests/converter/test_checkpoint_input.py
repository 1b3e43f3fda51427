"""TF1 checkpoints (.meta + .index + .data) as input: found by content, inspected without TensorFlow,
frozen from the checkpoint's values for the chosen outputs, and converted to what the checkpoint computes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bench import model_factory
from bench.model_factory import ModelFacts
from converter import ConversionOptions, ModelFormat, Target, UnsupportedModelError, convert, inspect
from converter.checkpoint_input import checkpoint_reference, freeze_checkpoint
from converter.detect import detect_model
from converter.protos import MetaGraphDef
from converter.result import ConversionResult
from converter.tfjs_runtime import run_tfjs_model
from tests.converter.conftest import random_input, run_frozen_graph, run_tflite

ROOT = Path(__file__).resolve().parents[2]
TIGHT = {"rtol": 1e-4, "atol": 1e-5}
SEND_FILES = "send the .meta, .index and .data files together in one .zip"
BOTH = ConversionOptions(targets=(Target.TFLITE, Target.TFJS))
EVERY_TARGET = ConversionOptions(targets=(Target.TFLITE, Target.TFJS, Target.FROZEN_GRAPH, Target.SAVED_MODEL))


@pytest.fixture(scope="module")
def ref_checkpoint(models_dir: Path) -> ModelFacts:
    return model_factory.write_tf1_checkpoint(models_dir / "ckpt_ref.zip")


@pytest.fixture(scope="module")
def resource_checkpoint(models_dir: Path) -> ModelFacts:
    return model_factory.write_tf1_checkpoint(
        models_dir / "ckpt_resource.zip", resource_variables=True, renamed_keys=True, shards=2
    )


@pytest.fixture(scope="module")
def ref_conversion(ref_checkpoint: ModelFacts, tmp_path_factory: pytest.TempPathFactory) -> ConversionResult:
    """The zip, as a user sends it to the bot."""
    return convert(ref_checkpoint.path, tmp_path_factory.mktemp("ref_out"), EVERY_TARGET)


@pytest.fixture(scope="module")
def resource_conversion(resource_checkpoint: ModelFacts, tmp_path_factory: pytest.TempPathFactory) -> ConversionResult:
    """The .meta path, as a user gives it to the CLI with the other files beside it."""
    return convert(_meta(resource_checkpoint), tmp_path_factory.mktemp("resource_out"), BOTH)


def _meta(facts: ModelFacts) -> Path:
    return facts.extra_paths[0]


def _checkpoint_probs(tf: Any, meta: Path, image: np.ndarray) -> np.ndarray:
    """What the checkpoint computes, restored by TensorFlow's own Saver (the test may run it; convbot must not)."""
    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        saver = v1.train.import_meta_graph(str(meta), clear_devices=True)
    with v1.Session(graph=graph) as session:
        saver.restore(session, str(meta.with_suffix("")))
        return np.asarray(session.run("probs:0", {"x:0": image}))


def _refusal(path: Path) -> str:
    with pytest.raises(UnsupportedModelError) as caught:
        inspect(path)
    message = caught.value.message
    assert "\n" not in message and "Traceback" not in message
    return message


def _bundle(facts: ModelFacts, folder: Path, *, without: tuple[str, ...] = ()) -> Path:
    """A copy of the checkpoint's files in `folder`, leaving out the files whose names end with `without`."""
    folder.mkdir(parents=True)
    for file in facts.extra_paths:
        if not file.name.endswith(without):
            shutil.copy(file, folder / file.name)
    return folder


def _zipped(folder: Path) -> Path:
    archive = folder.with_suffix(".zip")
    with zipfile.ZipFile(archive, "w") as zf:
        for file in sorted(folder.rglob("*")):
            zf.write(file, f"{folder.name}/{file.relative_to(folder)}")
    return archive


def _check_passed(result: ConversionResult) -> None:
    assert result.format is ModelFormat.TF1_CHECKPOINT
    assert [s.name for s in result.inputs] == ["x"]  # not labels, which feeds only the loss
    assert [s.name for s in result.outputs] == ["probs"]
    assert {check.target for check in result.validation} == {artifact.target for artifact in result.artifacts}
    assert {Target.TFLITE, Target.TFJS} <= {artifact.target for artifact in result.artifacts}
    for check in result.validation:
        assert check.status == "passed", check.message


def test_inspect_suggests_the_softmax_and_x_without_importing_tensorflow(ref_checkpoint: ModelFacts) -> None:
    code = (
        "import sys, json\n"
        "from converter import inspect\n"
        f"summary = inspect({str(ref_checkpoint.path)!r})\n"
        "print(json.dumps({'tf': 'tensorflow' in sys.modules, 'summary': summary.to_dict()}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["tf"] is False
    summary = report["summary"]
    assert summary["format"] == "tf1-checkpoint"
    assert [s["name"] for s in summary["suggested_outputs"]] == ["probs"]
    assert [(s["name"], s["optional"]) for s in summary["suggested_inputs"]] == [("x", False), ("keep_prob", True)]
    assert summary["suggested_inputs"][0]["shape"] == [None, 8, 8, 3]
    # conv and fc weights and biases, and the global step
    assert summary["details"] == {"checkpoint": "model.ckpt-2", "variables": "5"}
    # The training graph holds the Saver's and the optimizer's ops; only what the output needs is judged.
    names = {node["name"] for node in summary["nodes"]}
    assert {"labels", "save/RestoreV2", "GradientDescent"} <= names
    assert summary["readiness"]["tflite_builtin_ok"] and summary["readiness"]["tfjs_ok"]
    assert "VariableV2" not in summary["op_histogram"] and "ApplyGradientDescent" not in summary["op_histogram"]


def test_ref_variable_checkpoint_zip_converts_to_what_the_checkpoint_computes(
    ref_checkpoint: ModelFacts, ref_conversion: ConversionResult, tf: Any, tmp_path: Path
) -> None:
    _check_passed(ref_conversion)
    tflite = Path(ref_conversion.artifact(Target.TFLITE).path)
    assert tflite.name == "ckpt_ref.tflite"
    image = random_input((1, 8, 8, 3), seed=4)
    expected = _checkpoint_probs(tf, _meta(ref_checkpoint), image)
    np.testing.assert_allclose(run_tflite(tflite, {"x": image})["probs"], expected, **TIGHT)
    run = run_tfjs_model(Path(ref_conversion.artifact(Target.TFJS).path), {"x": image}, ["probs"])
    np.testing.assert_allclose(run.outputs["probs"], expected, **TIGHT)
    # The frozen graph and the SavedModel are plain TensorFlow models computing the same.
    pb = Path(ref_conversion.artifact(Target.FROZEN_GRAPH).path)
    assert pb.name == "ckpt_ref.pb" and inspect(pb).format is ModelFormat.FROZEN_GRAPH
    np.testing.assert_allclose(run_frozen_graph(pb, {"x": image}, ["probs"])["probs"], expected, **TIGHT)
    with zipfile.ZipFile(ref_conversion.artifact(Target.SAVED_MODEL).path) as zf:
        zf.extractall(tmp_path / "saved")
    serving = tf.saved_model.load(str(tmp_path / "saved" / "ckpt_ref_saved_model")).signatures["serving_default"]
    np.testing.assert_allclose(serving(x=tf.constant(image))["probs"].numpy(), expected, **TIGHT)


def test_resource_variables_under_other_keys_in_two_shards_convert_from_the_meta_path(
    resource_checkpoint: ModelFacts, resource_conversion: ConversionResult, tf: Any
) -> None:
    assert [p.name for p in resource_checkpoint.extra_paths if ".data-" in p.name] == [
        "model.ckpt-2.data-00000-of-00002",
        "model.ckpt-2.data-00001-of-00002",
    ]
    _check_passed(resource_conversion)
    tflite = Path(resource_conversion.artifact(Target.TFLITE).path)
    assert tflite.name == "model.ckpt-2.tflite"
    image = random_input((1, 8, 8, 3), seed=5)
    expected = _checkpoint_probs(tf, _meta(resource_checkpoint), image)
    np.testing.assert_allclose(run_tflite(tflite, {"x": image})["probs"], expected, **TIGHT)


def test_missing_or_damaged_checkpoint_files_are_named(
    ref_checkpoint: ModelFacts, resource_checkpoint: ModelFacts, tmp_path: Path
) -> None:
    no_index = _zipped(_bundle(ref_checkpoint, tmp_path / "no_index", without=(".index",)))
    assert _refusal(no_index) == f"the TF1 checkpoint's model.ckpt-2.index is missing; {SEND_FILES}"

    no_shard = _zipped(_bundle(resource_checkpoint, tmp_path / "no_shard", without=("-00001-of-00002",)))
    assert _refusal(no_shard) == f"the TF1 checkpoint's model.ckpt-2.data-00001-of-00002 is missing; {SEND_FILES}"

    lone = _bundle(ref_checkpoint, tmp_path / "lone", without=(".index", ".data-00000-of-00001", "checkpoint"))
    lone_message = f"model.ckpt-2.meta is a TF1 checkpoint's .meta graph without its weights; {SEND_FILES}"
    assert _refusal(lone / "model.ckpt-2.meta") == lone_message  # given by path, as in the CLI
    assert _refusal(_zipped(lone)) == lone_message

    weights_only = _zipped(_bundle(ref_checkpoint, tmp_path / "weights_only", without=(".meta",)))
    assert _refusal(weights_only).startswith(
        f"the archive holds checkpoint weights (model.ckpt-2.index) but no .meta graph; {SEND_FILES}"
    )

    damaged = _bundle(ref_checkpoint, tmp_path / "damaged")
    (damaged / "model.ckpt-2.meta").write_bytes(b"not a graph at all" * 10)
    assert _refusal(_zipped(damaged)) == "the TF1 checkpoint's graph model.ckpt-2.meta is damaged and cannot be read"


def test_a_meta_graph_is_told_apart_from_a_frozen_graph(
    ref_checkpoint: ModelFacts, tf1_graph: ModelFacts, tmp_path: Path
) -> None:
    meta = _meta(ref_checkpoint)
    source = detect_model(meta, tmp_path / "w1")
    assert (source.format, source.path) == (ModelFormat.TF1_CHECKPOINT, meta)
    assert source.file_size == sum(p.stat().st_size for p in ref_checkpoint.extra_paths if p.name != "checkpoint")
    assert detect_model(tf1_graph.path, tmp_path / "w2").format is ModelFormat.FROZEN_GRAPH
    renamed = tmp_path / "graph.pb"  # a .meta sent alone, under a frozen graph's name
    shutil.copy(meta, renamed)
    assert _refusal(renamed) == f"this is a TF1 checkpoint's .meta graph without its weights; {SEND_FILES}"


def test_the_checkpoint_file_chooses_by_base_name_else_the_latest_step(
    ref_checkpoint: ModelFacts, tmp_path: Path
) -> None:
    folder = _bundle(ref_checkpoint, tmp_path / "run")
    for step in ("1", "10"):
        for file in ref_checkpoint.extra_paths[:-1]:
            shutil.copy(file, folder / file.name.replace("model.ckpt-2", f"model.ckpt-{step}"))
    outside = tmp_path / "elsewhere"
    _bundle(ref_checkpoint, outside)
    state = folder / "checkpoint"

    def chosen() -> Path:
        return detect_model(folder, tmp_path / "unused").path

    # Written on Windows: only the base name counts, looked up beside the `checkpoint` file.
    state.write_text('model_checkpoint_path: "C:\\\\train\\\\run\\\\model.ckpt-1"\n')
    assert chosen() == folder / "model.ckpt-1.meta"
    # A path out of the folder is never followed, though the files are there.
    state.write_text(f'model_checkpoint_path: "{outside}/model.ckpt-2"\n')
    assert chosen() == folder / "model.ckpt-2.meta"
    # A name with no files here: the latest step, as without a `checkpoint` file.
    state.write_text('model_checkpoint_path: "model.ckpt-7"\n')
    assert chosen() == folder / "model.ckpt-10.meta"
    state.unlink()
    assert chosen() == folder / "model.ckpt-10.meta"


def _edited_meta(facts: ModelFacts, folder: Path, edit: Any) -> Path:
    """A copy of the checkpoint whose .meta graph `edit` changed (in its nodes, by name)."""
    _bundle(facts, folder)
    meta = folder / _meta(facts).name
    meta_graph = MetaGraphDef()
    meta_graph.ParseFromString(meta.read_bytes())
    edit({node.name: node for node in meta_graph.graph_def.node})
    meta.write_bytes(meta_graph.SerializeToString())
    return meta


def test_freezing_reads_values_as_data_and_names_what_does_not_fit(
    ref_checkpoint: ModelFacts, tmp_path: Path, tf: Any
) -> None:
    frozen = freeze_checkpoint(_meta(ref_checkpoint), ["probs"])
    ops = {node.name: node.op for node in frozen.node}
    assert ops["conv/weights"] == "Const" and ops["x"] == "Placeholder"
    assert not {"labels", "loss", "GradientDescent", "save/RestoreV2"} & set(ops)
    assert not [node.name for node in frozen.node if node.device or "_class" in node.attr]

    def rename_key(nodes: dict[str, Any]) -> None:
        names = nodes["save/RestoreV2/tensor_names"].attr["value"].tensor.string_val
        names[list(names).index(b"fc/biases")] = b"fc/bias_renamed"

    meta = _edited_meta(ref_checkpoint, tmp_path / "renamed", rename_key)
    with pytest.raises(UnsupportedModelError, match=r"^the checkpoint has no value for variable fc/biases \(saved as "):
        freeze_checkpoint(meta, ["probs"])

    def widen(nodes: dict[str, Any]) -> None:
        nodes["conv/weights"].attr["shape"].shape.dim[3].size = 5

    meta = _edited_meta(ref_checkpoint, tmp_path / "widened", widen)
    with pytest.raises(UnsupportedModelError) as caught:
        freeze_checkpoint(meta, ["probs"])
    expected = "variable conv/weights has shape [3, 3, 3, 4] in the checkpoint but [3, 3, 3, 5] in the graph"
    assert caught.value.message == expected


@pytest.mark.parametrize("which", ["ref_checkpoint", "resource_checkpoint"])
def test_verification_reference_is_the_unfrozen_checkpoint_graph(
    which: str, request: pytest.FixtureRequest, tf: Any
) -> None:
    """Artifacts are checked against the training graph with the checkpoint's values, not against the
    frozen graph convbot made: a mistake in freezing shows up as a failed check."""
    facts = request.getfixturevalue(which)
    image = random_input((2, 8, 8, 3), seed=6)
    got = checkpoint_reference(_meta(facts), ["probs"])({"x": image})["probs"]
    np.testing.assert_allclose(got, _checkpoint_probs(tf, _meta(facts), image), **TIGHT)


def test_a_saved_models_variables_folder_alone_is_not_taken_for_a_checkpoint(saved_model, tmp_path: Path) -> None:
    folder = tmp_path / "sm"
    shutil.copytree(saved_model.path / "variables", folder / "variables")
    assert _refusal(_zipped(folder)).startswith("this is a SavedModel's variables/ folder without its saved_model.pb")

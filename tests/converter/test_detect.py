"""Every kind of upload is recognised by content, and everything else gets a specific answer."""

from __future__ import annotations

import io
import shutil
import tarfile
import zipfile
from pathlib import Path

import pytest

from converter import ModelFormat, UnsupportedModelError, inspect
from converter.archive import ArchiveLimits
from converter.detect import detect_model


def _refusal(path: Path, tmp_path: Path, limits: ArchiveLimits = ArchiveLimits()) -> str:
    with pytest.raises(UnsupportedModelError) as caught:
        inspect(path, limits=limits)
    message = caught.value.message
    assert "\n" not in message and "Traceback" not in message
    return message


def _zip_folder(folder: Path, archive: Path, prefix: str = "") -> Path:
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for file in sorted(folder.rglob("*")):
            if file.is_file():
                zf.write(file, f"{prefix}{file.relative_to(folder)}")
    return archive


def test_frozen_graph_binary_and_text_detected_whatever_the_name(tf1_graph, tmp_path: Path) -> None:
    renamed = tmp_path / "model.weird"
    shutil.copy(tf1_graph.path, renamed)
    assert detect_model(renamed, tmp_path / "w").format is ModelFormat.FROZEN_GRAPH
    text = tmp_path / "graph.bin"
    shutil.copy(tf1_graph.extra_paths[0], text)
    assert detect_model(text, tmp_path / "w2").format is ModelFormat.FROZEN_GRAPH_TEXT


def test_saved_model_folder_zip_and_tgz_found_at_any_depth(saved_model, tmp_path: Path) -> None:
    assert inspect(saved_model.path).format is ModelFormat.SAVED_MODEL
    deep_zip = _zip_folder(saved_model.path, tmp_path / "mnet.zip", prefix="export/1/")
    summary = inspect(deep_zip)
    assert summary.format is ModelFormat.SAVED_MODEL
    assert [s.key for s in summary.suggested_inputs] == ["image"]
    tgz = tmp_path / "mnet.tgz"
    with tarfile.open(tgz, "w:gz") as tar:
        tar.add(saved_model.path, arcname="mnet")
    assert inspect(tgz).format is ModelFormat.SAVED_MODEL


def test_keras_files_detected(keras_h5, keras_v3, fer_model: Path, tmp_path: Path) -> None:
    assert inspect(keras_h5.path).format is ModelFormat.KERAS_H5
    assert inspect(keras_v3.path).format is ModelFormat.KERAS_V3
    fer = inspect(fer_model)  # saved by Keras 2.0.5 in 2021
    assert fer.format is ModelFormat.KERAS_H5
    assert [(s.name, s.shape) for s in fer.suggested_inputs] == [("input_1", (None, 64, 64, 1))]
    assert [s.name for s in fer.suggested_outputs] == ["predictions"]


def test_weights_only_hdf5_refused(models_dir: Path, tmp_path: Path) -> None:
    from bench import model_factory

    for facts in (
        model_factory.write_weights_only_h5(models_dir / "w.weights.h5"),
        model_factory.write_tf_keras_weights_h5(models_dir / "w_keras2.h5"),
    ):
        assert "weights only" in _refusal(facts.path, tmp_path)
        assert "model.save(" in _refusal(facts.path, tmp_path)


def test_lambda_layers_refused_before_loading(models_dir: Path, tmp_path: Path) -> None:
    from bench import model_factory

    facts = model_factory.write_keras_with_lambda(models_dir / "lam.keras", models_dir / "lam.h5")
    for path in (facts.path, *facts.extra_paths):
        message = _refusal(path, tmp_path)
        assert "Lambda" in message and "does not run code" in message


def test_lone_saved_model_pb_refused(saved_model, tmp_path: Path) -> None:
    lone = tmp_path / "frozen_graph.pb"  # sent as if it were a frozen graph
    shutil.copy(saved_model.path / "saved_model.pb", lone)
    message = _refusal(lone, tmp_path)
    assert "saved_model.pb" in message and "variables/" in message
    folder = tmp_path / "no_variables"
    folder.mkdir()
    shutil.copy(saved_model.path / "saved_model.pb", folder / "saved_model.pb")
    assert "variables/" in _refusal(_zip_folder(folder, tmp_path / "sm.zip"), tmp_path)


def test_tfjs_graph_models_are_detected_and_a_missing_shard_is_named(tmp_path: Path) -> None:
    source = Path(__file__).resolve().parents[1] / "data" / "tfjs_emotion"
    assert detect_model(source / "model.json", tmp_path / "w1").format is ModelFormat.TFJS_GRAPH
    summary = inspect(_zip_folder(source, tmp_path / "emotion.zip", prefix="emotion/"))
    assert summary.format is ModelFormat.TFJS_GRAPH
    assert [(s.name, s.shape) for s in summary.suggested_inputs] == [("input_1", (None, 64, 64, 1))]
    assert summary.readiness is not None and summary.readiness.tflite_builtin_ok  # fused ops count as their parts
    lone = tmp_path / "lone"
    lone.mkdir()
    shutil.copy(source / "model.json", lone / "model.json")
    message = _refusal(_zip_folder(lone, tmp_path / "no_shards.zip"), tmp_path)
    assert message.startswith("the TF.js weight shard emotion.bin named in model.json is missing")
    layers = tmp_path / "layers.json"
    layers.write_text(
        '{"format": "layers-model", "modelTopology": {"class_name": "Sequential"}, "weightsManifest": []}'
    )
    assert "layers model" in _refusal(layers, tmp_path)


def test_a_tfjs_model_json_named_otherwise_is_found_by_content(tmp_path: Path) -> None:
    """TF.js tools name the JSON freely (blazeface.json); a config.json beside it is not taken for it."""
    source = Path(__file__).resolve().parents[1] / "data" / "tfjs_emotion"
    folder = tmp_path / "web"
    folder.mkdir()
    shutil.copy(source / "model.json", folder / "emotion_graph.json")
    shutil.copy(source / "emotion.bin", folder / "emotion.bin")
    (folder / "config.json").write_text('{"labels": ["angry", "happy"]}')
    summary = inspect(_zip_folder(folder, tmp_path / "web.zip", prefix="web/"))
    assert summary.format is ModelFormat.TFJS_GRAPH and summary.suggested_inputs[0].name == "input_1"
    # The CLI given the JSON or its folder: the user's folder is read, never written to.
    before = sorted(p.name for p in folder.iterdir())
    for given in (folder / "emotion_graph.json", folder):
        detected = detect_model(given, tmp_path / f"work-{given.name}")
        assert detected.format is ModelFormat.TFJS_GRAPH and (detected.path / "model.json").is_file()
    assert sorted(p.name for p in folder.iterdir()) == before
    (folder / "emotion.bin").unlink()
    assert _refusal(folder / "emotion_graph.json", tmp_path).startswith(
        "the TF.js weight shard emotion.bin named in emotion_graph.json is missing"
    )


def test_tflite_onnx_empty_truncated_random_refused(tf1_graph, tmp_path: Path) -> None:
    tflite = tmp_path / "model.pb"
    tflite.write_bytes(b"\x1c\x00\x00\x00TFL3" + bytes(200))
    assert "already a TensorFlow Lite model" in _refusal(tflite, tmp_path)

    # An ONNX ModelProto: ir_version=8, producer_name, graph {...}, opset_import {...}
    graph = b"\x0a\x04\x08\x01\x12\x00"
    onnx = tmp_path / "model.pb"
    onnx.write_bytes(b"\x08\x08" + b"\x12\x07pytorch" + b"\x3a" + bytes([len(graph)]) + graph + b"\x42\x02\x10\x0d")
    assert "ONNX" in _refusal(onnx, tmp_path)

    empty = tmp_path / "empty.pb"
    empty.write_bytes(b"")
    assert _refusal(empty, tmp_path) == "the file is empty"

    truncated = tmp_path / "truncated.pb"
    truncated.write_bytes(tf1_graph.path.read_bytes()[:3000])
    assert "truncated" in _refusal(truncated, tmp_path)

    noise = tmp_path / "noise.pb"
    noise.write_bytes(bytes((i * 7919 + 13) % 256 for i in range(50_000)))
    assert "not a model convbot can read" in _refusal(noise, tmp_path)

    text = tmp_path / "notes.pb"
    text.write_text("hello, this is not a graph\n")
    assert "text file" in _refusal(text, tmp_path)


def test_truncated_hdf5_refused(keras_h5, tmp_path: Path) -> None:
    cut = tmp_path / "cut.h5"
    cut.write_bytes(keras_h5.path.read_bytes()[:4000])
    assert "damaged or truncated" in _refusal(cut, tmp_path)


def test_archive_bomb_and_traversal_refused_through_inspect(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("model/saved_model.pb", bytes(5_000_000))
    assert "20 times" in _refusal(bomb, tmp_path)

    evil = tmp_path / "evil.tar.gz"
    with tarfile.open(evil, "w:gz") as tar:
        info = tarfile.TarInfo("../../etc/cron.d/x")
        payload = b"* * * * * root true\n"
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    assert "outside" in _refusal(evil, tmp_path)
    assert not (tmp_path.parent / "etc").exists()


def test_archive_with_one_graph_file_inside(multihead_graph, tmp_path: Path) -> None:
    archive = tmp_path / "posenet.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(multihead_graph.path, "posenet/pose.pb")
    summary = inspect(archive)
    assert summary.format is ModelFormat.FROZEN_GRAPH
    assert [s.name for s in summary.suggested_outputs] == list(multihead_graph.outputs)

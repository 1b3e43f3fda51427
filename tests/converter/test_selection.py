"""Detector heads (TopK over a heatmap, NonMaxSuppression) are verified with ties in mind: two
correct runtimes may pick different elements among near-equal scores, a broken artifact still fails."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from converter import ConversionOptions, Target
from converter.conversion import convert_in_process
from converter.formats import ModelFormat
from converter.selection import selection_heads, with_selection_tensors
from converter.summary import TensorSpec
from converter.verify import make_inputs, reference_runner, verify_artifacts

TIES = "rows chose differently among tied scores"
SIZE, CLASSES, K = 16, 2, 20
SSD_SIZE, SSD_MAX = 8, 10


def write_centernet(tf: Any, path: Path, box_gain: float = 1.0) -> Path:
    """Heatmap conv -> sigmoid -> 3x3 MaxPool peaks -> TopKV2 -> boxes gathered -> [K, 6] detections.

    The large heatmap bias saturates the sigmoid as trained detectors do on background: many
    scores land within a float32 step of each other, and the engines order them differently.
    """
    rng = np.random.default_rng(1)
    tf1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        image = tf1.placeholder(tf.float32, [1, SIZE, SIZE, 3], name="image")
        features = tf.nn.relu(tf.nn.conv2d(image, rng.normal(0, 0.5, (3, 3, 3, 8)).astype(np.float32), 1, "SAME"))
        logits = tf.nn.conv2d(features, rng.normal(0, 0.5, (3, 3, 8, CLASSES)).astype(np.float32), 1, "SAME")
        heat = tf.sigmoid(logits + 14.0, name="heatmap")
        peaks = heat * tf.cast(tf.equal(heat, tf.nn.max_pool2d(heat, 3, 1, "SAME")), tf.float32)
        scores = tf.reshape(peaks, [1, SIZE * SIZE * CLASSES], name="scores")
        values, indices = tf.math.top_k(scores, k=K, name="topk")
        box_weights = (box_gain * rng.normal(0, 0.5, (3, 3, 8, 4))).astype(np.float32)
        boxes = tf.reshape(tf.nn.conv2d(features, box_weights, 1, "SAME"), [SIZE * SIZE, 4], name="box_head")
        picked = tf.gather(boxes, tf.math.floordiv(indices[0], CLASSES))
        classes = tf.cast(tf.math.floormod(indices[0], CLASSES), tf.float32)
        tf.concat([picked, values[0][:, None], classes[:, None]], axis=1, name="detections")
    path.write_bytes(graph.as_graph_def().SerializeToString())
    return path


def write_ssd(tf: Any, path: Path) -> Path:
    """A uint8 image -> boxes and scores -> NonMaxSuppressionV5 -> boxes gathered, padded to SSD_MAX."""
    rng = np.random.default_rng(2)
    tf1 = tf.compat.v1
    anchors = SSD_SIZE * SSD_SIZE
    graph = tf.Graph()
    with graph.as_default():
        image = tf1.placeholder(tf.uint8, [1, SSD_SIZE, SSD_SIZE, 3], name="image")
        pixels = tf.cast(image, tf.float32) / 255.0
        raw = tf.nn.conv2d(pixels, rng.normal(0, 0.5, (3, 3, 3, 4)).astype(np.float32), 1, "SAME")
        offsets = 0.1 + 0.05 * tf.sigmoid(tf.reshape(raw, [anchors, 4]))
        centers = rng.random((anchors, 2)).astype(np.float32)
        boxes = tf.concat([centers - offsets[:, :2], centers + offsets[:, 2:]], 1, name="boxes")
        logits = tf.nn.conv2d(pixels, rng.normal(0, 0.5, (3, 3, 3, 1)).astype(np.float32), 1, "SAME")
        scores = tf.reshape(tf.sigmoid(logits), [anchors], name="box_scores")
        chosen, chosen_scores = tf.image.non_max_suppression_with_scores(boxes, scores, SSD_MAX, iou_threshold=0.5)
        count = tf.shape(chosen)[0]
        tf.pad(tf.gather(boxes, chosen), [[0, SSD_MAX - count], [0, 0]], name="detection_boxes")
        tf.pad(chosen_scores, [[0, SSD_MAX - count]], name="detection_scores")
        tf.cast(count, tf.float32, name="num_detections")
    path.write_bytes(graph.as_graph_def().SerializeToString())
    return path


@pytest.fixture(scope="module")
def centernet(tmp_path_factory: pytest.TempPathFactory, tf: Any) -> Any:
    tmp = tmp_path_factory.mktemp("centernet")
    source = write_centernet(tf, tmp / "centernet.pb")
    options = ConversionOptions(outputs=("detections",))
    return source, convert_in_process(source, tmp / "out", options, tmp / "work")


def test_centernet_detector_passes_where_topk_picks_among_ties(centernet) -> None:
    _, result = centernet
    checks = {check.target: check for check in result.validation}
    assert set(checks) == {Target.TFLITE, Target.TFJS}
    for check in checks.values():
        assert check.status == "passed", check.message
        detections = next(o for o in check.outputs if o.name == "detections")
        assert detections.max_rel_error <= 1e-4
        # What feeds the TopK and the gather was compared in the artifact itself.
        assert {o.name for o in check.outputs} >= {"scores:0", "box_head:0"}
    # The TFLite interpreter orders the saturated scores differently on the random inputs.
    assert checks[Target.TFLITE].message.startswith("passed: detections: ")
    assert TIES in checks[Target.TFLITE].message


def test_centernet_as_a_tfjs_model_converts_to_tflite_and_tfjs(centernet, tmp_path: Path) -> None:
    """The TF.js model of the detector as a source: grappler fused `conv + 14.0` into a _FusedConv2D whose bias is
    a scalar, which convbot's rebuild once turned into a BiasAdd TensorFlow refuses ("must be rank 1")."""
    _, result = centernet
    tfjs_dir = Path(result.artifact(Target.TFJS).path)
    options = ConversionOptions(targets=(Target.TFLITE, Target.TFJS), outputs=("detections",))
    again = convert_in_process(tfjs_dir, tmp_path / "again", options, tmp_path / "work")
    for check in again.validation:
        assert check.status == "passed", (check.target, check.message)
        assert {o.name for o in check.outputs} >= {"detections", "scores:0", "box_head:0"}


def test_ssd_nms_head_passes_and_tfjs_casts_read_back_as_floats(tmp_path: Path, tf: Any) -> None:
    source = write_ssd(tf, tmp_path / "ssd.pb")
    outputs = ("detection_boxes", "detection_scores", "num_detections")
    result = convert_in_process(source, tmp_path / "out", ConversionOptions(outputs=outputs), tmp_path / "work")
    checks = {check.target: check for check in result.validation}
    for check in checks.values():
        assert check.status == "passed", check.message
        # num_detections is Cast(int32 -> float32): TF.js keeps the int32 array under a float32 label.
        assert next(o for o in check.outputs if o.name == "num_detections").max_abs_error == 0.0
    # All-ones makes every score equal: TFLite's NMS keeps other, equally valid boxes.
    assert TIES in checks[Target.TFLITE].message

    # The TF.js model as a source: the reference (TF.js) gives the scores and boxes before NMS too.
    tfjs_dir = Path(result.artifact(Target.TFJS).path)
    options = ConversionOptions(targets=(Target.TFLITE,), outputs=outputs[:2])
    (check,) = convert_in_process(tfjs_dir, tmp_path / "again", options, tmp_path / "work2").validation
    assert check.status == "passed", check.message
    assert {o.name for o in check.outputs} >= {"boxes:0", "box_scores:0"}
    assert TIES in check.message


def test_detector_with_a_perturbed_box_head_fails(centernet, tmp_path: Path, tf: Any) -> None:
    """The artifacts against a reference whose box head differs by 5%: ties excuse nothing there."""
    _, result = centernet
    changed = write_centernet(tf, tmp_path / "changed.pb", box_gain=1.05)
    heads = selection_heads(changed, ["detections"])
    reference = with_selection_tensors(
        lambda keys: reference_runner(ModelFormat.FROZEN_GRAPH, changed, keys), ["detections"], heads
    )
    shape = (1, SIZE, SIZE, 3)
    inputs = make_inputs([TensorSpec("image", "float32", shape)], {"image": shape})
    for check in verify_artifacts(result.artifacts, ["detections"], inputs, reference, selections=heads):
        assert check.status == "failed", (check.target, check.message)
        failed = {o.name for o in check.outputs if not o.passed}
        assert failed == {"box_head:0", "detections"}, (check.target, check.outputs)

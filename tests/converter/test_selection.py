"""Detector heads (TopK over a heatmap, NonMaxSuppression) are verified with ties in mind: two
correct runtimes may pick different elements among near-equal scores, a broken artifact still fails."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bench.model_factory import DETECTOR_SIZE as SIZE
from bench.model_factory import write_centernet, write_ssd
from converter import ConversionOptions, Quantization, Target
from converter.conversion import convert_in_process
from converter.formats import ModelFormat
from converter.selection import selection_heads, with_selection_tensors
from converter.summary import TensorSpec
from converter.verify import make_inputs, reference_runner, verify_artifacts
from tests.converter.conftest import run_tflite

TIES = "rows chose differently among tied scores"


@pytest.fixture(scope="module")
def centernet(tmp_path_factory: pytest.TempPathFactory, tf: Any) -> Any:
    tmp = tmp_path_factory.mktemp("centernet")
    source = write_centernet(tmp / "centernet.pb")
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
    source = write_ssd(tmp_path / "ssd.pb")
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
    changed = write_centernet(tmp_path / "changed.pb", box_gain=1.05)
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


# Heads whose scores tie: the columns of each group of the weights are one float16 value nudged by 1e-5 per
# column, so the source scores a later column a hair higher while a float16 artifact, whose weights round back
# to that value, scores them exactly equal and picks the first. Both are right; a 5% change is not.
NUDGE = 1e-5


def _tied_weights(groups: int, size: int, gain: float = 1.0) -> Any:
    import numpy as np

    base = np.float16(np.random.default_rng(4).uniform(0.25, 1.0, (4, groups))).astype(np.float32)
    columns = [base[:, group] * (1 + NUDGE * j) for group in range(groups) for j in range(size)]
    weights = np.stack(columns, axis=1)
    weights[:, 1] *= gain  # gain 1.05: a head that really differs
    return weights


def _write_head(path: Path, tf: Any, groups: int, size: int, heads: Any, gain: float = 1.0) -> Path:
    """x [1, 4] (all ones, or random) -> scores [1, groups * size] -> `heads(tf, scores)`."""
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [1, 4], name="x")
        heads(tf, tf.matmul(tf.abs(x), _tied_weights(groups, size, gain), name="scores"))
    path.write_bytes(graph.as_graph_def().SerializeToString())
    return path


def _classifier(tf: Any, scores: Any) -> None:
    tf.identity(tf.argmax(scores, axis=1), name="best")


def _sorter(tf: Any, scores: Any) -> None:
    tf.identity(tf.argsort(scores, direction="DESCENDING"), name="order")
    tf.identity(tf.sort(scores), name="ranked")


def _combined_nms(tf: Any, scores: Any) -> None:
    """Six boxes apart from each other, two classes: class 0's six scores tie."""
    boxes = [[[0.2 * i, 0.0, 0.2 * i + 0.1, 0.1]] for i in range(6)]
    per_box = tf.reshape(scores, [1, 2, 6])
    boxes, scores, classes, count = tf.image.combined_non_max_suppression(
        tf.constant([boxes], tf.float32), tf.transpose(per_box, [0, 2, 1], name="box_scores"), 6, 8, 0.5, 0.0
    )
    tf.identity(boxes, name="detection_boxes")
    tf.identity(scores, name="detection_scores")
    tf.identity(classes, name="detection_classes")
    tf.identity(count, name="num_detections")


def _convert(source: Path, tmp: Path, outputs: tuple[str, ...], targets: tuple[Target, ...]) -> Any:
    options = ConversionOptions(
        targets=targets,
        outputs=outputs,
        tflite_quantization=Quantization.FLOAT16,
        tfjs_quantization=Quantization.FLOAT16,
    )
    return convert_in_process(source, tmp / "out", options, tmp / "work")


def _against_a_changed_head(result: Any, changed: Path, outputs: list[str]) -> Any:
    """The artifacts of `result` verified against the head `changed` (one column 5% higher)."""
    heads = selection_heads(changed, outputs)
    reference = with_selection_tensors(
        lambda keys: reference_runner(ModelFormat.FROZEN_GRAPH, changed, keys), outputs, heads
    )
    inputs = make_inputs([TensorSpec("x", "float32", (1, 4))], {"x": (1, 4)})
    return verify_artifacts(result.artifacts, outputs, inputs, reference, selections=heads)


def test_argmax_over_tied_logits_passes_and_a_changed_head_fails(tmp_path: Path, tf: Any) -> None:
    source = _write_head(tmp_path / "classifier.pb", tf, 1, 4, _classifier)
    result = _convert(source, tmp_path, ("best",), (Target.TFLITE, Target.TFJS))
    assert {check.target for check in result.validation} == {Target.TFLITE, Target.TFJS}
    for check in result.validation:
        assert check.status == "passed", (check.target, check.message)
        assert check.message.startswith(f"passed: best: 1 of 1 {TIES}"), check.message

    changed = _write_head(tmp_path / "changed.pb", tf, 1, 4, _classifier, gain=1.05)
    for check in _against_a_changed_head(result, changed, ["best"]):
        assert check.status == "failed", (check.target, check.message)
        assert not next(o for o in check.outputs if o.name == "best").passed

    # An artifact that hides its logits: its index must point at a logit the source scores within the tolerance.
    ones = {"x": np.ones((1, 4), np.float32)}
    got = run_tflite(Path(result.artifact(Target.TFLITE).path), ones)["best"]
    for reference, passes in ((source, True), (changed, False)):
        heads = selection_heads(reference, ["best"])
        assert heads is not None
        wanted = with_selection_tensors(
            lambda keys, path=reference: reference_runner(ModelFormat.FROZEN_GRAPH, path, keys), ["best"], heads
        )(ones)
        assert got.tolist() != wanted["best"].tolist()  # the float16 artifact picked another of the tied logits
        (check,) = heads.check("best", got, wanted, {}, 1e-2)
        assert check.passed is passes, check


def test_sort_and_argsort_over_tied_scores_pass_and_a_changed_head_fails(tmp_path: Path, tf: Any) -> None:
    """tf.sort and tf.argsort are TopKV2 with k the full length: [1, 8] indices are rows of one element."""
    source = _write_head(tmp_path / "sorter.pb", tf, 2, 4, _sorter)
    result = _convert(source, tmp_path, ("order", "ranked"), (Target.TFLITE, Target.TFJS))
    for check in result.validation:
        assert check.status == "passed", (check.target, check.message)
        outputs = {o.name: o for o in check.outputs}
        assert outputs["ranked"].max_rel_error <= 1e-4  # the values sorted agree whatever the order of ties
        assert outputs["order"].note.startswith(f"8 of 8 {TIES}"), outputs["order"].note

    changed = _write_head(tmp_path / "changed.pb", tf, 2, 4, _sorter, gain=1.05)
    for check in _against_a_changed_head(result, changed, ["order", "ranked"]):
        assert check.status == "failed", (check.target, check.message)
        assert not {o.name: o for o in check.outputs}["order"].passed


def test_combined_nms_over_tied_scores_passes_on_flex_and_a_changed_head_fails(tmp_path: Path, tf: Any) -> None:
    """CombinedNonMaxSuppression: TFLite runs it through the Flex delegate; TF.js has no such op."""
    outputs = ("detection_boxes", "detection_scores", "detection_classes", "num_detections")
    source = _write_head(tmp_path / "detector.pb", tf, 2, 6, _combined_nms)
    result = _convert(source, tmp_path, outputs, (Target.TFLITE,))
    assert result.needs_flex_delegate
    (check,) = result.validation
    assert check.status == "passed", check.message
    checked = {o.name: o for o in check.outputs}
    assert TIES in checked["detection_boxes"].note, checked["detection_boxes"]
    assert checked["num_detections"].max_abs_error == 0.0
    assert "box_scores:0" in checked  # the scores feeding the NMS were compared in the artifact

    changed = _write_head(tmp_path / "changed.pb", tf, 2, 6, _combined_nms, gain=1.05)
    (check,) = _against_a_changed_head(result, changed, list(outputs))
    assert check.status == "failed", check.message
    assert not {o.name: o for o in check.outputs}["box_scores:0"].passed


# Eight scores on the all-ones input: 0.97, 1.0 + 1e-5 and 1.0 straddle the threshold 1.0 + 5e-6.
THRESHOLD = 1.0 + 5e-6
WHERE_SCORES = (0.5, 0.97, 0.25, 1.0, 1.5, 0.125, 1.0, 0.375)


def _write_threshold_head(path: Path, tf: Any, gain: float = 1.0) -> Path:
    """x [1, 4] -> scores [1, 8] -> tf.where(scores > THRESHOLD) -> "kept" (their coordinates) and
    "kept_scores" (gathered). The 4th score is 1.0 + 1e-5 in float32, 1.0 in a float16 artifact."""
    import numpy as np

    weights = np.zeros((4, 8), np.float32)
    weights[0] = np.float16(WHERE_SCORES).astype(np.float32)
    weights[0, 3] *= 1 + 2 * (THRESHOLD - 1)
    weights[0, 1] *= gain  # gain 1.05: 0.97 moves well past the threshold
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [1, 4], name="x")
        # At least 1: TFLite's Python runner refuses an output with no rows ("Invalid tensor size").
        scores = tf.matmul(tf.maximum(tf.abs(x), 1.0), weights, name="scores")
        kept = tf.where(tf.greater(scores, THRESHOLD), name="kept")
        tf.gather_nd(scores, kept, name="kept_scores")
    path.write_bytes(graph.as_graph_def().SerializeToString())
    return path


def test_where_passes_when_a_score_at_the_threshold_flips_and_fails_otherwise(tmp_path: Path, tf: Any) -> None:
    source = _write_threshold_head(tmp_path / "threshold.pb", tf)
    outputs = ("kept", "kept_scores")
    result = _convert(source, tmp_path, outputs, (Target.TFLITE, Target.TFJS))
    for check in result.validation:
        assert check.status == "passed", (check.target, check.message)
        checked = {o.name: o for o in check.outputs}
        for name in outputs:  # the all-ones input: the float16 artifact keeps 2 scores, the source 3
            assert checked[name].note.startswith("1 element(s) within tolerance of the threshold"), checked[name]
        assert "scores:0" in checked  # the scores were compared in the artifact
        assert "kept_scores: 1 element(s) within tolerance of the threshold chose differently" in check.message

    changed = _write_threshold_head(tmp_path / "changed.pb", tf, gain=1.05)
    for check in _against_a_changed_head(result, changed, list(outputs)):
        assert check.status == "failed", (check.target, check.message)
        failed = {o.name for o in check.outputs if not o.passed}
        assert failed == {"scores:0", *outputs}, (check.target, check.outputs)
        # 0.97 * 1.05 is 0.03 of scale past the threshold: no rounding flips that.
        assert next(o for o in check.outputs if o.name == "kept").note == "Where 'kept' chose 1 elements, the source 3"


def test_a_head_that_keeps_nothing_passes_with_empty_outputs(tmp_path: Path, tf: Any) -> None:
    # A detector on an input with nothing in it: Where and gather give outputs with no rows. TFLite's
    # Python API refuses to read such a tensor ("Invalid tensor size"); that is not a file that fails to run.
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [1, 4], name="x")
        scores = tf.matmul(x, np.ones((4, 8), np.float32), name="scores")
        kept = tf.where(tf.greater(scores, 1e4), name="kept")  # 1e4: a float16 artifact keeps it finite
        tf.gather_nd(scores, kept, name="kept_scores")
    source = tmp_path / "nothing.pb"
    source.write_bytes(graph.as_graph_def().SerializeToString())
    outputs = ("kept", "kept_scores")

    result = _convert(source, tmp_path, outputs, (Target.TFLITE, Target.TFJS))

    assert {a.target for a in result.artifacts} == {Target.TFLITE, Target.TFJS}  # none withheld
    for check in result.validation:
        assert check.status == "passed", (check.target, check.message)
    interpreter = tf.lite.Interpreter(model_path=result.artifact(Target.TFLITE).path)
    from converter.tflite_run import run_signature

    empty = run_signature(interpreter, interpreter.get_signature_runner(), {"x": np.ones((1, 4), np.float32)})
    assert empty["kept"].shape == (0, 2) and empty["kept_scores"].shape == (0,)

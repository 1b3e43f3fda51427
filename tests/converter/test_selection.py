"""Detector heads (TopK over a heatmap, NonMaxSuppression) are verified with ties in mind: two
correct runtimes may pick different elements among near-equal scores, a broken artifact still fails."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from converter import ConversionOptions, Target
from converter.conversion import convert_in_process
from converter.formats import ModelFormat
from converter.selection import selection_heads, with_selection_tensors
from converter.summary import TensorSpec
from converter.verify import make_inputs, reference_runner, verify_artifacts
from tests.model_factory import DETECTOR_SIZE as SIZE
from tests.model_factory import write_centernet, write_ssd

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

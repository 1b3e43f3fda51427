"""Results and options as JSON and back: what crosses the broker between the bot and a conversion worker."""

from __future__ import annotations

import json

from converter.formats import ModelFormat, Quantization, Target
from converter.options import ConversionOptions
from converter.result import (
    FAILED,
    PASSED,
    Artifact,
    ArtifactCheck,
    ConversionResult,
    OutputCheck,
    TensorEntry,
    artifact_from_dict,
    artifact_to_dict,
    check_from_dict,
    check_to_dict,
)
from converter.summary import TensorSpec


def _through_json(data: object) -> object:
    return json.loads(json.dumps(data))


def test_a_conversion_result_comes_back_from_json_equal() -> None:
    tflite = Artifact(Target.TFLITE, "/a/pose.tflite", 1234, "ab" * 32, Quantization.DYNAMIC)
    tfjs = Artifact(Target.TFJS, "/a/pose_tfjs", 99, "cd" * 32, Quantization.UINT16, ("model.json", "group1.bin"))
    entry = TensorEntry("image", "serving_default_image:0", "float32", (1, 4), index=0)
    checks = (
        ArtifactCheck(
            Target.TFLITE,
            Quantization.DYNAMIC,
            PASSED,
            "the outputs match",
            1e-1,
            outputs=(OutputCheck("heatmap", 1e-3, 2e-3, True, note="2 of 20 rows chose differently"),),
            inputs_manifest=(entry,),
            outputs_manifest=(TensorEntry("heatmap", "Identity", "float32", (1, 2)),),
        ),
        ArtifactCheck(
            Target.TFJS,
            Quantization.UINT16,
            FAILED,
            "too far",
            1e-2,
            culprit="x/MatMul",
            advice="keep float32",
            engine="wasm",
        ),
    )
    result = ConversionResult(
        source="/m/pose.pb",
        format=ModelFormat.FROZEN_GRAPH,
        inputs=(TensorSpec("image", "float32", (None, 4), key="image", op="Placeholder"),),
        outputs=(TensorSpec("heatmap", "float32", None, optional=True),),
        artifacts=(tflite, tfjs),
        timings={"convert_tflite": 0.5},
        versions={"tensorflow": "2.19.0"},
        warnings=("batch set to 1",),
        needs_flex_delegate=True,
        validation=checks,
        graph_check=(OutputCheck("heatmap", 0.0, 0.0, True),),
        log="converter log",
    )
    assert ConversionResult.from_dict(_through_json(result.to_dict())) == result  # type: ignore[arg-type]
    assert artifact_from_dict(_through_json(artifact_to_dict(tfjs))) == tfjs  # type: ignore[arg-type]
    assert check_from_dict(_through_json(check_to_dict(checks[0]))) == checks[0]  # type: ignore[arg-type]


def test_conversion_options_come_back_from_json_equal() -> None:
    options = ConversionOptions(
        targets=(Target.TFJS, Target.TFLITE),
        inputs=("image",),
        outputs=("heatmap", "offsets"),
        shapes=(("image", (1, 224, 224, 3)), ("ratio", ())),
        tflite_quantization=Quantization.FLOAT16,
        tfjs_quantization=Quantization.UINT8,
        verify=False,
        verify_inputs="/in/x.npz",
        warnings=("TFLite has no 16-bit weight quantization",),
    )
    back = ConversionOptions.from_dict(_through_json(options.to_dict()))  # type: ignore[arg-type]
    assert back == options and back.warnings == options.warnings  # warnings are left out of ==

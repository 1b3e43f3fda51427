"""Readiness of a model's ops for TFLite and TF.js, as it goes into a ModelSummary."""

from __future__ import annotations

from collections.abc import Mapping

from converter import op_support
from converter.summary import OpNote, TargetReadiness


def check_readiness(op_counts: Mapping[str, int]) -> TargetReadiness:
    """Which ops TFLite builtins, Select TF ops and TF.js cannot take."""
    found = op_support.check_readiness(op_counts)

    def notes(findings: tuple[op_support.OpFinding, ...]) -> tuple[OpNote, ...]:
        return tuple(OpNote(f.op, f.count, f.note) for f in findings)

    return TargetReadiness(
        checked=True,
        tflite_builtin_ok=found.tflite_builtin_ok,
        tflite_needs_select_ops=notes(found.tflite_needs_select_ops),
        tflite_unsupported=notes(found.tflite_unsupported),
        tfjs_ok=found.tfjs_ok,
        tfjs_unsupported=notes(found.tfjs_unsupported),
    )


def keras_readiness() -> TargetReadiness:
    """A Keras file's ops are known only once it is loaded; they are checked when converting."""
    return TargetReadiness(checked=False)

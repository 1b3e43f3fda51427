"""How a full-integer .tflite does on the user's own samples: its error there, and, on images in one folder per
class, how often it picks the class the float model picks. Outputs within a tolerance say little to someone who
ships a classifier; "top-1 agrees on 97 % of your 120 images" says what they need.

Runs in the conversion process: it imports TensorFlow.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from converter import formats as fmt
from converter.calibration import CalibrationSet
from converter.result import TopOneAgreement
from converter.tflite_run import run_signature
from converter.verify import compare, output_scales

Run = Callable[[dict[str, NDArray[Any]]], dict[str, NDArray[Any]]]


def tflite_top1_agreement(
    tflite_path: Path, reference: Run, calibration: CalibrationSet, output_keys: list[str]
) -> TopOneAgreement | None:
    """The agreement of the .tflite with `reference` on the calibration images, or None when there is nothing
    to measure: no class folders, or not a classifier (one output of class scores)."""
    if not calibration.classes or len(output_keys) != 1:
        return None
    return top1_agreement(reference, _tflite_run(tflite_path), calibration, output_keys[0])


def worst_error_on_inputs(
    tflite_path: Path, samples: list[dict[str, NDArray[Any]]], expected: list[dict[str, Any]], output_keys: list[str]
) -> float:
    """The largest error relative to scale of any output over the input sets `samples` (reference: `expected`)."""
    run = _tflite_run(tflite_path)
    scales = output_scales(expected, output_keys)
    return max(
        compare(key, np.asarray(run(sample)[key]), np.asarray(wanted[key]), float("inf"), scales[key]).max_rel_error
        for sample, wanted in zip(samples, expected, strict=True)
        for key in output_keys
    )


def top1_agreement(reference: Run, quantized: Run, calibration: CalibrationSet, key: str) -> TopOneAgreement | None:
    by_class: dict[str, list[int]] = {}  # class -> [images, agreeing]
    for sample, label in zip(calibration.samples, calibration.classes, strict=True):
        expected = np.asarray(reference(sample)[key])
        if not _class_scores(expected):
            return None
        got = np.asarray(quantized(sample)[key]).reshape(expected.shape)
        counts = by_class.setdefault(label, [0, 0])
        counts[0] += 1
        counts[1] += int(_picks_the_same_class(expected.reshape(-1), got.reshape(-1)))
    return TopOneAgreement(
        images=sum(images for images, _ in by_class.values()),
        agreeing=sum(agreeing for _, agreeing in by_class.values()),
        by_class=tuple((label, images, agreeing) for label, (images, agreeing) in sorted(by_class.items())),
    )


def _picks_the_same_class(expected: NDArray[Any], got: NDArray[Any]) -> bool:
    """The quantized scores have one highest class, and it is a highest of the float scores. A tie at the top
    picks nothing: an int8 softmax rounds every score under 1/512 to 0, and argmax would then say class 0."""
    top = np.flatnonzero(got == got.max())
    return len(top) == 1 and bool(expected[top[0]] == expected.max())


def _class_scores(output: NDArray[Any]) -> bool:
    """One image's scores over two classes or more: [K] or [1, K]."""
    squeezed = output.reshape(output.shape[1:]) if output.ndim == 2 and output.shape[0] == 1 else output
    return squeezed.ndim == 1 and squeezed.size >= 2 and np.issubdtype(squeezed.dtype, np.floating)


def _tflite_run(path: Path) -> Run:
    import tensorflow as tf

    interpreter = tf.lite.Interpreter(model_path=str(path))
    signatures = interpreter.get_signature_list()
    runner = interpreter.get_signature_runner(fmt.SERVING_SIGNATURE if fmt.SERVING_SIGNATURE in signatures else None)
    return lambda inputs: run_signature(interpreter, runner, inputs)

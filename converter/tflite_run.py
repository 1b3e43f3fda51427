"""Running a `.tflite` through the TFLite Python API, outputs with no rows included.

The API refuses to read a tensor of zero elements ("Invalid tensor size": such a tensor has no
buffer). That is what a detector's NonMaxSuppression or a Where gives when nothing passes its
threshold: a correct result, an empty array of its shape, not a file that fails to run."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

EMPTY_TENSOR_ERROR = "Invalid tensor size"


def run_signature(interpreter: Any, runner: Any, inputs: dict[str, NDArray[Any]]) -> dict[str, NDArray[Any]]:
    """`runner(**inputs)` (a signature runner of `interpreter`), each output as an array, empty ones too.

    A full-integer model with int8 inputs and outputs (int8-io) takes float values and gives float values,
    quantized and dequantized with each tensor's scale and zero point, as its users' code does."""
    details = runner.get_input_details()
    inputs = {key: _quantized(value, details[key]) if key in details else value for key, value in inputs.items()}
    outputs = _run(interpreter, runner, inputs)
    details = runner.get_output_details()
    return {key: _dequantized(value, details[key]) if key in details else value for key, value in outputs.items()}


def tensor_quantization(detail: dict[str, Any]) -> tuple[float, int]:
    """(scale, zero point) of an integer-quantized tensor of a signature runner; (0.0, 0) for any other."""
    scale, zero_point = detail.get("quantization", (0.0, 0))
    if not np.issubdtype(np.dtype(detail["dtype"]), np.integer):
        return 0.0, 0
    return float(scale), int(zero_point)


def _quantized(values: NDArray[Any], detail: dict[str, Any]) -> NDArray[Any]:
    scale, zero_point = tensor_quantization(detail)
    values = np.asarray(values)
    if not scale or not np.issubdtype(values.dtype, np.floating):
        return values
    dtype = np.dtype(detail["dtype"])
    limits = np.iinfo(dtype)
    stored: NDArray[Any] = np.clip(np.round(values / scale) + zero_point, limits.min, limits.max).astype(dtype)
    return stored


def _dequantized(values: NDArray[Any], detail: dict[str, Any]) -> NDArray[Any]:
    scale, zero_point = tensor_quantization(detail)
    if not scale:
        return values
    return ((values.astype(np.float32) - zero_point) * scale).astype(np.float32)


def _run(interpreter: Any, runner: Any, inputs: dict[str, NDArray[Any]]) -> dict[str, NDArray[Any]]:
    try:
        return {key: np.asarray(value) for key, value in runner(**inputs).items()}
    except ValueError as error:
        if EMPTY_TENSOR_ERROR not in str(error):
            raise
    # The model ran; reading an empty output failed. Read them one by one from the signature's subgraph.
    subgraph = getattr(runner, "_subgraph_index", 0)
    return {
        key: _read(interpreter, detail["index"], detail["shape"], detail["dtype"], subgraph)
        for key, detail in runner.get_output_details().items()
    }


def tensor_value(interpreter: Any, index: int) -> NDArray[Any]:
    """The value of tensor `index` after a run (an intermediate too, with preserve_all_tensors)."""
    try:
        return np.asarray(interpreter.get_tensor(index))
    except ValueError as error:
        if EMPTY_TENSOR_ERROR not in str(error):
            raise
    detail = next(d for d in interpreter.get_tensor_details() if d["index"] == index)
    return _read(interpreter, index, detail["shape"], detail["dtype"], 0)


def _read(interpreter: Any, index: int, shape: Any, dtype: Any, subgraph: int) -> NDArray[Any]:
    dims = tuple(int(d) for d in shape)
    if 0 in dims:
        return np.zeros(dims, dtype)
    return np.asarray(interpreter.get_tensor(index, subgraph))

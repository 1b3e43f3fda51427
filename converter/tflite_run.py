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
    """`runner(**inputs)` (a signature runner of `interpreter`), each output as an array, empty ones too."""
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

"""TensorFlow.js conversion through the tensorflowjs package, and a check that the files it
wrote are complete and consistent.

The conversion functions import TensorFlow; `check_tfjs_files` does not.
"""

from __future__ import annotations

import io
import json
import math
import os
from collections.abc import Callable, Sequence
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import numpy as np

from converter import formats as fmt
from converter.error_messages import explain_failure
from converter.errors import ConversionError
from converter.formats import ModelFormat, Quantization, Target
from converter.tfjs_input import stored_dtype  # the same table the TF.js reader decodes with
from converter.tfjs_signature import key_tfjs_signature, signature_tensor_names

# tensorflow_decision_forests (pulled in by tensorflowjs) imports IPython for a welcome banner
# whenever stdout is redirected (as under pytest or redirect_stdout), and IPython is not installed.
os.environ.setdefault("TFDF_DISABLE_WELCOME_MESSAGE", "1")


QuantizationMap = dict[str, str | bool | list[str]] | None


def _quantization_map(quantization: Quantization, float16_weights: Sequence[str] = ()) -> QuantizationMap:
    if quantization is Quantization.NONE:
        return None
    stored = Quantization.UINT8 if quantization is Quantization.UINT8_MIXED else quantization
    if float16_weights:
        # tensorflowjs's map: a dtype given True takes every weight no pattern names (its fallthrough).
        return {stored.value: True, Quantization.FLOAT16.value: [_literal(n) for n in float16_weights]}
    return {stored.value: "*"}


def _written_with_finite_ranges(
    write: Callable[[QuantizationMap], None], quantization: Quantization, out_dir: Path, float16_weights: Sequence[str]
) -> str:
    """Write the model with `write`; a weight holding -inf, inf or NaN (an NMS score threshold of -inf) stored
    as uint8/uint16 gets a range that is not a number, which tensorflowjs writes into model.json as -Infinity,
    which TF.js's JSON reader refuses: the model does not load. Such weights are written again in float16, which
    holds them."""
    log = _run_tfjs(lambda: write(_quantization_map(quantization, float16_weights)))
    unbounded = _weights_quantized_without_a_range(out_dir)
    if not unbounded:
        return log
    for path in out_dir.iterdir():
        path.unlink()
    kept = [*float16_weights, *unbounded]
    log += f"\nconvbot: kept in float16, as uint8/uint16 cannot hold their infinite or NaN values: {unbounded}\n"
    return log + _run_tfjs(lambda: write(_quantization_map(quantization, kept)))


def _weights_quantized_without_a_range(model_dir: Path) -> list[str]:
    return [
        str(weight["name"])
        for weight in manifest_weights(model_dir)
        if any(not math.isfinite(float(weight.get("quantization", {}).get(field, 0.0))) for field in ("min", "scale"))
    ]


def manifest_weights(model_dir: Path) -> list[dict[str, Any]]:
    """Every weight entry of a TF.js model's manifest (name, shape, dtype, quantization), as written; Python's
    JSON reader takes the -Infinity and NaN that TF.js's refuses."""
    manifest = json.loads((model_dir / fmt.TFJS_MODEL_JSON).read_text(encoding="utf-8"))
    return [weight for group in manifest.get("weightsManifest", []) for weight in group.get("weights", [])]


def _literal(name: str) -> str:
    """A weight name as a pattern of tensorflowjs's map (fnmatch) that matches that name only."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


def _run_tfjs(work: Any) -> str:
    # tensorflowjs prints progress and raises plain exceptions; keep both for the log.
    buffer = io.StringIO()
    try:
        with redirect_stdout(buffer), redirect_stderr(buffer):
            work()
    except Exception as error:
        log = f"{buffer.getvalue()}\n{type(error).__name__}: {error}"
        raise ConversionError(explain_failure(Target.TFJS, log), log) from None
    return buffer.getvalue()


def tfjs_from_frozen_graph(
    graph_path: Path,
    outputs: list[str],
    quantization: Quantization,
    out_dir: Path,
    float16_weights: Sequence[str] = (),
) -> str:
    """A TF.js graph model whose inputs and outputs keep the graph's node names; `float16_weights` are the
    weights a uint8-mixed model keeps in float16."""
    from tensorflowjs.converters import tf_saved_model_conversion_v2 as tfjs

    def write(dtype_map: QuantizationMap) -> None:
        tfjs.convert_tf_frozen_model(str(graph_path), ",".join(outputs), str(out_dir), quantization_dtype_map=dtype_map)

    return _written_with_finite_ranges(write, quantization, out_dir, float16_weights)


def tfjs_from_saved_model(
    saved_model_dir: Path,
    output_keys: Sequence[str],
    quantization: Quantization,
    out_dir: Path,
    float16_weights: Sequence[str] = (),
) -> str:
    """A TF.js graph model of the serving signature; its signature keeps the keys, outputs in the
    order of `output_keys`; `float16_weights` are the weights a uint8-mixed model keeps in float16."""
    from tensorflowjs.converters import tf_saved_model_conversion_v2 as tfjs

    def write(dtype_map: QuantizationMap) -> None:
        tfjs.convert_tf_saved_model(
            str(saved_model_dir),
            str(out_dir),
            signature_def=fmt.SERVING_SIGNATURE,
            saved_model_tags=fmt.SERVING_TAG,
            quantization_dtype_map=dtype_map,
        )

    log = _written_with_finite_ranges(write, quantization, out_dir, float16_weights)
    # tensorflowjs keys the signature by matching shapes, which fails for outputs alike.
    inputs, outputs = signature_tensor_names(saved_model_dir, fmt.SERVING_SIGNATURE)
    key_tfjs_signature(out_dir, inputs, outputs, output_keys)
    return log


def tfjs_layers_from_keras(
    model_path: Path, model_format: ModelFormat, quantization: Quantization, out_dir: Path
) -> str:
    """A TF.js layers model straight from the Keras file (read as data, nothing executed)."""
    from tensorflowjs.converters import converter as tfjs

    dispatch = (
        tfjs.dispatch_keras_h5_to_tfjs_layers_model_conversion
        if model_format is ModelFormat.KERAS_H5
        else tfjs.dispatch_keras_keras_to_tfjs_layers_model_conversion
    )

    def write(dtype_map: QuantizationMap) -> None:
        dispatch(str(model_path), str(out_dir), quantization_dtype_map=dtype_map)

    return _written_with_finite_ranges(write, quantization, out_dir, ())


def check_tfjs_files(model_dir: Path) -> list[str]:
    """Problems with a TF.js model folder: model.json unreadable, a shard missing, sizes that do
    not add up to the weights the manifest declares. An empty list means it is consistent."""
    model_json = model_dir / fmt.TFJS_MODEL_JSON
    try:
        manifest = json.loads(model_json.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        return [f"model.json cannot be read: {error}"]
    problems = []
    if "modelTopology" not in manifest:
        problems.append("model.json has no modelTopology")
    for group in manifest.get("weightsManifest", []):
        shard_bytes = 0
        for shard in group.get("paths", []):
            shard_path = model_dir / shard
            if not shard_path.is_file():
                problems.append(f"weight shard {shard} is missing")
            else:
                shard_bytes += shard_path.stat().st_size
        weights = group.get("weights", [])
        declared = sum(_weight_bytes(weight) for weight in weights)
        # String weights carry their own lengths inside the shard, so their size is not declared.
        has_strings = any(weight.get("dtype") == "string" for weight in weights)
        if not has_strings and shard_bytes != declared and not any(p.endswith("missing") for p in problems):
            problems.append(f"weight shards hold {shard_bytes} bytes but the manifest declares {declared}")
    return problems


def _weight_bytes(weight: dict[str, Any]) -> int:
    count = math.prod(int(d) for d in weight.get("shape", []))
    stored = stored_dtype(weight)
    return count * (np.dtype(stored).itemsize if stored else 4)

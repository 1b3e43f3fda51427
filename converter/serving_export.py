"""Bring Keras models and SavedModels to one shape before converting: a SavedModel with a
single serving signature whose input and output keys are the names the user chose.

Runs in the conversion process only: it imports TensorFlow.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from converter import formats as fmt
from converter.errors import UnsupportedModelError
from converter.summary import TensorSpec


def load_keras_model_safely(path: Path) -> Any:
    """Load a Keras file with safe mode on, so nothing in the file is executed."""
    import keras

    try:
        return keras.saving.load_model(str(path), compile=False, safe_mode=True)
    except ValueError as error:
        if "safe_mode" in str(error) or "unsafe" in str(error).lower() or "lambda" in str(error).lower():
            raise UnsupportedModelError(
                "the model needs unsafe deserialization (it stores Python code); convbot does not run code "
                "from uploads. Replace Lambda layers with built-in ones, or export a SavedModel"
            ) from error
        raise UnsupportedModelError(f"Keras could not load the model: {str(error).splitlines()[0][:200]}") from error
    except (OSError, TypeError, KeyError) as error:
        raise UnsupportedModelError(f"Keras could not load the model: {str(error).splitlines()[0][:200]}") from error


def _tf_dtype(name: str) -> Any:
    import tensorflow as tf

    return tf.as_dtype("float32" if name == "unknown" else name)


def export_serving_model(
    call: Any,
    inputs: Sequence[TensorSpec],
    output_keys: Sequence[str],
    shapes: dict[str, tuple[int | None, ...] | None],
    trackable: Any,
    out_dir: Path,
) -> Path:
    """Save `call(dict_of_inputs) -> dict_of_outputs` as a SavedModel with one serving signature.

    Input keys are the `inputs`' keys (or names); output keys are `output_keys`. `trackable`
    owns the variables (the Keras model, the loaded SavedModel) so they are saved too.
    """
    import tensorflow as tf

    keys = [spec.key or spec.name for spec in inputs]
    signature = [
        tf.TensorSpec(shapes.get(key, spec.shape), _tf_dtype(spec.dtype), name=_safe_key(key))
        for key, spec in zip(keys, inputs, strict=True)
    ]

    def serve(*tensors: Any) -> dict[str, Any]:
        outputs = call(dict(zip(keys, tensors, strict=True)))
        return {key: tf.identity(outputs[key], name=_safe_key(key)) for key in output_keys}

    function = tf.function(serve, input_signature=signature)
    module = tf.Module()
    module.model = trackable
    module.serve = function
    tf.saved_model.save(module, str(out_dir), signatures={fmt.SERVING_SIGNATURE: function.get_concrete_function()})
    return out_dir


def _safe_key(key: str) -> str:
    # TensorSpec and op names allow only [A-Za-z0-9_.\-/]; keys like 'input:0' need cleaning.
    import re

    cleaned = re.sub(r"[^A-Za-z0-9_.\-/]", "_", key)
    return cleaned if cleaned and cleaned[0].isalnum() else f"x{cleaned}"


def export_keras(
    model_path: Path, inputs: Sequence[TensorSpec], outputs: Sequence[str], shapes: dict[str, Any], out_dir: Path
) -> Path:
    """A Keras file as a serving SavedModel keyed by its input and output layer names.

    Goes through Keras's own ExportArchive: a Keras 3 model saved from a plain tf.Module keeps
    its variables as resource variables, and the .tflite then fails at READ_VARIABLE.
    """
    import keras
    import tensorflow as tf

    model = load_keras_model_safely(model_path)
    keys = [spec.key or spec.name for spec in inputs]
    output_names = list(getattr(model, "output_names", []) or outputs)
    signature = [
        tf.TensorSpec(shapes.get(key, spec.shape), _tf_dtype(spec.dtype), name=_safe_key(key))
        for key, spec in zip(keys, inputs, strict=True)
    ]

    def serve(*tensors: Any) -> dict[str, Any]:
        result = model(list(tensors) if len(tensors) > 1 else tensors[0], training=False)
        if not isinstance(result, dict):
            results = list(result) if isinstance(result, (list, tuple)) else [result]
            result = dict(zip(output_names, results, strict=False))
        return {key: result[key] for key in outputs}

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(name=fmt.SERVING_SIGNATURE, fn=serve, input_signature=signature)
    archive.write_out(str(out_dir), verbose=False)
    return out_dir


def export_saved_model_subset(
    saved_model_dir: Path,
    signature_key: str,
    inputs: Sequence[TensorSpec],
    outputs: Sequence[str],
    shapes: dict[str, Any],
    out_dir: Path,
) -> Path:
    """A SavedModel's signature, re-exported with fixed shapes or fewer outputs."""
    import tensorflow as tf

    loaded = tf.saved_model.load(str(saved_model_dir), tags=[fmt.SERVING_TAG])
    function = loaded.signatures[signature_key]

    def call(feeds: dict[str, Any]) -> dict[str, Any]:
        return dict(function(**feeds))

    return export_serving_model(call, inputs, outputs, shapes, loaded, out_dir)

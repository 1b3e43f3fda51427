"""The keys of a TF.js model.json's signature, taken from the SavedModel it was converted from.

tensorflowjs names each signature entry by looking for the one SavedModel signature entry of the
same dtype and shape; when two outputs are alike (PoseNet's displacement_fwd and displacement_bwd)
it finds two and falls back to the tensor's name (`Identity_1:0`), so TF.js cannot fetch them by
their keys. The SavedModel's function says exactly which tensor each key is: convbot keys by that.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from converter import formats as fmt

TensorsByKey = dict[str, str]  # signature key -> the tensor's name in the function graph ("Identity_1:0")


def signature_tensor_names(saved_model_dir: Path, signature_key: str) -> tuple[TensorsByKey, TensorsByKey]:
    """The tensor each input key and each output key of the signature is, named as tensorflowjs
    names them (it reads the same function's `inputs` and `outputs`)."""
    import tensorflow as tf

    loaded = tf.saved_model.load(str(saved_model_dir), tags=[fmt.SERVING_TAG])
    function = loaded.signatures[signature_key]
    input_structure = function.structured_input_signature
    # `function.inputs` lists the arguments first, then the captured variables.
    arguments = function.inputs[: len(tf.nest.flatten(input_structure))]
    _, inputs = tf.nest.pack_sequence_as(input_structure, arguments)
    outputs = tf.nest.pack_sequence_as(function.structured_outputs, function.outputs)
    return _names(inputs), _names(outputs)


def _names(tensors: Mapping[str, Any]) -> TensorsByKey:
    return {key: tensor.name for key, tensor in tensors.items()}


def key_tfjs_signature(
    model_dir: Path, inputs: TensorsByKey, outputs: TensorsByKey, output_order: Sequence[str]
) -> None:
    """Rewrite model.json's signature so every entry is keyed by its signature key, outputs in
    `output_order` (the order the user chose: TF.js returns them in this order when none are named).
    A key whose tensor has no entry stays missing, and verification says so."""
    model_json = model_dir / fmt.TFJS_MODEL_JSON
    manifest = json.loads(model_json.read_text(encoding="utf-8"))
    signature = manifest.get("signature") or {}
    signature["inputs"] = _keyed(signature.get("inputs") or {}, inputs, list(inputs))
    signature["outputs"] = _keyed(signature.get("outputs") or {}, outputs, output_order)
    manifest["signature"] = signature
    model_json.write_text(json.dumps(manifest), encoding="utf-8")


def _by_tensor(section: Mapping[str, Any]) -> dict[str, Any]:
    return {str(entry.get("name")): entry for entry in section.values()}


def _keyed(section: Mapping[str, Any], tensors: TensorsByKey, order: Sequence[str]) -> dict[str, Any]:
    # An input frozen into a constant has no entry; an entry no key claims keeps its own name.
    entries = _by_tensor(section)
    keyed = {key: entries[tensors[key]] for key in order if tensors.get(key) in entries}
    claimed = {tensors[key] for key in keyed}
    for name, entry in section.items():
        if entry.get("name") not in claimed and name not in keyed:
            keyed[name] = entry
    return keyed

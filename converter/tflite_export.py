"""TensorFlow Lite conversion: builtins first, Select TF ops (Flex) when builtins cannot do it.

Runs in the conversion process only: it imports TensorFlow.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from converter import formats as fmt
from converter.error_messages import explain_failure
from converter.errors import ConversionError
from converter.formats import Quantization, Target
from converter.full_integer import RepresentativeDataset, convert_full_integer


@dataclass(frozen=True)
class Int8Recipe:
    """How a full-integer .tflite was made, so that it can be made again with some layers kept in float
    (converter/int8_mixed.py)."""

    make_converter: Callable[[], Any]
    representative: RepresentativeDataset
    finish: Callable[[bytes], bytes] = lambda flatbuffer: flatbuffer  # what it gets once converted (a signature)


@dataclass(frozen=True)
class TFLiteOutcome:
    path: Path
    needs_flex_delegate: bool
    log: str
    int8_recipe: Int8Recipe | None = None  # a full-integer file's


def _configure(converter: Any, quantization: Quantization, select_ops: bool) -> None:
    import tensorflow as tf

    if quantization is Quantization.FLOAT16:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif quantization is Quantization.DYNAMIC:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if select_ops:
        ops.append(tf.lite.OpsSet.SELECT_TF_OPS)
    converter.target_spec.supported_ops = ops


def _needs_select_ops(log: str) -> bool:
    return "SELECT_TF_OPS" in log or "not supported by the native TFLite runtime" in log or "Flex" in log


def convert_with_fallback(
    make_converter: Any, quantization: Quantization, out_path: Path, representative: RepresentativeDataset | None = None
) -> TFLiteOutcome:
    """Convert with builtins; on unsupported ops, again with SELECT_TF_OPS; write `out_path`.

    Full-integer variants are calibrated on `representative` and have no fallback: Select TF ops are float."""
    from tensorflow.lite.python.convert import ConverterError

    if quantization.is_full_integer:
        assert representative is not None, "a full-integer conversion is calibrated on the user's samples"
        out_path.write_bytes(convert_full_integer(make_converter, quantization, representative))
        return TFLiteOutcome(out_path, False, "", Int8Recipe(make_converter, representative))

    logs = []
    for select_ops in (False, True):
        converter = make_converter()
        _configure(converter, quantization, select_ops)
        try:
            flatbuffer = converter.convert()
        except (ConverterError, ValueError, RuntimeError) as error:
            log = f"{type(error).__name__}: {error}"
            logs.append(log)
            if not select_ops and _needs_select_ops(log):
                continue
            full_log = "\n\n".join(logs)
            raise ConversionError(explain_failure(Target.TFLITE, full_log), full_log) from None
        out_path.write_bytes(flatbuffer)
        return TFLiteOutcome(out_path, select_ops, "\n\n".join(logs))
    raise AssertionError("unreachable")


def tflite_from_frozen_graph(
    graph_path: Path,
    inputs: Sequence[str],
    outputs: Sequence[str],
    shapes: dict[str, tuple[int, ...]],
    quantization: Quantization,
    out_path: Path,
    samples: Callable[[], Iterator[dict[str, Any]]] | None = None,
) -> TFLiteOutcome:
    """The TF1 path the seed took: tensors keep the graph's node names. `samples`: calibration, by node name."""
    import tensorflow as tf

    def make() -> Any:
        return tf.compat.v1.lite.TFLiteConverter.from_frozen_graph(
            str(graph_path), list(inputs), list(outputs), input_shapes={k: list(v) for k, v in shapes.items()}
        )

    def in_input_order() -> Iterator[list[Any]]:  # the TF1 converter takes each sample as a list
        assert samples is not None
        return ([sample[name] for name in inputs] for sample in samples())

    def with_signature(flatbuffer: bytes) -> bytes:
        return add_serving_signature(flatbuffer, inputs, outputs)

    outcome = convert_with_fallback(make, quantization, out_path, in_input_order if samples is not None else None)
    out_path.write_bytes(with_signature(out_path.read_bytes()))
    if outcome.int8_recipe is None:
        return outcome
    return replace(outcome, int8_recipe=replace(outcome.int8_recipe, finish=with_signature))


def add_serving_signature(flatbuffer: bytes, inputs: Sequence[str], outputs: Sequence[str]) -> bytes:
    """Give a frozen graph's .tflite a 'serving_default' signature keyed by the node names.

    The TF1 converter keeps node names on the tensors but writes no signature, and signature
    runners (and users following today's docs) look for one; the output order of the tensors
    may also differ from the order chosen (TFLite sorts some), which the keys make irrelevant.
    """
    import flatbuffers
    from tensorflow.lite.python import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(flatbuffer), 0)
    subgraph = model.subgraphs[0]
    names = {_text(subgraph.tensors[index].name): index for index in list(subgraph.inputs) + list(subgraph.outputs)}

    def tensor_map(name: str, fallback: int) -> Any:
        entry = schema.TensorMapT()
        entry.name = name
        entry.tensorIndex = names.get(name, fallback)
        return entry

    signature = schema.SignatureDefT()
    signature.signatureKey = fmt.SERVING_SIGNATURE
    signature.subgraphIndex = 0
    signature.inputs = [tensor_map(n, i) for n, i in zip(inputs, subgraph.inputs, strict=False)]
    signature.outputs = [tensor_map(n, i) for n, i in zip(outputs, subgraph.outputs, strict=False)]
    model.signatureDefs = [signature]
    builder = flatbuffers.Builder(len(flatbuffer) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=fmt.TFLITE_IDENTIFIER)
    return bytes(builder.Output())


def _text(value: bytes | str | None) -> str:
    return value.decode() if isinstance(value, bytes) else (value or "")


def tflite_from_saved_model(
    saved_model_dir: Path,
    quantization: Quantization,
    out_path: Path,
    samples: Callable[[], Iterator[dict[str, Any]]] | None = None,
) -> TFLiteOutcome:
    """Convert the serving signature; the TFLite signature keeps its input and output keys.
    `samples`: calibration, by signature key."""
    import tensorflow as tf

    def make() -> Any:
        return tf.lite.TFLiteConverter.from_saved_model(
            str(saved_model_dir), signature_keys=[fmt.SERVING_SIGNATURE], tags={fmt.SERVING_TAG}
        )

    return convert_with_fallback(make, quantization, out_path, samples)

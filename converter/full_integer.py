"""Full-integer (int8) TFLite conversion, calibrated on the user's samples, and the check that the result is
integer throughout.

TensorFlow's converter, asked for TFLITE_BUILTINS_INT8 only, does not fail on an op that has no integer kernel
(SIN, for one): it keeps that op in float32 between a DEQUANTIZE and a QUANTIZE. Such a file runs on a phone's
CPU but not on an Edge TPU or a microcontroller, which is why int8 was asked for; so it is refused, op named.

Runs in the conversion process only: it imports TensorFlow.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

from converter.error_messages import unsupported_tflite_ops
from converter.errors import ConversionError
from converter.formats import Quantization

RepresentativeDataset = Callable[[], Iterator[Any]]
# Ops that convert between float and int8 at the model's edges: the only ones with float tensors allowed.
BOUNDARY_OPS = ("QUANTIZE", "DEQUANTIZE")


def convert_full_integer(
    make_converter: Callable[[], Any], quantization: Quantization, representative: RepresentativeDataset
) -> bytes:
    """The .tflite flatbuffer, every op in int8; ConversionError naming the ops that cannot be."""
    import tensorflow as tf
    from tensorflow.lite.python.convert import ConverterError

    converter = calibrated_int8_converter(make_converter, representative)
    if quantization is Quantization.INT8_IO:
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    try:
        flatbuffer: bytes = converter.convert()
    except (ConverterError, ValueError, RuntimeError) as error:
        log = f"{type(error).__name__}: {error}"
        raise ConversionError(_refusal(quantization, ops_in_error(log), log), log) from None
    floating = float_ops(flatbuffer)
    if floating:
        raise ConversionError(_refusal(quantization, floating, ""), f"ops left in float32: {', '.join(floating)}")
    return flatbuffer


def calibrated_int8_converter(make_converter: Callable[[], Any], representative: RepresentativeDataset) -> Any:
    """A converter set for int8 on the user's samples, its inputs and outputs left float (int8-io sets them)."""
    import tensorflow as tf

    converter = make_converter()
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    return converter


def _refusal(quantization: Quantization, ops: list[str], log: str) -> str:
    if not ops:
        last = log.strip().splitlines()[-1][:200] if log.strip() else "see the log"
        return f"TFLite {quantization.value} conversion failed: {last}"
    return (
        f"TFLite {quantization.value}: no integer kernel for {', '.join(ops)}; a full-integer model cannot hold it: "
        "use --quant dynamic or float16, or replace that op in the model"
    )


def ops_in_error(log: str) -> list[str]:
    """The ops a failed int8 conversion names: TF ops it cannot lower, or TFLite ops it cannot quantize."""
    quantizer = re.findall(r"(?:Quantization not yet supported for op|quantize op)[:\s]+'?([A-Za-z0-9_.]+)", log)
    return sorted(set(quantizer)) or unsupported_tflite_ops(log)


def float_ops(flatbuffer: bytes) -> list[str]:
    """The ops of a .tflite that read or write a float32 tensor, apart from the QUANTIZE/DEQUANTIZE at its edges."""
    from tensorflow.lite.python import schema_py_generated as schema

    model = schema.Model.GetRootAs(flatbuffer, 0)
    names = {code: name for name, code in vars(schema.BuiltinOperator).items() if not name.startswith("_")}
    found: list[str] = []
    for s in range(model.SubgraphsLength()):
        subgraph = model.Subgraphs(s)
        for o in range(subgraph.OperatorsLength()):
            operator = subgraph.Operators(o)
            name = _op_name(model.OperatorCodes(operator.OpcodeIndex()), names)
            if name in BOUNDARY_OPS or name in found:
                continue
            tensors = [*operator.InputsAsNumpy(), *operator.OutputsAsNumpy()]
            if any(i >= 0 and subgraph.Tensors(int(i)).Type() == schema.TensorType.FLOAT32 for i in tensors):
                found.append(name)
    return found


def _op_name(code: Any, names: dict[int, str]) -> str:
    builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())  # codes past 127 live in the newer field
    if names.get(builtin) == "CUSTOM":
        return (code.CustomCode() or b"custom").decode()
    return names.get(builtin, f"op {builtin}")

"""When a TFLite int8 (int8-io) file fails its check on the user's samples: the layers it quantizes worst, and the
file made again with those layers kept in float (`int8-mixed`, `int8-io-mixed`), more of them each time (the 1, 2,
4... worst) until it passes its tolerance or no layer is left to exempt.

The ranking is TensorFlow's quantization debugger's (tf.lite.experimental.QuantizationDebugger): the model,
calibrated on the user's samples, runs a few of them with a NumericVerify op after each quantized layer, which
compares the layer's int8 output with its float output from the same inputs. Layers are ranked by the RMSE of that
difference over the layer's quantization scale, as TensorFlow's quantization debugger guide does: rounding alone
gives about 0.29, a layer that int8 breaks far more.

The exempted layers are the debugger's `denylisted_nodes`, quantized from the debugger's calibrated model as its
`get_nondebug_quantized_model` does (`mlir_quantize`), called here directly: the debugger refuses options that leave
no quantized layer to instrument, and "every layer in float" is the last attempt.

Such a file is no longer integer throughout: its float layers need a float kernel, so it runs on a phone's CPU but
not entirely on an Edge TPU or a microcontroller. int8-io-mixed keeps int8 inputs and outputs.
Runs in the conversion process: it imports TensorFlow.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from converter import formats as fmt
from converter.calibration import Sample
from converter.errors import ConversionError
from converter.formats import Quantization, Target
from converter.full_integer import calibrated_int8_converter
from converter.mixed_quant import NAMES_SHOWN, MixedOutcome, exemption_counts, listed, worst_error
from converter.result import ERROR, PASSED, Artifact, ArtifactCheck
from converter.tflite_export import Int8Recipe
from converter.units import format_size

DEBUG_SAMPLES = 16  # of the user's samples the debugger runs; each layer's error is averaged over them
MIXED_VARIANT = {Quantization.INT8: Quantization.INT8_MIXED, Quantization.INT8_IO: Quantization.INT8_IO_MIXED}

CheckArtifact = Callable[[Artifact], ArtifactCheck]


@dataclass(frozen=True)
class LayerError:
    """One quantized layer of the int8 model and how far int8 moves its output."""

    tensor: str  # the layer's output tensor in the .tflite: what the denylist names
    op: str
    rmse_over_scale: float  # NaN where the layer's scale is 0
    name: str  # as the user knows it: the tensor's first name, or the signature output it writes


class LayerDebugger:
    """TensorFlow's quantization debugger on the recipe the failed int8 file was made with."""

    def __init__(self, recipe: Int8Recipe, samples: Sequence[Sample], input_keys: Sequence[str]) -> None:
        import tensorflow as tf

        def debug_dataset() -> Iterator[list[Any]]:  # the debugger feeds inputs in the model's order
            return ([sample[key] for key in input_keys] for sample in samples)

        converter = calibrated_int8_converter(recipe.make_converter, recipe.representative)
        self.recipe = recipe
        self.debugger = tf.lite.experimental.QuantizationDebugger(converter=converter, debug_dataset=debug_dataset)
        self.outputs = _signature_outputs(self.debugger.calibrated_model)

    def worst_layers(self) -> list[LayerError]:
        """Every quantized layer, the one int8 moves most first (layers without a figure last)."""
        self.debugger.run()
        dump = io.StringIO()
        self.debugger.layer_statistics_dump(dump)
        dump.seek(0)
        layers = [
            LayerError(
                row["tensor_name"],
                row["op_name"],
                _ratio(row["mean_squared_error"], row["scale"]),
                self.outputs.get(row["tensor_name"], row["tensor_name"].split(";")[0]),  # TFLite joins fused ops' names
            )
            for row in csv.DictReader(dump)
        ]
        return sorted(layers, key=lambda layer: -layer.rmse_over_scale if math.isfinite(layer.rmse_over_scale) else 1)

    def with_float_layers(self, layers: Sequence[LayerError], quantization: Quantization) -> bytes:
        """The int8 (int8-io: integer inputs and outputs kept) flatbuffer with these layers in float."""
        import tensorflow as tf
        from tensorflow.lite.python.convert import mlir_quantize

        edges = tf.int8 if quantization is Quantization.INT8_IO else tf.float32
        flatbuffer = mlir_quantize(
            self.debugger.calibrated_model,
            input_data_type=edges,
            output_data_type=edges,
            denylisted_nodes=[layer.tensor for layer in layers],
        )
        return self.recipe.finish(bytes(flatbuffer))


def _signature_outputs(flatbuffer: bytes) -> dict[str, str]:
    """'output <key>' by the name of the tensor that is that signature output: a Keras model's last layer writes
    'StatefulPartitionedCall:0'. Empty for a frozen graph's model: no signature yet, and its tensors keep node names."""
    import tensorflow as tf

    interpreter = tf.lite.Interpreter(model_content=flatbuffer)
    if fmt.SERVING_SIGNATURE not in interpreter.get_signature_list():
        return {}
    outputs = interpreter.get_signature_runner(fmt.SERVING_SIGNATURE).get_output_details()
    return {str(detail["name"]): f"output {key}" for key, detail in outputs.items()}


def _ratio(mean_squared_error: str, scale: str) -> float:
    rmse, step = math.sqrt(float(mean_squared_error)), float(scale)
    return rmse / step if step > 0 else math.nan


def input_keys_in_order(tflite_path: Path) -> list[str]:
    """The signature keys of a .tflite's inputs in the order its interpreter lists them (the debugger's order)."""
    import tensorflow as tf

    interpreter = tf.lite.Interpreter(model_path=str(tflite_path))
    by_index = {
        detail["index"]: key
        for key, detail in interpreter.get_signature_runner(fmt.SERVING_SIGNATURE).get_input_details().items()
    }
    return [by_index[detail["index"]] for detail in interpreter.get_input_details()]


def try_int8_mixed(
    failed: Artifact,
    recipe: Int8Recipe,
    samples: Sequence[Sample],
    mixed_path: Path,
    check: CheckArtifact,
) -> MixedOutcome:
    """Keep the layers the failed int8 file quantizes worst in float, more each time, until it passes. The layers
    are ranked on the first DEBUG_SAMPLES of `samples`. Only a passing file is kept at `mixed_path`: an attempt that
    fails is deleted."""
    from tensorflow.lite.python.convert import ConverterError

    try:
        debugger = LayerDebugger(recipe, samples[:DEBUG_SAMPLES], input_keys_in_order(Path(failed.path)))
        layers = debugger.worst_layers()
    except (ConverterError, ValueError, RuntimeError) as error:
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
        return MixedOutcome(None, None, f"TensorFlow's quantization debugger could not rank its layers: {reason}")
    if not layers:
        return MixedOutcome(None, None, "TensorFlow's quantization debugger found no quantized layer to keep in float")
    mixed = MIXED_VARIANT[failed.quantization]
    verdict: ArtifactCheck | None = None
    for count in exemption_counts(len(layers)):
        kept = layers[:count]
        artifact = _write(mixed_path, _attempt(debugger, kept, failed.quantization), mixed)
        verdict = replace(check(artifact), float_layers=tuple(layer.name for layer in kept))
        if verdict.status == PASSED and count == len(layers):  # no layer left in int8: not an int8 model at all
            mixed_path.unlink(missing_ok=True)
            return MixedOutcome(None, None, _passes_only_in_float(layers, failed.quantization))
        if verdict.status == PASSED:
            return MixedOutcome(artifact, verdict, _passes(layers, verdict, artifact, failed))
        mixed_path.unlink(missing_ok=True)
        if verdict.status == ERROR:  # a file that does not run: more float layers will not mend it
            break
    assert verdict is not None  # layers is not empty, so one attempt ran
    return MixedOutcome(None, None, _still_fails(layers, verdict, failed.quantization))


def _attempt(debugger: LayerDebugger, layers: Sequence[LayerError], quantization: Quantization) -> bytes:
    from tensorflow.lite.python.convert import ConverterError

    try:
        return debugger.with_float_layers(layers, quantization)
    except (ConverterError, ValueError, RuntimeError) as error:
        log = f"{type(error).__name__}: {error}"
        names = ", ".join(layer.name for layer in layers)
        raise ConversionError(f"TFLite {quantization.value} with {names} in float failed: {log[:200]}", log) from None


def _write(path: Path, flatbuffer: bytes, quantization: Quantization) -> Artifact:
    path.write_bytes(flatbuffer)
    return Artifact.from_path(Target.TFLITE, path, quantization)


def _passes(layers: Sequence[LayerError], verdict: ArtifactCheck, mixed: Artifact, failed: Artifact) -> str:
    """'the layers it quantizes worst are h (FULLY_CONNECTED, RMSE/scale 2e+02), ...; int8 with h in float passes
    at 5.0e-03 of scale (19.3 KB against 7.2 KB): int8-mixed; that layer runs in float32, ...'."""
    kept = verdict.float_layers
    edges = " (its inputs and outputs still int8)" if failed.quantization is Quantization.INT8_IO else ""
    those = "that layer is" if len(kept) == 1 else f"those {len(kept)} layers are"
    return (
        f"{_worst_named(layers)}; {failed.quantization.value} with {listed(kept)} in float passes at "
        f"{worst_error(verdict):.1e} of scale ({format_size(mixed.size)} against {format_size(failed.size)}): "
        f"{mixed.quantization.value}{edges}; {those} float32, so the file runs on a phone's CPU but not entirely on "
        "an Edge TPU or a microcontroller"
    )


def _passes_only_in_float(layers: Sequence[LayerError], quantization: Quantization) -> str:
    every = "its only quantized layer" if len(layers) == 1 else f"all {len(layers)} of its quantized layers"
    return (
        f"{_worst_named(layers)}; {quantization.value} passes only with {every} in float, which leaves nothing in "
        "int8: use quant=dynamic or float16"
    )


def _still_fails(layers: Sequence[LayerError], verdict: ArtifactCheck, quantization: Quantization) -> str:
    if verdict.status == ERROR:
        kept = len(verdict.float_layers)
        return f"{_worst_named(layers)}; {quantization.value} with {kept} of its layers in float does not run: " + (
            verdict.message
        )
    every = "its only quantized layer" if len(layers) == 1 else f"all {len(layers)} of its quantized layers"
    edges = " (its int8 inputs and outputs kept)" if quantization is Quantization.INT8_IO else ""
    return (
        f"{_worst_named(layers)}; no exemption helps: with {every} ({listed([layer.name for layer in layers])}) "
        f"in float{edges} it is still off by {worst_error(verdict):.1e} of scale, over its {verdict.tolerance:g} "
        "tolerance"
    )


def _worst_named(layers: Sequence[LayerError]) -> str:
    """'the layers it quantizes worst are h (FULLY_CONNECTED, RMSE/scale 2e+02), xx (CONCATENATION, 0.3)'."""
    shown = layers[:NAMES_SHOWN]
    figures = [f"{layer.rmse_over_scale:.2g}" for layer in shown]
    figures[0] = f"RMSE/scale {figures[0]}"
    named = ", ".join(f"{layer.name} ({layer.op}, {figure})" for layer, figure in zip(shown, figures, strict=True))
    if len(layers) == 1:
        return f"the only layer it quantizes is {named}"
    return f"the layers it quantizes worst are {named}"

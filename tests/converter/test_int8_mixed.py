"""TFLite int8 that fails its check on the user's samples: TensorFlow's quantization debugger names the layers it
quantizes worst, and an int8-mixed file that keeps them in float is made, run in the TFLite interpreter and delivered
when it passes; when no exemption helps, that is said."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from converter.conversion import convert_in_process
from converter.formats import Quantization, Target
from converter.options import ConversionOptions
from converter.result import FAILED, PASSED, ConversionResult
from tests.converter.conftest import run_tflite
from tests.converter.test_mixed_quant import write_wide_then_plain_graph
from tests.test_cli import convbot
from tests.test_quant_auto import cancelling_weights

INT8_TOLERANCE = 1e-1  # converter/verify.py TOLERANCES for int8, int8-io and their mixed variants
SAMPLES = 20


def write_cancelling_dense_model(path: Path) -> Path:
    """y = plain(wide(concat(x, x))): `wide`'s weights hold +1000 for x[0] in its first copy and -1000 in its second,
    which cancel exactly, beside small ones in [0, 1) that make the output. int8 stores each output channel's
    weights on one scale set by the 1000s (about 8 per step), so the small weights round to 0 or 8 and `wide` breaks;
    kept in float, it cancels again. `plain` quantizes well."""
    import keras

    x = keras.Input((64,), name="x")
    both = keras.layers.Concatenate(name="xx")([x, x])
    hidden = keras.layers.Dense(32, name="wide")(both)
    y = keras.layers.Dense(16, name="plain")(hidden)
    model = keras.Model(x, y)
    plain = np.random.RandomState(4).uniform(-1, 1, (32, 16)).astype(np.float32)
    model.get_layer("wide").set_weights([cancelling_weights(), np.zeros(32, np.float32)])
    model.get_layer("plain").set_weights([plain, np.zeros(16, np.float32)])
    model.save(path)
    return path


def write_difference_model(path: Path) -> Path:
    """y = 1000 * (x[0] - x[1]), one Dense layer, on samples where x[1] is x[0] moved by under 0.002: int8 inputs
    step by 1/255, so rounding x alone wipes the difference out, whatever layer is kept in float."""
    import keras

    x = keras.Input((2,), name="x")
    y = keras.layers.Dense(1, name="difference")(x)
    model = keras.Model(x, y)
    model.get_layer("difference").set_weights([np.array([[1000.0], [-1000.0]], np.float32), np.zeros(1, np.float32)])
    model.save(path)
    return path


def _uniform_samples(path: Path) -> Path:
    np.savez(path, x=np.random.default_rng(0).uniform(0, 1, (SAMPLES, 64)).astype(np.float32))
    return path


def _nearly_equal_pairs(path: Path) -> Path:
    rng = np.random.default_rng(0)
    first = rng.uniform(0, 1, SAMPLES)
    second = first + rng.uniform(-0.002, 0.002, SAMPLES)
    np.savez(path, x=np.stack([first, second], axis=1).astype(np.float32))
    return path


def _convert(model: Path, calibration: Path, quantization: Quantization, tmp_path: Path) -> ConversionResult:
    options = ConversionOptions(
        targets=(Target.TFLITE,), tflite_quantization=quantization, calibration=str(calibration)
    )
    return convert_in_process(model, tmp_path / "out", options, tmp_path / "work")


def test_failing_int8_names_the_broken_layer_and_keeps_it_in_float(tmp_path: Path) -> None:
    import keras

    model = write_cancelling_dense_model(tmp_path / "cancelling.keras")
    samples = _uniform_samples(tmp_path / "samples.npz")
    result = _convert(model, samples, Quantization.INT8, tmp_path)

    checks = {check.quantization: check for check in result.validation}
    int8, mixed = checks[Quantization.INT8], checks[Quantization.INT8_MIXED]
    assert int8.status == FAILED
    assert "the layers it quantizes worst are " in int8.advice
    worst = int8.advice.split("the layers it quantizes worst are ")[1].split(",")[0]
    assert "wide" in worst, int8.advice
    assert "int8 with " in int8.advice and " in float passes at " in int8.advice
    assert int8.advice.endswith("not entirely on an Edge TPU or a microcontroller"), int8.advice
    assert mixed.status == PASSED and "wide" in mixed.float_layers[0]
    assert all(output.max_rel_error <= INT8_TOLERANCE for output in mixed.outputs)

    files = {artifact.quantization: artifact for artifact in result.artifacts}
    assert files[Quantization.INT8_MIXED].size > files[Quantization.INT8].size
    assert Path(files[Quantization.INT8_MIXED].path).name == "cancelling_mixed.tflite"
    # Run as an app runs it: close to the Keras model on the user's own samples, unlike the int8 file.
    reference = keras.saving.load_model(model)
    inputs = np.load(samples)["x"][:3]
    for path, off in ((files[Quantization.INT8_MIXED].path, False), (files[Quantization.INT8].path, True)):
        worst = max(_relative_error(reference, Path(path), row[None]) for row in inputs)
        assert (worst > INT8_TOLERANCE) is off, (path, worst)


def _relative_error(reference: object, tflite_path: Path, x: np.ndarray) -> float:
    expected = np.asarray(reference(x))  # type: ignore[operator]
    (got,) = run_tflite(tflite_path, {"x": x}).values()
    return float(np.abs(got - expected).max() / np.abs(expected).max())


def test_int8_io_with_nothing_to_exempt_says_so_and_keeps_no_mixed_file(tmp_path: Path) -> None:
    model = write_difference_model(tmp_path / "difference.keras")
    result = _convert(model, _nearly_equal_pairs(tmp_path / "pairs.npz"), Quantization.INT8_IO, tmp_path)

    (check,) = result.validation
    assert check.quantization is Quantization.INT8_IO and check.status == FAILED
    # Named by the output it writes: the tensor's own name is Keras's StatefulPartitionedCall:0.
    assert "the only layer it quantizes is output difference (FULLY_CONNECTED, RMSE/scale " in check.advice
    assert "; no exemption helps: with its only quantized layer (output difference" in check.advice, check.advice
    assert ") in float (its int8 inputs and outputs kept) it is still off by " in check.advice
    assert [artifact.quantization for artifact in result.artifacts] == [Quantization.INT8_IO]
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == ["difference.tflite"]


def test_failing_int8_io_from_a_frozen_graph_keeps_its_integer_inputs_and_outputs(tmp_path: Path) -> None:
    import tensorflow as tf

    model = write_wide_then_plain_graph(tmp_path / "wide.pb")  # the same cancelling weights, a graph's MatMul `h`
    result = _convert(model, _uniform_samples(tmp_path / "samples.npz"), Quantization.INT8_IO, tmp_path)

    checks = {check.quantization: check for check in result.validation}
    io, mixed = checks[Quantization.INT8_IO], checks[Quantization.INT8_IO_MIXED]
    assert io.status == FAILED and "the layers it quantizes worst are h (FULLY_CONNECTED, RMSE/scale " in io.advice
    assert ": int8-io-mixed (its inputs and outputs still int8); that layer is float32" in io.advice, io.advice
    assert mixed.status == PASSED and mixed.float_layers == ("h",)
    files = {artifact.quantization: Path(artifact.path) for artifact in result.artifacts}
    interpreter = tf.lite.Interpreter(model_path=str(files[Quantization.INT8_IO_MIXED]))
    edges = [*interpreter.get_input_details(), *interpreter.get_output_details()]
    assert [detail["dtype"] for detail in edges] == [np.int8, np.int8]
    assert files[Quantization.INT8_IO_MIXED].stat().st_size > files[Quantization.INT8_IO].stat().st_size


def test_quant_auto_counts_int8_mixed(tmp_path: Path) -> None:
    model = write_wide_then_plain_graph(tmp_path / "wide.pb")
    samples, out = _uniform_samples(tmp_path / "samples.npz"), tmp_path / "out"
    done = convbot(
        "convert", str(model), "--to", "tflite", "--quant", "auto", "--calibration", str(samples), "-o", str(out)
    )

    assert done.returncode == 0, done.stdout + done.stderr
    assert "tflite: int8-mixed (" in done.stdout and ": the smallest that passes; " in done.stdout, done.stdout
    assert [path.name for path in out.iterdir()] == ["wide_int8_mixed.tflite"]


def test_int8_that_passes_only_with_every_layer_in_float_is_not_offered_as_mixed(tmp_path: Path) -> None:
    """The difference model's one layer in float, with float inputs and outputs, is a float model: no int8 left,
    so no int8-mixed file; the advice says to use dynamic or float16."""
    model = write_difference_model(tmp_path / "difference.keras")
    result = _convert(model, _nearly_equal_pairs(tmp_path / "pairs.npz"), Quantization.INT8, tmp_path)

    (check,) = result.validation
    assert check.quantization is Quantization.INT8 and check.status == FAILED
    assert "int8 passes only with its only quantized layer in float, which leaves nothing in int8" in check.advice
    assert [artifact.quantization for artifact in result.artifacts] == [Quantization.INT8]
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == ["difference.tflite"]

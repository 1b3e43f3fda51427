"""TF.js uint8 that fails its check: the weights it rounds worst are named, and a uint8-mixed model that keeps them in
float16 is made, verified in TF.js (Node.js) and delivered when it passes; when no exemption helps, that is said."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from converter.conversion import convert_in_process
from converter.formats import Quantization, Target
from converter.options import ConversionOptions
from converter.protos import GraphDef
from converter.result import ConversionResult
from tests.test_cli import convbot
from tests.test_quant_auto import (
    _const,
    _input_x,
    _matmul,
    cancelling_weights,
    concat_twice,
    write_wide_cancelling_weights_graph,
)


def write_wide_then_plain_graph(path: Path) -> Path:
    """y = (concat(x, x) @ w) @ v: w is write_one_wide_weight_graph's (rows of +1000 and -1000 that cancel, the rest
    in [0, 1): 8-bit weights round the small ones away), v is a plain (32, 512) weight that uint8 keeps well and
    that is most of the file, so uint8 with w alone in float16 is far smaller than float16."""
    v = np.random.RandomState(4).uniform(-1, 1, (32, 512)).astype(np.float32)
    graph = GraphDef()
    hidden = _matmul(graph, "h", concat_twice(graph, "xx", _input_x(graph)), _const(graph, "w", cancelling_weights()))
    _matmul(graph, "y", hidden, _const(graph, "v", v))
    path.write_bytes(graph.SerializeToString())
    return path


def write_two_wide_weights_graph(path: Path) -> Path:
    """y = concat(h, h) @ w2 with h = concat(x, x) @ w1, both weights cancelling pairs of 1000s: uint8 fails with
    either one in float16, passes with both, which is the float16 model."""
    graph = GraphDef()
    w1, w2 = _const(graph, "w1", cancelling_weights()), _const(graph, "w2", cancelling_weights(64, 16, 4))
    hidden = _matmul(graph, "h", concat_twice(graph, "xx", _input_x(graph)), w1)
    _matmul(graph, "y", concat_twice(graph, "hh", hidden, axis="hh_axis"), w2)
    path.write_bytes(graph.SerializeToString())
    return path


def _convert_tfjs(model: Path, quantization: Quantization, tmp_path: Path) -> ConversionResult:
    options = ConversionOptions(targets=(Target.TFJS,), tfjs_quantization=quantization)
    out = tmp_path / f"out_{quantization.value}"
    return convert_in_process(model, out, options, tmp_path / f"work_{quantization.value}")


def _stored_dtypes(model_dir: Path) -> dict[str, str]:
    manifest = json.loads((model_dir / "model.json").read_text(encoding="utf-8"))
    return {
        weight["name"]: weight.get("quantization", {}).get("dtype", weight["dtype"])
        for group in manifest["weightsManifest"]
        for weight in group["weights"]
    }


def test_failing_uint8_names_the_wide_weight_and_keeps_it_in_float16(tmp_path: Path) -> None:
    model = write_wide_then_plain_graph(tmp_path / "wide.pb")
    result = _convert_tfjs(model, Quantization.UINT8, tmp_path)
    float16 = _convert_tfjs(model, Quantization.FLOAT16, tmp_path)

    checks = {check.quantization: check for check in result.validation}
    uint8, mixed = checks[Quantization.UINT8], checks[Quantization.UINT8_MIXED]
    assert uint8.status == "failed"
    assert "the weights it rounds worst are w; uint8 with that 1 in float16 passes at" in uint8.advice
    # The mixed model ran in TF.js (Node.js) and is within the uint8 tolerance, with w alone kept in float16.
    assert mixed.status == "passed" and mixed.engine, mixed
    assert mixed.float_weights == ("w",)
    assert max(output.max_rel_error for output in mixed.outputs) <= mixed.tolerance == uint8.tolerance
    artifacts = {artifact.quantization: artifact for artifact in result.artifacts}
    mixed_dir = Path(artifacts[Quantization.UINT8_MIXED].path)
    assert _stored_dtypes(mixed_dir) == {"w": "float16", "v": "uint8", "axis": "int32"}
    # Smaller than float16 (v is most of the file), a little larger than the uint8 that failed.
    float16_size = float16.artifacts[0].size
    assert artifacts[Quantization.UINT8].size < artifacts[Quantization.UINT8_MIXED].size < 0.7 * float16_size


def test_when_no_exemption_helps_it_is_said_and_no_mixed_model_is_left(tmp_path: Path) -> None:
    model = write_wide_cancelling_weights_graph(tmp_path / "margin.pb")
    result = _convert_tfjs(model, Quantization.UINT8, tmp_path)

    (uint8,) = result.validation
    assert uint8.status == "failed"
    assert "no exemption helps: with all 2 of its quantized weights (" in uint8.advice
    assert "in float16 it is still off by" in uint8.advice and "over its 0.1 tolerance" in uint8.advice
    assert [artifact.quantization for artifact in result.artifacts] == [Quantization.UINT8]
    assert sorted(path.name for path in (tmp_path / "out_uint8").iterdir()) == ["margin_tfjs"]


def test_quant_auto_keeps_the_mixed_model_when_it_is_the_smallest_that_passes(tmp_path: Path) -> None:
    model = write_wide_then_plain_graph(tmp_path / "wide.pb")
    out = tmp_path / "out"
    done = convbot("convert", str(model), "--to", "tfjs", "--quant", "auto", "-o", str(out), "--json")

    assert done.returncode == 0, done.stderr
    (choice,) = json.loads(done.stdout)["choices"]
    tried = {variant["quantization"]: variant for variant in choice["tried"]}
    assert tried["uint8"]["status"] == "failed" and tried["float16"]["status"] == "passed"
    assert choice["kept"]["quantization"] == "uint8-mixed" and choice["kept"]["status"] == "passed"
    assert choice["kept"]["size"] < tried["float16"]["size"]
    assert sorted(path.name for path in out.iterdir()) == ["wide_uint8_mixed_tfjs"]


def write_wide_then_plain_keras(path: Path) -> Path:
    """write_wide_then_plain_graph's model as Keras layers (x @ w @ v, no biases), saved as a .keras file: a
    source whose own graph holds its weights as captured variables, not as constants named as TF.js names them."""
    import keras

    x = keras.Input((128,), name="x")
    hidden = keras.layers.Dense(32, use_bias=False, name="wide")(x)
    model = keras.Model(x, keras.layers.Dense(512, use_bias=False, name="plain")(hidden))
    model.get_layer("wide").set_weights([cancelling_weights()])
    model.get_layer("plain").set_weights([np.random.RandomState(4).uniform(-1, 1, (32, 512)).astype(np.float32)])
    model.save(path)
    return path


def test_a_keras_source_gets_its_uint8_mixed_model_too(tmp_path: Path) -> None:
    """Ranked on the float32 TF.js model's graph, whose weight names are the uint8 model's."""
    model = write_wide_then_plain_keras(tmp_path / "wide.keras")
    result = _convert_tfjs(model, Quantization.UINT8, tmp_path)

    checks = {check.quantization: check for check in result.validation}
    uint8, mixed = checks[Quantization.UINT8], checks[Quantization.UINT8_MIXED]
    assert uint8.status == "failed"
    (kept,) = mixed.float_weights
    assert "wide" in kept and "uint8 with that 1 in float16 passes at" in uint8.advice
    assert mixed.status == "passed" and mixed.engine
    assert max(output.max_rel_error for output in mixed.outputs) <= mixed.tolerance == uint8.tolerance
    artifacts = {artifact.quantization: artifact for artifact in result.artifacts}
    stored = _stored_dtypes(Path(artifacts[Quantization.UINT8_MIXED].path))
    assert stored[kept] == "float16" and [dtype for name, dtype in stored.items() if name != kept] == ["uint8"]


def test_a_uint8_that_passes_only_with_every_weight_in_float16_is_not_offered_as_mixed(tmp_path: Path) -> None:
    """With all its quantized weights in float16 a uint8-mixed model is the float16 model: said, not delivered
    under another name (it was, and quant=auto circled it beside float16)."""
    model = write_two_wide_weights_graph(tmp_path / "two_wide.pb")
    result = _convert_tfjs(model, Quantization.UINT8, tmp_path)

    (uint8,) = result.validation
    assert uint8.status == "failed"
    assert "it passes only with all 2 of its quantized weights in float16, which is the float16 model" in uint8.advice
    assert [artifact.quantization for artifact in result.artifacts] == [Quantization.UINT8]
    assert sorted(path.name for path in (tmp_path / "out_uint8").iterdir()) == ["two_wide_tfjs"]

"""`--quant auto` and `--plot` as a user runs them: per target the smallest file that passes is the one left in the
output folder, float32 when nothing quantized passes, and the picture is a real PNG of the figures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from converter.formats import Quantization, Target
from converter.protos import GraphDef
from tests.test_cli import convbot

if TYPE_CHECKING:
    from converter.quant_choice import TriedVariant

FLOAT, INT32 = 1, 3  # DataType enum values


def _const(graph: GraphDef, name: str, value: np.ndarray) -> str:
    node = graph.node.add(name=name, op="Const")
    node.attr["dtype"].type = INT32 if value.dtype == np.int32 else FLOAT
    tensor = node.attr["value"].tensor
    tensor.dtype = node.attr["dtype"].type
    for size in value.shape:
        tensor.tensor_shape.dim.add().size = size
    tensor.tensor_content = value.tobytes()
    return name


def _matmul(graph: GraphDef, name: str, a: str, b: str) -> str:
    node = graph.node.add(name=name, op="MatMul", input=[a, b])
    node.attr["T"].type = FLOAT
    node.attr["transpose_a"].b = node.attr["transpose_b"].b = False
    return name


def _input_x(graph: GraphDef) -> str:
    node = graph.node.add(name="x", op="Placeholder")
    node.attr["dtype"].type = FLOAT
    for size in (1, 64):
        node.attr["shape"].shape.dim.add().size = size
    return "x"


def cancelling_weights(rows: int = 128, columns: int = 32, seed: int = 3) -> np.ndarray:
    """Rows 0 and rows/2 are +1000 and -1000 (they cancel on concat(v, v): v0 meets both), the rest in [0, 1).
    float16 and uint16 keep the small weights; 8-bit weights, whose step the 1000s set (about 8), round them away."""
    w = np.zeros((rows, columns), np.float32)
    w[1 : rows // 2] = np.random.RandomState(seed).uniform(0, 1, (rows // 2 - 1, columns))
    w[0], w[rows // 2] = 1000, -1000
    return w


def concat_twice(graph: GraphDef, name: str, value: str, axis: str = "axis") -> str:
    """concat(value, value) on the last axis, as node `name` (its axis a Const named `axis`)."""
    concat = graph.node.add(name=name, op="ConcatV2", input=[value, value, _const(graph, axis, np.array(1, np.int32))])
    concat.attr["N"].i = 2
    concat.attr["T"].type = FLOAT
    concat.attr["Tidx"].type = INT32
    return name


def write_one_wide_weight_graph(path: Path) -> Path:
    """y = concat(x, x) @ w, w the cancelling weights: TFLite dynamic and TF.js uint8 fail, though they are the
    smallest files."""
    graph = GraphDef()
    _matmul(graph, "y", concat_twice(graph, "xx", _input_x(graph)), _const(graph, "w", cancelling_weights()))
    path.write_bytes(graph.SerializeToString())
    return path


def write_wide_cancelling_weights_graph(path: Path) -> Path:
    """margin = x @ (w + 0.3) - x @ w, w in [-1e4, 1e4]: every quantized variant's rounding of w (float16 by up to
    4, uint16 by 0.15) swamps the 0.3 the output is made of; float32 passes."""
    w = np.random.RandomState(3).uniform(-1e4, 1e4, (64, 32)).astype(np.float32)
    graph = GraphDef()
    x = _input_x(graph)
    wide = _matmul(graph, "wide", x, _const(graph, "w_plus", w + np.float32(0.3)))
    sub = graph.node.add(name="margin", op="Sub", input=[wide, _matmul(graph, "plain", x, _const(graph, "w", w))])
    sub.attr["T"].type = FLOAT
    path.write_bytes(graph.SerializeToString())
    return path


def _read_png(path: Path) -> Any:
    import matplotlib.image

    return matplotlib.image.imread(path)


def _colours(image: Any) -> int:
    return len(np.unique(image.reshape(-1, image.shape[-1]), axis=0))


def test_auto_keeps_per_target_the_smallest_file_that_passes(tmp_path: Path) -> None:
    model = write_one_wide_weight_graph(tmp_path / "wide.pb")
    out, chart = tmp_path / "out", tmp_path / "chart.png"
    done = convbot("convert", str(model), "--quant", "auto", "-o", str(out), "--json", "--plot", str(chart))

    assert done.returncode == 0, done.stderr
    choices = {choice["target"]: choice for choice in json.loads(done.stdout)["choices"]}
    assert set(choices) == {"tflite", "tfjs"}
    for target, smallest_kind in (("tflite", "dynamic"), ("tfjs", "uint8")):
        choice, kept = choices[target], choices[target]["kept"]
        tried = {variant["quantization"]: variant for variant in choice["tried"]}
        assert kept["status"] == "passed", choice
        assert kept["size"] == min(v["size"] for v in tried.values() if v["status"] == "passed")
        smaller = [v for v in tried.values() if v["size"] < kept["size"]]
        assert smaller and all(v["status"] == "failed" for v in smaller), choice  # the rule mattered
        assert tried[smallest_kind]["status"] == "failed"  # 8-bit weights: the smallest file, off
        assert f"{smallest_kind} (" in choice["reason"] and "over its 0.1 tolerance" in choice["reason"]
    # Exactly the two kept artifacts are left, and they are the ones the table names.
    assert sorted(str(path) for path in out.iterdir()) == sorted(choice["kept"]["path"] for choice in choices.values())
    image = _read_png(chart)
    assert image.shape[:2] == (500, 1000) and _colours(image) > 8


def test_auto_falls_back_to_float32_when_nothing_quantized_passes(tmp_path: Path) -> None:
    model = write_wide_cancelling_weights_graph(tmp_path / "margin.pb")
    out = tmp_path / "out"
    done = convbot("convert", str(model), "--quant", "auto", "-o", str(out))

    assert done.returncode == 0, done.stdout + done.stderr
    assert sorted(path.name for path in out.iterdir()) == ["margin_float32.tflite", "margin_float32_tfjs"]
    rows = [line.split() for line in done.stdout.splitlines() if line.startswith(("tflite ", "tfjs "))]
    # Everything tried is in the table, the quantized ones failed, float32 kept.
    assert sorted((row[0], row[1]) for row in rows) == [
        ("tfjs", "float16"),
        ("tfjs", "none"),
        ("tfjs", "uint16"),
        ("tfjs", "uint8"),
        ("tflite", "dynamic"),
        ("tflite", "float16"),
        ("tflite", "none"),
    ]
    for row in rows:
        assert row[-1] == "kept" if row[1] == "none" else row[-1] == "FAILED", row
    assert "tflite: none (" in done.stdout and "no smaller variant passes, so float32 is kept" in done.stdout


def test_compare_quant_draws_its_variants(tmp_path: Path) -> None:
    model = write_one_wide_weight_graph(tmp_path / "wide.pb")
    chart = tmp_path / "compare.png"
    done = convbot(
        "convert", str(model), "--to", "tflite", "--compare-quant", "-o", str(tmp_path / "out"), "--plot", str(chart)
    )

    assert done.returncode == 2, done.stderr  # dynamic fails, as the table says
    assert "tflite  dynamic" in done.stdout and "FAILED" in done.stdout
    image = _read_png(chart)
    assert image.shape[:2] == (500, 1000) and _colours(image) > 8


def test_plot_without_variants_is_refused_before_converting(tmp_path: Path) -> None:
    done = convbot("convert", str(tmp_path / "absent.pb"), "--plot", str(tmp_path / "x.png"))
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "convbot: --plot draws the variants of --compare-quant or --quant auto; add one of them"
    )


def _variant(
    target: Target, quantization: Quantization, size_kb: float, error: float, tolerance: float
) -> TriedVariant:
    from converter.quant_choice import TriedVariant

    status = "passed" if error <= tolerance else "failed"
    return TriedVariant(target, quantization, status, int(size_kb * 1024), error, tolerance, f"/m_{quantization}")


def test_the_picture_is_a_png_of_the_figures(tmp_path: Path) -> None:
    from converter.quant_plot import write_size_error_plot

    tried = [
        _variant(Target.TFLITE, Quantization.NONE, 233, 1.5e-6, 1e-4),
        _variant(Target.TFLITE, Quantization.FLOAT16, 128, 1.2e-3, 1e-2),
        _variant(Target.TFLITE, Quantization.DYNAMIC, 92, 4.6e-2, 1e-1),
        _variant(Target.TFJS, Quantization.NONE, 255, 0.0, 1e-4),  # exact: drawn at the floor
        _variant(Target.TFJS, Quantization.UINT8, 95, 3.6e-1, 1e-1),
        _variant(Target.TFJS, Quantization.UINT16, 150, 5.4e-4, 1e-2),
    ]
    first, second = tmp_path / "first.png", tmp_path / "second.png"
    write_size_error_plot(tried, first, kept=[tried[2], tried[5]])
    moved = [*tried[:4], _variant(Target.TFJS, Quantization.UINT8, 95, 3.6e-2, 1e-1), tried[5]]
    write_size_error_plot(moved, second, kept=[moved[2], moved[4]])

    image = _read_png(first)
    assert first.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert image.shape[:2] == (500, 1000)
    assert _colours(image) > 8  # markers in several colours, lines, text: not blank
    assert not np.array_equal(image, _read_png(second))  # uint8 moved under its tolerance, and is kept


def test_auto_with_samples_tries_a_full_integer_tflite_too(tmp_path: Path) -> None:
    model = write_one_wide_weight_graph(tmp_path / "wide.pb")
    samples = tmp_path / "samples.npz"
    np.savez(samples, x=np.random.default_rng(5).random((16, 64), dtype=np.float32))
    out = tmp_path / "out"
    done = convbot(
        "convert",
        str(model),
        "--to",
        "tflite",
        "--quant",
        "auto",
        "--calibration",
        str(samples),
        "-o",
        str(out),
        "--json",
    )

    assert done.returncode == 0, done.stdout + done.stderr
    (choice,) = json.loads(done.stdout)["choices"]
    tried = {variant["quantization"]: variant for variant in choice["tried"]}
    # int8 calibrated on the samples, beside the others; an int8-mixed file too when int8 fails and it passes
    assert set(tried) - {"int8-mixed"} == {"none", "float16", "dynamic", "int8"}
    assert tried["int8"]["status"] in ("passed", "failed")  # it ran in the interpreter: a verdict, not an error
    kept = choice["kept"]
    assert kept["size"] == min(v["size"] for v in tried.values() if v["status"] == "passed")
    assert [path.name for path in out.iterdir()] == [Path(kept["path"]).name]


def test_a_variant_that_cannot_be_made_is_an_error_in_the_table_not_the_end_of_auto(tmp_path: Path) -> None:
    """A detector whose NMS has no integer kernel: int8 is refused by name in its row, and auto still chooses
    among the variants that were made (before, the refusal ended the whole run)."""
    from bench.model_factory import write_ssd

    model = write_ssd(tmp_path / "ssd.pb")
    samples = tmp_path / "samples.npz"
    np.savez(samples, image=np.random.default_rng(6).integers(0, 256, (8, 8, 8, 3), dtype=np.uint8))
    out = tmp_path / "out"
    done = convbot(
        "convert", str(model), "--to", "tflite", "--quant", "auto", "--calibration", str(samples), "-o", str(out),
        "--json",
    )  # fmt: skip

    assert done.returncode == 0, done.stdout + done.stderr
    (choice,) = json.loads(done.stdout)["choices"]
    tried = {variant["quantization"]: variant for variant in choice["tried"]}
    assert tried["int8"]["status"] == "error" and tried["int8"]["path"] == ""
    assert "no integer kernel for" in tried["int8"]["message"] and "NON_MAX_SUPPRESSION_V5" in tried["int8"]["message"]
    assert {tried[name]["status"] for name in ("none", "float16", "dynamic")} == {"passed"}
    assert choice["kept"]["status"] == "passed"
    assert [path.name for path in out.iterdir()] == [Path(choice["kept"]["path"]).name]

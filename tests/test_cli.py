"""The `convbot` command as a user runs it: tables, JSON, one-line errors and exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def convbot(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args], cwd=ROOT, capture_output=True, text=True, timeout=600
    )


def test_inspect_prints_the_suggestions(multihead_graph) -> None:
    done = convbot("inspect", str(multihead_graph.path))
    assert done.returncode == 0, done.stderr
    assert "suggested outputs:" in done.stdout
    outputs = done.stdout.split("suggested outputs:")[1]
    assert outputs.index("heatmap") < outputs.index("displacement_bwd_2")


def test_inspect_a_checkpoint_names_it(tmp_path: Path) -> None:
    from bench import model_factory

    checkpoint = model_factory.write_tf1_checkpoint(tmp_path / "ckpt.zip")
    done = convbot("inspect", str(checkpoint.path))
    assert done.returncode == 0, done.stderr
    assert "format:  tf1-checkpoint" in done.stdout and "details: checkpoint model.ckpt-2, variables 5" in done.stdout


def test_a_reader_that_leaves_early_gets_no_traceback(tmp_path: Path) -> None:
    """`convbot inspect big.pb --all-nodes | head -1`: far more than a pipe holds, and the reader goes."""
    from converter.protos import GraphDef

    graph = GraphDef()
    graph.node.add(name="image", op="Placeholder").attr["dtype"].type = 1
    for index in range(3000):
        node = graph.node.add(name=f"block_{index:04d}/a_long_enough_node_name", op="Identity")
        node.input.append("image" if index == 0 else graph.node[index].name)
    big = tmp_path / "big.pb"
    big.write_bytes(graph.SerializeToString())
    process = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "inspect", "--all-nodes", str(big)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None and process.stdout.readline().startswith(b"model:")
    process.stdout.close()
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 141 and b"Traceback" not in stderr, stderr.decode()


def test_bad_input_is_one_line_and_exit_1(tmp_path: Path) -> None:
    junk = tmp_path / "photo.jpg"
    junk.write_bytes(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 40)
    done = convbot("inspect", str(junk))
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "convbot: not a model convbot can read; send a frozen graph (.pb), a Keras model (.h5/.keras), "
        "or a SavedModel, TF.js graph model or TF1 checkpoint as one .zip/.tar.gz"
    ]
    assert "Traceback" not in done.stderr


def test_convert_with_options_and_json(multihead_graph, tmp_path: Path) -> None:
    done = convbot(
        "convert",
        str(multihead_graph.path),
        "--to",
        "tflite",
        "--outputs",
        "heatmap,offset_2",
        "--quant",
        "float16",
        "-o",
        str(tmp_path),
        "--json",
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert [o["name"] for o in result["outputs"]] == ["heatmap", "offset_2"]
    (artifact,) = result["artifacts"]
    assert artifact["quantization"] == "float16"
    assert Path(artifact["path"]) == tmp_path / "pose.tflite"


def test_convert_bad_option_names_the_fix(multihead_graph, tmp_path: Path) -> None:
    done = convbot("convert", str(multihead_graph.path), "--quant", "int4", "-o", str(tmp_path))
    assert done.returncode == 1
    assert (
        done.stderr.strip()
        == "convbot: unknown quantization 'int4'; use none, float16, dynamic, uint8, uint16, int8 or int8-io"
    )


def test_a_file_that_fails_to_run_is_not_kept_and_the_others_are(tmp_path: Path) -> None:
    """TF.js converts an Einsum "ii->i" but cannot execute it: the TF.js folder is not left in the output folder as
    if it were a result, the .tflite (which runs and is right) is, and the exit status says a target failed."""
    import numpy as np

    from bench import model_factory
    from tests.converter.conftest import random_input, run_tflite

    model = model_factory.write_einsum_diagonal_graph(tmp_path / "diag.pb").path
    out = tmp_path / "out"
    done = convbot("convert", str(model), "--to", "tflite,tfjs", "-o", str(out))

    assert done.returncode == 2, done.stderr
    assert sorted(path.name for path in out.iterdir()) == ["diag.tflite"]
    assert "not kept: TF.js failed at execute: Found duplicate axes" in done.stdout
    x = random_input((3, 3), seed=5)
    np.testing.assert_allclose(run_tflite(out / "diag.tflite", {"x": x})["diag"], np.diag(x))


def test_a_target_that_cannot_be_converted_does_not_stop_the_others(tmp_path: Path) -> None:
    """TF.js has no Lgamma, TFLite runs it with Select TF ops: the .tflite is written and checked, TF.js is said to
    have failed, and the exit status says a target failed."""
    from bench import model_factory

    model = model_factory.write_lgamma_graph(tmp_path / "lgamma.pb").path
    out = tmp_path / "out"
    done = convbot("convert", str(model), "--to", "tflite,tfjs", "-o", str(out))

    assert done.returncode == 2, done.stderr
    assert sorted(path.name for path in out.iterdir()) == ["lgamma.tflite"]
    assert "not kept: TF.js conversion failed: Lgamma" in done.stdout
    tflite_rows = [line for line in done.stdout.splitlines() if line.startswith("tflite ") and " y " in line]
    assert tflite_rows and all(" passed " in row for row in tflite_rows), done.stdout

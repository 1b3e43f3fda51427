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


def test_bad_input_is_one_line_and_exit_1(tmp_path: Path) -> None:
    junk = tmp_path / "photo.jpg"
    junk.write_bytes(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 40)
    done = convbot("inspect", str(junk))
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "convbot: not a model convbot can read; send a frozen graph (.pb), a SavedModel (.zip/.tar.gz) "
        "or a Keras model (.h5/.keras)"
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
    assert done.stderr.strip() == "convbot: unknown quantization 'int4'; use none, float16, dynamic, uint8 or uint16"

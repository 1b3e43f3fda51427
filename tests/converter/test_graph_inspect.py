"""Inspection of frozen graphs suggests the inputs and outputs a person would pick."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from converter import ModelSummary, inspect
from converter.graph_inspect import describe_nodes, suggest_outputs
from converter.protos import GraphDef

ROOT = Path(__file__).resolve().parents[2]


def test_tf1_graph_suggestions_are_exactly_the_head(tf1_graph) -> None:
    summary = inspect(tf1_graph.path)
    assert [s.name for s in summary.suggested_outputs] == ["probabilities"]
    required = [s.name for s in summary.suggested_inputs if not s.optional]
    optional = [s.name for s in summary.suggested_inputs if s.optional]
    assert required == ["input"]
    assert optional == ["is_training", "keep_prob"]  # the Saver's save/filename is not offered
    assert summary.suggested_inputs[0].shape == (None, 16, 16, 3)
    assert summary.suggested_inputs[0].dtype == "float32"
    # Every leftover sink exists in the graph but is not suggested.
    names = {node.name for node in summary.nodes}
    assert set(tf1_graph.leftover_sinks) <= names


def test_text_graph_gives_the_same_suggestions(tf1_graph) -> None:
    binary = inspect(tf1_graph.path)
    text = inspect(tf1_graph.extra_paths[0])
    assert text.suggested_outputs == binary.suggested_outputs
    assert text.suggested_inputs == binary.suggested_inputs
    assert text.node_count == binary.node_count


def test_multihead_graph_suggests_the_four_pose_heads(multihead_graph) -> None:
    summary = inspect(multihead_graph.path)
    assert [s.name for s in summary.suggested_outputs] == [
        "heatmap",
        "offset_2",
        "displacement_fwd_2",
        "displacement_bwd_2",
    ]
    assert [(s.name, s.shape) for s in summary.suggested_inputs] == [("image", (1, 33, 33, 3))]
    assert summary.op_histogram["Conv2D"] > 0
    assert summary.readiness.tflite_builtin_ok and summary.readiness.tfjs_ok


def _graph(nodes: list[tuple[str, str, list[str]]]) -> GraphDef:
    graph = GraphDef()
    for name, op, inputs in nodes:
        node = graph.node.add()
        node.name, node.op = name, op
        node.input.extend(inputs)
    return graph


def test_control_and_indexed_references_count_as_consumption() -> None:
    graph = _graph(
        [
            ("x", "Placeholder", []),
            ("split", "Split", ["x"]),
            ("a", "Relu", ["split:1"]),
            ("guard", "Identity", ["x"]),
            ("b", "Softmax", ["a", "^guard"]),
            ("bias", "BiasAdd", ["x"]),
            ("unused_const", "Const", []),
            ("loss", "Mean", ["a"]),
            ("gradients/Shape", "Shape", ["loss"]),  # the loss feeds the gradients: not an output
            ("summaries/b", "HistogramSummary", ["b"]),
            ("save/SaveV2", "SaveV2", ["x"]),
        ]
    )
    outputs = [s.name for s in suggest_outputs(describe_nodes(graph))]
    # split (consumed as split:1) and guard (^guard) are not outputs, nor the loss; a summary does not hide b.
    assert outputs == ["b", "bias"]


def test_summary_round_trips_through_json(tf1_graph) -> None:
    summary = inspect(tf1_graph.path)
    again = ModelSummary.from_dict(json.loads(json.dumps(summary.to_dict())))
    assert again == summary


def test_inspect_cli_json_without_importing_tensorflow(multihead_graph) -> None:
    code = (
        "import sys, json, io, contextlib\n"
        "from cli.main import main\n"
        "buffer = io.StringIO()\n"
        "with contextlib.redirect_stdout(buffer):\n"
        f"    status = main(['inspect', {str(multihead_graph.path)!r}, '--json'])\n"
        "report = {'status': status, 'tf': 'tensorflow' in sys.modules, 'summary': json.loads(buffer.getvalue())}\n"
        "print(json.dumps(report))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["status"] == 0
    assert report["tf"] is False
    assert report["summary"]["suggested_outputs"][0]["name"] == "heatmap"

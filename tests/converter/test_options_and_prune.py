"""Option parsing and graph pruning: pure functions, no TensorFlow."""

from __future__ import annotations

import pytest

from converter import BadOptionsError, Quantization
from converter.options import parse_shape, parse_targets, split_quantization
from converter.protos import GraphDef
from converter.prune import clean_name, prune_graph, resolve_names


def test_names_are_cleaned_of_what_people_paste() -> None:
    assert clean_name(" 'detection_boxes' ") == "detection_boxes"  # tensorflow/models #5720
    assert clean_name('"scope/out:0"') == "scope/out"
    with pytest.raises(BadOptionsError, match="only a node's first output"):
        clean_name("split:1")
    assert resolve_names(["out"], ["import/out", "x"]) == ["import/out"]


def test_shapes_targets_and_quantization_parse() -> None:
    assert parse_shape("input:0:1,224,224,3") == ("input:0", (1, 224, 224, 3))
    with pytest.raises(BadOptionsError, match="positive"):
        parse_shape("image:1,-1,3")
    assert parse_shape("downsample_ratio:scalar") == ("downsample_ratio", ())
    with pytest.raises(BadOptionsError, match="ratio:scalar"):
        parse_shape("ratio:0")
    assert [t.value for t in parse_targets("all")] == ["tflite", "tfjs"]
    assert [t.value for t in parse_targets("PB, savedmodel")] == ["pb", "savedmodel"]
    with pytest.raises(BadOptionsError, match="pb, savedmodel"):
        parse_targets("onnx")
    assert split_quantization("dynamic")[:2] == (Quantization.DYNAMIC, Quantization.UINT8)
    tflite, tfjs, warnings = split_quantization("uint16")
    assert (tflite, tfjs) == (Quantization.NONE, Quantization.UINT16) and "16-bit" in warnings[0]
    assert split_quantization("tflite:float16,tfjs:uint8")[:2] == (Quantization.FLOAT16, Quantization.UINT8)


def _graph() -> GraphDef:
    graph = GraphDef()

    def add(name: str, op: str, inputs: list[str], dtype: int = 1) -> None:
        node = graph.node.add()
        node.name, node.op = name, op
        node.input.extend(inputs)
        node.attr["T" if op not in ("Placeholder", "PlaceholderWithDefault", "Const") else "dtype"].type = dtype

    add("x", "Placeholder", [])
    add("keep_prob/default", "Const", [])
    add("keep_prob", "PlaceholderWithDefault", ["keep_prob/default"])
    add("check", "Assert", ["x"])
    add("features", "Mul", ["x", "keep_prob", "^check"])
    add("logits", "BiasAdd", ["features"])
    add("probs", "Softmax", ["logits"])
    add("loss", "Mean", ["logits", "labels"])
    add("labels", "Placeholder", [])
    return graph


def test_prune_keeps_what_outputs_need_and_freezes_defaults() -> None:
    pruned = prune_graph(_graph(), ["x"], ["probs"], {"x": (1, 4)})
    nodes = {node.name: node for node in pruned.node}
    assert set(nodes) == {"x", "keep_prob/default", "keep_prob", "features", "logits", "probs"}
    assert nodes["keep_prob"].op == "Identity" and list(nodes["keep_prob"].input) == ["keep_prob/default"]
    assert "^check" not in nodes["features"].input  # the Assert is cut, not carried into TF.js
    assert [d.size for d in nodes["x"].attr["shape"].shape.dim] == [1, 4]


def test_a_scalar_input_is_a_placeholder_of_rank_zero() -> None:
    pruned = prune_graph(_graph(), ["x", "keep_prob"], ["probs"], {"x": (1, 4), "keep_prob": ()})
    keep_prob = next(node for node in pruned.node if node.name == "keep_prob")
    assert keep_prob.op == "Placeholder" and keep_prob.attr["shape"].HasField("shape")
    assert not keep_prob.attr["shape"].shape.unknown_rank and len(keep_prob.attr["shape"].shape.dim) == 0


def test_prune_from_an_intermediate_node() -> None:
    pruned = prune_graph(_graph(), ["features"], ["probs"], {"features": (1, 8)})
    nodes = {node.name: node for node in pruned.node}
    assert set(nodes) == {"features", "logits", "probs"}
    assert nodes["features"].op == "Placeholder" and not nodes["features"].input


def test_prune_says_which_input_is_missing() -> None:
    with pytest.raises(BadOptionsError, match="also need the input labels; add it to the inputs"):
        prune_graph(_graph(), ["x"], ["loss"])


@pytest.mark.parametrize("name", ["uint8-mixed", "int8-mixed", "tflite:int8-io-mixed"])
def test_a_mixed_kind_is_not_asked_for_by_name(name: str) -> None:
    """uint8-mixed and int8-mixed are made when uint8 or int8 fails its check; asked for, they would be converted
    as something else."""
    made = name.partition(":")[2] or name
    with pytest.raises(BadOptionsError, match=f"{made} is made by itself when {made.removesuffix('-mixed')} fails"):
        split_quantization(name)

"""Write a large frozen graph (default ~100 MB, tens of thousands of nodes) without TensorFlow.

It is shaped like a real network: a chain of conv blocks whose weights are Const nodes, with
enough small nodes in between to reach the node count. Only inspection reads it; it is never run.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from converter.protos import GraphDef

DT_FLOAT = 1


def _const(graph: GraphDef, name: str, shape: tuple[int, ...], payload: bytes) -> None:
    node = graph.node.add()
    node.name, node.op = name, "Const"
    node.attr["dtype"].type = DT_FLOAT
    tensor = node.attr["value"].tensor
    tensor.dtype = DT_FLOAT
    for size in shape:
        tensor.tensor_shape.dim.add().size = size
    tensor.tensor_content = payload


def _op(graph: GraphDef, name: str, op: str, inputs: list[str]) -> None:
    node = graph.node.add()
    node.name, node.op = name, op
    node.input.extend(inputs)
    node.attr["T"].type = DT_FLOAT


def make_big_graph(target_mb: float = 100.0, blocks: int = 5000) -> GraphDef:
    """A graph of `blocks` conv blocks holding about `target_mb` megabytes of weights."""
    graph = GraphDef()
    graph.versions.producer = 1
    image = graph.node.add()
    image.name, image.op = "image", "Placeholder"
    image.attr["dtype"].type = DT_FLOAT
    for size in (1, 224, 224, 3):
        image.attr["shape"].shape.dim.add().size = size
    per_block = int(target_mb * 1024 * 1024 / blocks) // 4
    payload = bytes(range(256)) * (per_block * 4 // 256 + 1)
    previous = "image"
    for index in range(blocks):
        scope = f"net/block_{index}"
        _const(graph, f"{scope}/weights", (per_block,), payload[: per_block * 4])
        _const(graph, f"{scope}/bias", (1,), b"\0\0\0\0")
        _op(graph, f"{scope}/Conv2D", "Conv2D", [previous, f"{scope}/weights"])
        _op(graph, f"{scope}/BiasAdd", "BiasAdd", [f"{scope}/Conv2D", f"{scope}/bias"])
        _op(graph, f"{scope}/Relu6", "Relu6", [f"{scope}/BiasAdd"])
        previous = f"{scope}/Relu6"
    _op(graph, "net/logits", "Reshape", [previous])
    _op(graph, "net/probabilities", "Softmax", ["net/logits"])
    return graph


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("output", type=Path)
    parser.add_argument("--mb", type=float, default=100.0)
    parser.add_argument("--blocks", type=int, default=5000)
    args = parser.parse_args()
    args.output.write_bytes(make_big_graph(args.mb, args.blocks).SerializeToString())
    print(f"wrote {args.output} ({args.output.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()

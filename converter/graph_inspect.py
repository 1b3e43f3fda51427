"""Read a frozen GraphDef and suggest its inputs and outputs, without TensorFlow.

A frozen graph of a real network holds hundreds of nodes; people used to print them all and
guess. The rules here make that guess the way a person would: placeholders are inputs, and
outputs are the nodes nothing else consumes, minus the leftovers of training.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from google.protobuf import text_format

from converter.errors import UnsupportedModelError
from converter.protos import DecodeError, GraphDef, WireFormatError, dtype_name, top_level_fields
from converter.summary import NodeInfo, Shape, TensorSpec

INPUT_OPS = frozenset({"Placeholder", "PlaceholderV2"})
OPTIONAL_INPUT_OPS = frozenset({"PlaceholderWithDefault"})
# Ops that end a network: classifier and detector heads, ranked first.
HEAD_OPS = frozenset({"Softmax", "Sigmoid", "LogSoftmax", "ArgMax", "ArgMin", "TopKV2", "Tanh", "NonMaxSuppressionV5"})
# Ops that commonly end a regression head or a logits layer, ranked next.
LAYER_END_OPS = frozenset(
    {"BiasAdd", "Add", "AddV2", "MatMul", "Conv2D", "Reshape", "Squeeze", "Mean", "Relu", "Relu6", "Mul"}
)
PASS_THROUGH_OPS = frozenset({"Identity", "IdentityN", "Snapshot", "StopGradient"})
# Sinks that are never a model's output: constants, plumbing, checkpointing and assertions.
NOT_OUTPUT_OPS = frozenset(
    {
        "Const",
        "NoOp",
        "Assert",
        "Print",
        "PrintV2",
        "Placeholder",
        "PlaceholderV2",
        "PlaceholderWithDefault",
        "VariableV2",
        "Variable",
        "VarHandleOp",
        "VarIsInitializedOp",
        "IsVariableInitialized",
        "SaveV2",
        "SaveSlices",
        "Save",
        "RestoreV2",
        "Restore",
        "RestoreSlice",
        "MergeV2Checkpoints",
        "ShardedFilename",
        "StringJoin",
        "Assign",
        "AssignVariableOp",
        "AssignAdd",
        "AssignSub",
        "Shape",
        "Size",
        "Rank",
    }
)
# Last name parts of values only training computes; a summary often reads them, nothing else does.
TRAINING_VALUE_NAME = re.compile(
    r"(^|_)(loss|losses|accuracy|cross_entropy|xent|learning_rate|global_step)(_\d+)?$", re.IGNORECASE
)
TRAINING_OP_PREFIXES = ("Apply", "ResourceApply", "SparseApply", "ResourceSparseApply")
TRAINING_NAME_PARTS = ("gradients", "save", "save_1", "summaries", "train", "init", "report_uninitialized_variables")


def read_graph_def(path: Path, text: bool = False) -> GraphDef:
    """Parse a binary (or, with `text`, a text-format) frozen graph."""
    graph = GraphDef()
    if text:
        try:
            text_format.Parse(path.read_text(encoding="utf-8"), graph)
        except (text_format.ParseError, UnicodeDecodeError) as error:
            raise UnsupportedModelError(f"the text graph cannot be read: {_first_line(error)}") from error
        return graph
    data = path.read_bytes()
    try:
        graph.ParseFromString(data)
    except (DecodeError, RuntimeError) as error:  # upb raises either
        if _ends_mid_field(data):
            raise UnsupportedModelError(
                "the graph file is truncated (it ends in the middle of a node); send it again"
            ) from error
        raise UnsupportedModelError("the graph file is damaged and cannot be read") from error
    if not graph.node or not all(node.op for node in graph.node):
        raise UnsupportedModelError("the file is not a TensorFlow graph (it has no operations)")
    return graph


def _ends_mid_field(data: bytes) -> bool:
    try:
        for _ in top_level_fields(memoryview(data)):
            pass
    except WireFormatError as error:
        return error.truncated
    return False


def _first_line(error: Exception) -> str:
    return str(error).splitlines()[0][:160] if str(error) else type(error).__name__


def source_node(reference: str) -> str:
    """The node a reference names: '^ctrl' -> 'ctrl', 'split:1' -> 'split'."""
    name = reference[1:] if reference.startswith("^") else reference
    head, sep, tail = name.rpartition(":")
    return head if sep and tail.isdigit() else name


DTYPE_ATTRS = ("dtype", "T", "out_type", "DstT")


def _shape_of(proto: Any) -> Shape:
    if proto.unknown_rank:
        return None
    return tuple(None if d.size < 0 else int(d.size) for d in proto.dim)


def _describe(node: Any) -> NodeInfo:
    attrs = node.attr
    dtype = None
    for key in DTYPE_ATTRS:
        if key in attrs:
            dtype = dtype_name(attrs[key].type)
            break
    shape: Shape = None
    if "shape" in attrs and attrs["shape"].HasField("shape"):
        shape = _shape_of(attrs["shape"].shape)
    elif "_output_shapes" in attrs and attrs["_output_shapes"].list.shape:
        shape = _shape_of(attrs["_output_shapes"].list.shape[0])
    elif "value" in attrs and node.op == "Const":
        shape = _shape_of(attrs["value"].tensor.tensor_shape)
    return NodeInfo(node.name, node.op, tuple(node.input), dtype, shape)


def describe_nodes(graph: GraphDef) -> list[NodeInfo]:
    """Every node with its op, inputs and, where the graph records them, dtype and shape."""
    return [_describe(node) for node in graph.node]


def op_histogram(nodes: Iterable[NodeInfo]) -> dict[str, int]:
    """Op type -> count, most frequent first."""
    return dict(Counter(node.op for node in nodes).most_common())


def suggest_inputs(nodes: Iterable[NodeInfo]) -> list[TensorSpec]:
    """Placeholders first, then PlaceholderWithDefault nodes flagged optional."""
    nodes = [n for n in nodes if not _in_training_scope(n.name)]  # e.g. the Saver's save/filename
    required = [_spec(n) for n in nodes if n.op in INPUT_OPS]
    optional = [_spec(n, optional=True) for n in nodes if n.op in OPTIONAL_INPUT_OPS]
    return required + optional


def _spec(node: NodeInfo, optional: bool = False) -> TensorSpec:
    return TensorSpec(node.name, node.dtype or "unknown", node.shape, optional=optional, op=node.op)


def _is_training_only(node: NodeInfo) -> bool:
    if node.op in NOT_OUTPUT_OPS or node.op.startswith(TRAINING_OP_PREFIXES):
        return True
    if "Summary" in node.op or node.op.startswith(("Save", "Restore")):
        return True
    last = node.name.rsplit("/", 1)[-1]
    return _in_training_scope(node.name) or last in ("init", "init_1") or bool(TRAINING_VALUE_NAME.search(last))


def _in_training_scope(name: str) -> bool:
    """Inside a scope that only training or checkpointing creates: 'save/...', 'gradients/...'."""
    return any(part in TRAINING_NAME_PARTS or part.startswith("gradients_") for part in name.split("/")[:-1])


def suggest_outputs(nodes: list[NodeInfo]) -> list[TensorSpec]:
    """Nodes nothing consumes, minus constants and training leftovers, real heads first.

    A reference of any kind ('^ctrl', 'name:1') counts as consuming its node, unless the consumer
    is a summary. Where the graph
    has placeholders, a sink that does not depend on one cannot be an output of the model.
    """
    by_name = {node.name: node for node in nodes}
    consumed: set[str] = set()
    for node in nodes:
        # A head that only a summary reads is still a head. Gradients do count: what they read
        # first is the loss, which is no output of the trained model.
        if "Summary" not in node.op:
            consumed.update(source_node(ref) for ref in node.inputs)
    sinks = [n for n in nodes if n.name not in consumed and not _is_training_only(n)]

    inputs = {n.name for n in nodes if n.op in INPUT_OPS or n.op in OPTIONAL_INPUT_OPS}
    if any(n.op in INPUT_OPS for n in nodes):
        fed = _nodes_fed_by(nodes, {n.name for n in nodes if n.op in INPUT_OPS})
        sinks = [n for n in sinks if n.name in fed and n.name not in inputs]

    def rank(node: NodeInfo) -> int:
        op = node.op
        while op in PASS_THROUGH_OPS and node.inputs:  # Identity of a head counts as the head
            parent = by_name.get(source_node(node.inputs[0]))
            if parent is None:
                break
            node, op = parent, parent.op
        if op in HEAD_OPS:
            return 0
        if op in LAYER_END_OPS:
            return 1
        return 2

    order = {node.name: index for index, node in enumerate(nodes)}
    ranked = sorted(sinks, key=lambda n: (rank(n), order[n.name]))
    return [_spec(n) for n in ranked]


def _nodes_fed_by(nodes: list[NodeInfo], sources: set[str]) -> set[str]:
    """Names of every node that depends, through data edges, on one of `sources`."""
    consumers: dict[str, list[str]] = {}
    for node in nodes:
        for ref in node.inputs:
            if not ref.startswith("^"):
                consumers.setdefault(source_node(ref), []).append(node.name)
    reached = set(sources)
    stack = list(sources)
    while stack:
        for consumer in consumers.get(stack.pop(), ()):
            if consumer not in reached:
                reached.add(consumer)
                stack.append(consumer)
    return reached

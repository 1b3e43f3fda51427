"""Freeze a TF1 checkpoint (a Saver's .meta graph with its .index and .data files) for chosen
outputs, as TF1's freeze_graph did: the training graph is cut down to what the outputs need and
every variable in it becomes a constant holding its value from the checkpoint.

Nothing from the upload runs: values are read from the checkpoint files as data
(`tf.train.load_checkpoint`), never by running the Saver's restore op. `read_meta_graph`,
`needed_nodes` and `checkpoint_keys` need no TensorFlow; `freeze_checkpoint` imports it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from converter.errors import BadOptionsError, UnsupportedModelError
from converter.graph_inspect import source_node
from converter.protos import DecodeError, MetaGraphDef
from converter.summary import NodeInfo

if TYPE_CHECKING:
    from tensorflow.core.framework.graph_pb2 import GraphDef as TFGraphDef

META_SUFFIX = ".meta"
VARIABLE_OPS = frozenset({"VariableV2", "Variable", "VarHandleOp"})
# What a node becomes in the frozen graph: inspection judges op support on these.
FROZEN_OPS = {"VariableV2": "Const", "Variable": "Const", "VarHandleOp": "Const", "ReadVariableOp": "Identity"}
# Op name prefixes of what changes a variable: Assign, AssignVariableOp, ApplyAdam, ScatterUpdate, ...
_WRITE_PREFIXES = (
    "Assign",
    "Scatter",
    "ResourceScatter",
    "Apply",
    "ResourceApply",
    "SparseApply",
    "ResourceSparseApply",
    "CountUpTo",
    "ResourceCountUpTo",
)
# The restore ops' assignments: Assign(ref variable, value), AssignVariableOp(resource variable, value).
_RESTORE_ASSIGN_OPS = frozenset({"Assign", "AssignVariableOp"})


def checkpoint_prefix(meta_path: Path) -> Path:
    """'run/model.ckpt-200.meta' -> 'run/model.ckpt-200', the name its .index and .data files start with."""
    return meta_path.with_name(meta_path.name.removesuffix(META_SUFFIX))


def read_meta_graph(path: Path) -> MetaGraphDef:
    """A checkpoint's .meta, parsed without TensorFlow; refused as damaged if it holds no graph."""
    meta_graph = MetaGraphDef()
    _parse_meta_graph(path, meta_graph)
    return meta_graph


def _parse_meta_graph(path: Path, meta_graph: Any) -> None:
    """Fill TensorBoard's or TensorFlow's MetaGraphDef message from a .meta file."""
    try:
        meta_graph.ParseFromString(path.read_bytes())
    except (DecodeError, RuntimeError) as error:  # upb raises either
        raise _damaged_meta(path) from error
    nodes = meta_graph.graph_def.node
    if not nodes or not all(node.op for node in nodes):
        raise _damaged_meta(path)


def _damaged_meta(path: Path) -> UnsupportedModelError:
    return UnsupportedModelError(f"the TF1 checkpoint's graph {path.name} is damaged and cannot be read")


def count_variables(nodes: Iterable[NodeInfo]) -> int:
    return sum(1 for node in nodes if node.op in VARIABLE_OPS)


def writes_variable(op: str) -> bool:
    return op.startswith(_WRITE_PREFIXES)


def needed_nodes(nodes: Iterable[NodeInfo], outputs: Iterable[str]) -> set[str]:
    """Names of the nodes `outputs` depend on, themselves included.

    Control edges to ops that change a variable are not followed: TF1 code often makes a result
    wait for an update (batch-norm statistics, a step counter), and a frozen graph has no
    variables left to update.
    """
    by_name = {node.name: node for node in nodes}
    needed: set[str] = set()
    stack = list(outputs)
    while stack:
        name = stack.pop()
        if name in needed or name not in by_name:
            continue
        needed.add(name)
        stack.extend(source_node(ref) for ref in _kept_inputs(by_name[name].inputs, by_name))
    return needed


def _kept_inputs(inputs: Iterable[str], by_name: Mapping[str, Any]) -> list[str]:
    """`inputs` without control edges to ops that change a variable."""
    kept = []
    for ref in inputs:
        target = by_name.get(ref[1:]) if ref.startswith("^") else None
        if target is None or not writes_variable(target.op):
            kept.append(ref)
    return kept


def checkpoint_keys(graph: Any, saver_scope: str = "") -> dict[str, tuple[str, str]]:
    """Variable node -> (its key in the checkpoint, its slice spec), from the Saver's restore ops.

    A Saver saves a variable under its node name unless it was given `var_list={"key": var}`; the
    restore subgraph records the key either way: `save/RestoreV2` takes the keys as its
    `tensor_names` input, and its output `:i` goes to an `Assign` of a ref variable or, through
    an Identity, to an `AssignVariableOp` of a resource variable. Variables no restore op names
    are missing here; they are looked up by node name.
    """
    by_name = {node.name: node for node in graph.node}
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for ref in node.input:
            if not ref.startswith("^"):
                consumers.setdefault(_tensor_name(ref), []).append(node)
    keys: dict[str, tuple[str, str]] = {}
    for restore in graph.node:
        if restore.op != "RestoreV2" or not restore.name.startswith(saver_scope) or len(restore.input) < 3:
            continue
        names = _const_strings(by_name.get(source_node(restore.input[1])))
        slices = _const_strings(by_name.get(source_node(restore.input[2])))
        for index, key in enumerate(names):
            variable = _restored_variable(f"{restore.name}:{index}", consumers)
            if variable is not None:
                keys[variable] = (key, slices[index] if index < len(slices) else "")
    return keys


def _tensor_name(ref: str) -> str:
    """'save/RestoreV2' -> 'save/RestoreV2:0'; node names cannot hold ':', so 'x:1' stays as it is."""
    return ref if ":" in ref else f"{ref}:0"


def _const_strings(node: Any) -> list[str]:
    if node is None or node.op != "Const":
        return []
    return [value.decode("utf-8", errors="replace") for value in node.attr["value"].tensor.string_val]


def _restored_variable(tensor: str, consumers: Mapping[str, list[Any]]) -> str | None:
    """The variable a restored value is assigned to, following Identity nodes on the way."""
    seen: set[str] = set()
    while tensor not in seen:
        seen.add(tensor)
        following = consumers.get(tensor, [])
        for consumer in following:
            assigned = len(consumer.input) > 1 and _tensor_name(consumer.input[1]) == tensor
            if consumer.op in _RESTORE_ASSIGN_OPS and assigned:
                return source_node(consumer.input[0])
        identity = next((consumer for consumer in following if consumer.op == "Identity"), None)
        if identity is None:
            return None
        tensor = f"{identity.name}:0"
    return None


def _saver_scope(meta_graph: Any) -> str:
    """'save/' for the Saver that wrote the checkpoint ('save_1/' for a second Saver in the graph)."""
    scope, _, _ = meta_graph.saver_def.restore_op_name.rpartition("/")
    return f"{scope}/" if scope else ""


def freeze_checkpoint(meta_path: Path, outputs: Sequence[str]) -> TFGraphDef:
    """The frozen graph computing `outputs`: the .meta's graph cut down to them, each variable a
    Const holding its value from the checkpoint beside `meta_path`. Imports TensorFlow."""
    import tensorflow as tf

    meta_graph = tf.compat.v1.MetaGraphDef()
    _parse_meta_graph(meta_path, meta_graph)
    graph = meta_graph.graph_def
    nodes = [NodeInfo(node.name, node.op, tuple(node.input)) for node in graph.node]
    names = {node.name for node in nodes}
    missing = [name for name in outputs if name not in names]
    if missing:
        raise BadOptionsError(f"no node named {', '.join(missing)} in the checkpoint's graph")
    frozen = _copy_needed_nodes(graph, needed_nodes(nodes, outputs))
    _check_variables_are_only_read(frozen)
    keys = checkpoint_keys(graph, _saver_scope(meta_graph))
    reader = _open_checkpoint(meta_path)
    for node in frozen.node:
        if node.op in VARIABLE_OPS:
            key, slice_spec = keys.get(node.name, (node.name, ""))
            _make_const(node, _variable_value(reader, node, key, slice_spec))
        elif node.op == "ReadVariableOp":
            _make_identity(node)
    return frozen


def _copy_needed_nodes(graph: Any, needed: set[str]) -> Any:
    by_name = {node.name: node for node in graph.node}
    frozen = type(graph)()
    frozen.versions.CopyFrom(graph.versions)
    frozen.library.CopyFrom(graph.library)
    for node in graph.node:
        if node.name not in needed:
            continue
        copy = frozen.node.add()
        copy.CopyFrom(node)
        del copy.input[:]
        copy.input.extend(_kept_inputs(node.input, by_name))
        copy.device = ""
        # Colocation hints place ops beside the variables they update, which may be cut away;
        # a frozen graph has no placement to keep.
        if "_class" in copy.attr:
            del copy.attr["_class"]
    return frozen


def _check_variables_are_only_read(frozen: Any) -> None:
    """Refuse what a Const cannot stand in for: an update, or a resource variable used other than read."""
    ops = {node.name: node.op for node in frozen.node}
    for node in frozen.node:
        if writes_variable(node.op):
            raise UnsupportedModelError(
                f"the chosen outputs need {node.name} ({node.op}), which changes a variable while training; "
                "choose outputs computed without it"
            )
        for ref in node.input:
            handle = source_node(ref)
            if not ref.startswith("^") and ops.get(handle) == "VarHandleOp" and node.op != "ReadVariableOp":
                raise UnsupportedModelError(
                    f"variable {handle} is used by {node.name} ({node.op}), which convbot cannot freeze; "
                    "only plain reads of a variable can become constants"
                )


def _open_checkpoint(meta_path: Path) -> Any:
    import tensorflow as tf

    try:
        # The prefix, not the folder: given a folder, TensorFlow would follow the `checkpoint` file's paths.
        return tf.train.load_checkpoint(str(checkpoint_prefix(meta_path)))
    except (tf.errors.OpError, ValueError) as error:
        raise _damaged_weights(error) from error


def _damaged_weights(error: Exception) -> UnsupportedModelError:
    return UnsupportedModelError(
        "the TF1 checkpoint's .index or .data files are damaged and cannot be read", log=str(error)
    )


def _variable_value(reader: Any, node: Any, key: str, slice_spec: str) -> Any:
    """The checkpoint's value for a variable node, checked against the node's dtype and shape."""
    import tensorflow as tf

    label = node.name if key == node.name else f"{node.name} (saved as {key})"
    if slice_spec:
        raise UnsupportedModelError(
            f"variable {label} is one part of a partitioned variable; convbot cannot freeze partitioned variables"
        )
    if not reader.has_tensor(key):
        raise UnsupportedModelError(f"the checkpoint has no value for variable {label}")
    stored = reader.get_variable_to_dtype_map()[key]
    expected = tf.as_dtype(node.attr["dtype"].type)
    if stored.base_dtype != expected.base_dtype:
        raise UnsupportedModelError(
            f"variable {label} is {stored.name} in the checkpoint but {expected.name} in the graph"
        )
    try:
        value = reader.get_tensor(key)
    except tf.errors.OpError as error:
        raise _damaged_weights(error) from error
    # Reading node.attr["shape"] would add the attr; a variable made with validate_shape=False lacks it.
    shape = node.attr["shape"].shape if "shape" in node.attr else None
    if shape is not None and not shape.unknown_rank:
        dims = [dim.size for dim in shape.dim]
        if len(dims) != value.ndim or any(d >= 0 and d != v for d, v in zip(dims, value.shape, strict=False)):
            raise UnsupportedModelError(
                f"variable {label} has shape {list(value.shape)} in the checkpoint but {dims} in the graph"
            )
    return tf.make_tensor_proto(value, dtype=stored)


def _make_const(node: Any, tensor: Any) -> None:
    node.op = "Const"
    node.attr.clear()
    node.attr["dtype"].type = tensor.dtype
    node.attr["value"].tensor.CopyFrom(tensor)


def _make_identity(node: Any) -> None:
    """ReadVariableOp(handle) -> Identity(the Const the handle became)."""
    dtype = node.attr["dtype"].type
    node.op = "Identity"
    node.attr.clear()
    node.attr["T"].type = dtype


def checkpoint_reference(meta_path: Path, outputs: Sequence[str]) -> Any:
    """The checkpoint's own graph, unfrozen, with its variables set from the checkpoint: what the
    frozen graph and every artifact must compute. Returns `run(inputs) -> outputs` by node name.

    The variables are set by assignments convbot adds, from values read as data; the Saver's
    restore ops in the upload are not run.
    """
    import tensorflow as tf

    meta_graph = tf.compat.v1.MetaGraphDef()
    _parse_meta_graph(meta_path, meta_graph)
    keys = checkpoint_keys(meta_graph.graph_def, _saver_scope(meta_graph))
    # Only what the outputs need: the rest of a training graph (optimizer, summaries, savers) may
    # hold ops this TensorFlow lacks. Devices are cleared: the training run's GPU is not here.
    nodes = [NodeInfo(node.name, node.op, tuple(node.input)) for node in meta_graph.graph_def.node]
    graph_def = _copy_needed_nodes(meta_graph.graph_def, needed_nodes(nodes, outputs))
    reader = _open_checkpoint(meta_path)
    graph = tf.Graph()
    with graph.as_default():
        tf.graph_util.import_graph_def(graph_def, name="")
        assignments = []
        for node in graph_def.node:
            key, _ = keys.get(node.name, (node.name, ""))
            if node.op not in VARIABLE_OPS or not reader.has_tensor(key):
                continue  # a variable the outputs need and the checkpoint lacks fails when run
            variable = graph.get_tensor_by_name(f"{node.name}:0")
            value = tf.constant(reader.get_tensor(key))
            if node.op == "VarHandleOp":
                assignments.append(tf.raw_ops.AssignVariableOp(resource=variable, value=value))
            else:
                assignments.append(tf.raw_ops.Assign(ref=variable, value=value))
    session = tf.compat.v1.Session(graph=graph)
    session.run(assignments)

    def run(inputs: Mapping[str, Any]) -> dict[str, Any]:
        values = session.run([f"{name}:0" for name in outputs], {f"{k}:0": v for k, v in inputs.items()})
        return dict(zip(outputs, values, strict=True))

    return run

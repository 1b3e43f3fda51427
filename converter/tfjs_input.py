"""Read a TensorFlow.js graph model (model.json + weight shards) back into a standard TensorFlow
GraphDef, so it can run in TensorFlow and be converted to TFLite.

TF.js graph models are a GraphDef in JSON form (``modelTopology``, the output of protobuf's
MessageToDict) whose Const nodes had their values moved into the weight shards
(``weightsManifest``, each weight named after the Const node it came from). Rebuilding is:

1. parse ``modelTopology`` into ``tensorflow.core.framework.graph_pb2.GraphDef``;
2. put every weight back as the value of its Const node (adding a Const node if none exists);
3. split the ops the TF.js converter (or Grappler) fused, which TensorFlow's importer does not
   accept or TF.js invented, into standard ops: ``_FusedConv2D``, ``FusedDepthwiseConv2dNative``,
   ``_FusedMatMul`` and ``Prelu``. The node producing the final result keeps the original name,
   so consumers and the user's output names still resolve; helper nodes get derived names
   (``<name>/conv``, ``<name>/bias_add``, ``<name>/prelu_relu``, ...);
4. clear device fields, fill attrs TF.js dropped (op defaults, type attrs inferred from the
   inputs' dtypes) and refuse ops TensorFlow does not know.

v1 control flow (Enter/Exit/Merge/Switch/LoopCond/NextIteration) is kept as it is, except that a
Merge only ever control-depended on (Grappler's If-lowering ``branch_executed`` marker) is dropped,
since it carries no data and TFLite's control flow functionalization rejects it.

``read_tfjs_weights`` needs only numpy; ``tfjs_to_graph_def`` imports TensorFlow.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from converter.detect import shard_file
from converter.errors import UnsupportedModelError

MODEL_JSON = "model.json"

# manifest dtype -> (numpy dtype of the stored values, numpy dtype handed back)
_PLAIN_DTYPES: dict[str, tuple[str, type[np.generic]]] = {
    "float32": ("<f4", np.float32),
    "int32": ("<i4", np.int32),
    "bool": ("u1", np.bool_),
}
_QUANTIZED_DTYPES: dict[str, str] = {"uint8": "u1", "uint16": "<u2", "float16": "<f2"}

# fused activation name (as in fused_ops) -> the standard op computing it; Prelu is handled apart.
_ACTIVATIONS = {
    "Relu": "Relu",
    "Relu6": "Relu6",
    "Elu": "Elu",
    "LeakyRelu": "LeakyRelu",
    "Sigmoid": "Sigmoid",
    "Tanh": "Tanh",
}
_HARD_SWISH = "_FusedHardSwish"  # oneDNN's remapper fuses it; TF.js cannot run it, so only a repair meets it
_OTHER = ("Prelu", _HARD_SWISH)  # activations split into several ops
# fused op -> (the op it wraps, the name suffix of the helper node)
_FUSED = {
    "_FusedConv2D": ("Conv2D", "conv"),
    "FusedDepthwiseConv2dNative": ("DepthwiseConv2dNative", "depthwise"),
    "_FusedMatMul": ("MatMul", "matmul"),
}
FUSED_OPS = frozenset(_FUSED)


def _shard_bytes(model_dir: Path, paths: Iterable[str]) -> bytes:
    chunks: list[bytes] = []
    for name in paths:
        file = shard_file(model_dir, name)
        if not file.is_file():
            raise UnsupportedModelError(f"TF.js weight shard {name!r} named in model.json is missing")
        chunks.append(file.read_bytes())
    return b"".join(chunks)


def _read_strings(buffer: bytes, offset: int, count: int, name: str) -> tuple[NDArray[Any], int]:
    values: list[bytes] = []
    for _ in range(count):
        if offset + 4 > len(buffer):
            raise UnsupportedModelError(f"TF.js weight {name!r} runs past the end of its shards")
        (length,) = struct.unpack_from("<I", buffer, offset)
        offset += 4
        if offset + length > len(buffer):
            raise UnsupportedModelError(f"TF.js weight {name!r} runs past the end of its shards")
        values.append(buffer[offset : offset + length])
        offset += length
    return np.array(values, dtype=object), offset


def stored_dtype(entry: Mapping[str, Any]) -> str | None:
    """The numpy dtype of a manifest weight's bytes in its shard (quantized or plain); None for
    strings, which carry their own lengths, and for dtypes TF.js does not write."""
    quantization = entry.get("quantization")
    if quantization:
        return _QUANTIZED_DTYPES.get(str(quantization.get("dtype")))
    plain = _PLAIN_DTYPES.get(str(entry.get("dtype", "float32")))
    return plain[0] if plain else None


def _decode_weight(buffer: bytes, offset: int, entry: Mapping[str, Any]) -> tuple[NDArray[Any], int]:
    name = str(entry.get("name", "?"))
    dtype = str(entry.get("dtype", "float32"))
    shape = tuple(int(d) for d in entry.get("shape", []))
    count = int(np.prod(shape, dtype=np.int64)) if shape else 1
    if dtype == "string":
        values, offset = _read_strings(buffer, offset, count, name)
        return values.reshape(shape), offset
    if dtype not in _PLAIN_DTYPES:
        raise UnsupportedModelError(f"TF.js weight {name!r} has dtype {dtype}, which convbot cannot read")
    stored, native = _PLAIN_DTYPES[dtype]
    quantization = entry.get("quantization")
    if quantization:
        qtype = str(quantization.get("dtype"))
        if qtype not in _QUANTIZED_DTYPES:
            raise UnsupportedModelError(f"TF.js weight {name!r} uses unknown quantization {qtype!r}")
        stored = _QUANTIZED_DTYPES[qtype]
    size = np.dtype(stored).itemsize * count
    if offset + size > len(buffer):
        raise UnsupportedModelError(f"TF.js weight {name!r} runs past the end of its shards")
    raw = np.frombuffer(buffer, dtype=stored, count=count, offset=offset)
    offset += size
    if not quantization:
        return raw.astype(native).reshape(shape), offset
    if qtype == "float16":
        if dtype != "float32":
            raise UnsupportedModelError(f"TF.js weight {name!r}: float16 quantization of {dtype} is not valid")
        return raw.astype(np.float32).reshape(shape), offset
    scale = float(quantization.get("scale", 1.0))
    minimum = float(quantization.get("min", 0.0))
    # TF.js computes in float32: q * scale + min, rounded for int32 weights.
    values = raw.astype(np.float32) * np.float32(scale) + np.float32(minimum)
    if dtype == "int32":
        return np.round(values).astype(np.int32).reshape(shape), offset
    if dtype == "bool":
        return (values != 0).reshape(shape), offset
    return values.astype(np.float32).reshape(shape), offset


def read_tfjs_weights(model_dir: Path, manifest: list[dict[str, Any]]) -> dict[str, NDArray[Any]]:
    """Every weight in ``manifest`` (model.json's ``weightsManifest``) by name, as numpy arrays.

    Each group's shard files (``paths``) are concatenated in order and its weights read one after
    another. Dtypes float32/int32/bool/string; TF.js quantization is undone (uint8/uint16:
    ``q * scale + min``; float16: IEEE half -> float32). A missing shard raises
    UnsupportedModelError naming it.
    """
    weights: dict[str, NDArray[Any]] = {}
    for group in manifest:
        buffer = _shard_bytes(Path(model_dir), group.get("paths", []))
        offset = 0
        for entry in group.get("weights", []):
            value, offset = _decode_weight(buffer, offset, entry)
            weights[str(entry["name"])] = value
    return weights


def load_model_json(model_dir: Path) -> dict[str, Any]:
    """model.json of the TF.js model in ``model_dir``; UnsupportedModelError if absent or not a graph model."""
    file = Path(model_dir) / MODEL_JSON
    try:
        model = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UnsupportedModelError(f"no {MODEL_JSON} in the TF.js model folder") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UnsupportedModelError(f"{MODEL_JSON} is not valid JSON: {error}") from None
    if not isinstance(model, dict) or not isinstance(model.get("modelTopology"), dict):
        raise UnsupportedModelError(f"{MODEL_JSON} has no modelTopology")
    if "node" not in model["modelTopology"]:
        raise UnsupportedModelError(f"{MODEL_JSON} is a TF.js layers model, not a graph model")
    return model


# ---------------------------------------------------------------------------------------------
# GraphDef rewriting (TensorFlow protos; typed as Any since TensorFlow has no stubs)


def _op_def(op: str) -> Any:
    from tensorflow.python.framework import op_def_registry

    return op_def_registry.get(op)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _copy_attrs(source: Any, target: Any, skip: Iterable[str] = ()) -> None:
    """Copy the attrs of ``source`` that ``target``'s op declares."""
    op_def = _op_def(target.op)
    wanted = {attr.name for attr in op_def.attr} - set(skip)
    for key in source.attr:
        if key in wanted:
            target.attr[key].CopyFrom(source.attr[key])


def _new_node(graph_def: Any, name: str, op: str, inputs: list[str], dtype_attr: Any | None) -> Any:
    node = graph_def.node.add()
    node.name = name
    node.op = op
    node.input.extend(inputs)
    if dtype_attr is not None:
        node.attr["T"].CopyFrom(dtype_attr)
    return node


def _prelu_nodes(graph_def: Any, name: str, prefix: str, x: str, alpha: str, t_attr: Any | None) -> None:
    """max(0, x) + alpha * min(0, x) as Relu, Sub, Mul, AddV2; the AddV2 is called ``name``."""
    relu = _new_node(graph_def, f"{prefix}/prelu_relu", "Relu", [x], t_attr)
    neg_part = _new_node(graph_def, f"{prefix}/prelu_neg_part", "Sub", [x, relu.name], t_attr)
    scaled = _new_node(graph_def, f"{prefix}/prelu_scaled", "Mul", [alpha, neg_part.name], t_attr)
    _new_node(graph_def, name, "AddV2", [relu.name, scaled.name], t_attr)


def _scalar_const(graph_def: Any, name: str, value: float, t_attr: Any | None) -> str:
    import tensorflow as tf

    dtype = tf.as_dtype(t_attr.type) if t_attr is not None and t_attr.type else tf.float32
    node = graph_def.node.add()
    node.name = name
    node.op = "Const"
    node.attr["dtype"].type = dtype.as_datatype_enum
    node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(value, dtype=dtype))
    return str(node.name)


def _hard_swish_nodes(graph_def: Any, name: str, prefix: str, x: str, t_attr: Any | None) -> None:
    """x * relu6(x + 3) / 6 (oneDNN's ``_FusedHardSwish``) as AddV2, Relu6, Mul, Mul; the last is ``name``."""
    three = _scalar_const(graph_def, f"{prefix}/hard_swish_three", 3.0, t_attr)
    sixth = _scalar_const(graph_def, f"{prefix}/hard_swish_sixth", 1.0 / 6.0, t_attr)
    shifted = _new_node(graph_def, f"{prefix}/hard_swish_shifted", "AddV2", [x, three], t_attr)
    clipped = _new_node(graph_def, f"{prefix}/hard_swish_relu6", "Relu6", [shifted.name], t_attr)
    scaled = _new_node(graph_def, f"{prefix}/hard_swish_scaled", "Mul", [x, sixth], t_attr)
    _new_node(graph_def, name, "Mul", [scaled.name, clipped.name], t_attr)


def split_fused_node(node: Any, graph_def: Any) -> None:
    """Append to ``graph_def`` the standard ops computing the fused ``node`` (one of ``FUSED_OPS``),
    the last of them named as ``node``; UnsupportedModelError if its ``fused_ops`` cannot be split."""
    base_op, suffix = _FUSED[node.op]
    name = node.name
    fused_ops = [_text(s) for s in node.attr["fused_ops"].list.s] if "fused_ops" in node.attr else []
    data_inputs = [i for i in node.input if not i.startswith("^")]
    controls = [i for i in node.input if i.startswith("^")]
    x, w, args = data_inputs[0], data_inputs[1], data_inputs[2:]
    t_attr = node.attr.get("T")
    if fused_ops and fused_ops[0] in ("FusedBatchNorm", "FusedBatchNormV3"):
        raise UnsupportedModelError(f"{node.op} {name!r} with fused batch norm cannot be represented in TensorFlow")
    if fused_ops and fused_ops[0] != "BiasAdd" and fused_ops[0] not in _ACTIVATIONS and fused_ops[0] not in _OTHER:
        raise UnsupportedModelError(f"{node.op} {name!r} fuses {fused_ops}, which convbot cannot split")
    has_bias = bool(fused_ops) and fused_ops[0] == "BiasAdd"
    activation = (
        fused_ops[1] if has_bias and len(fused_ops) > 1 else (fused_ops[0] if not has_bias and fused_ops else None)
    )
    if len(fused_ops) > (2 if has_bias else 1):
        raise UnsupportedModelError(f"{node.op} {name!r} fuses {fused_ops}, which convbot cannot split")
    last_is = "base" if not has_bias and activation is None else ("bias" if activation is None else "act")

    base = _new_node(graph_def, name if last_is == "base" else f"{name}/{suffix}", base_op, [x, w, *controls], None)
    _copy_attrs(node, base)
    current = base.name
    if has_bias:
        if not args:
            raise UnsupportedModelError(f"{node.op} {name!r} has no bias input")
        # TF.js adds the bias with broadcasting: a scalar bias (grappler fuses `conv + 14.0` so) is an AddV2.
        bias_op = "BiasAdd" if _const_rank(graph_def, args[0]) in (1, None) else "AddV2"
        bias = _new_node(
            graph_def, name if last_is == "bias" else f"{name}/bias_add", bias_op, [current, args[0]], t_attr
        )
        if bias_op == "BiasAdd" and base_op != "MatMul" and "data_format" in node.attr:
            bias.attr["data_format"].CopyFrom(node.attr["data_format"])
        current = bias.name
    if activation is None:
        return
    if activation == "Prelu":
        alpha_index = 1 if has_bias else 0
        if len(args) <= alpha_index:
            raise UnsupportedModelError(f"{node.op} {name!r} has no Prelu alpha input")
        _prelu_nodes(graph_def, name, name, current, args[alpha_index], t_attr)
        return
    if activation == _HARD_SWISH:
        _hard_swish_nodes(graph_def, name, name, current, t_attr)
        return
    if activation not in _ACTIVATIONS:
        raise UnsupportedModelError(f"{node.op} {name!r} fuses activation {activation}, which convbot cannot split")
    act = _new_node(graph_def, name, _ACTIVATIONS[activation], [current], t_attr)
    if activation == "LeakyRelu" and "leakyrelu_alpha" in node.attr:
        act.attr["alpha"].f = node.attr["leakyrelu_alpha"].f


def _const_rank(graph_def: Any, tensor: str) -> int | None:
    """The rank of the Const ``tensor`` already in ``graph_def``; None if it is not one (yet)."""
    node_name = tensor.partition(":")[0]
    for node in graph_def.node:
        if node.name == node_name and node.op == "Const" and "value" in node.attr:
            return len(node.attr["value"].tensor.tensor_shape.dim)
    return None


def _dtype_of(tensor: str, memo: Mapping[str, list[int]]) -> int | None:
    """The DataType enum of tensor ``name[:i]``, if its node's output types are known yet."""
    node_name, _, index_text = tensor.partition(":")
    index = int(index_text) if index_text.isdigit() else 0
    types = memo.get(node_name, [])
    return types[index] if index < len(types) else None


def _output_types(node: Any) -> list[int]:
    op_def = _op_def(node.op)
    types: list[int] = []
    if op_def is None:
        return types
    for arg in op_def.output_arg:
        count = int(node.attr[arg.number_attr].i) if arg.number_attr and arg.number_attr in node.attr else 1
        if arg.type_list_attr:
            types.extend(node.attr[arg.type_list_attr].list.type if arg.type_list_attr in node.attr else [])
        elif arg.type_attr:
            types.extend([node.attr[arg.type_attr].type if arg.type_attr in node.attr else 0] * count)
        else:
            types.extend([arg.type] * count)
    return types


def _topological_order(graph_def: Any) -> list[Any]:
    """Nodes, inputs before consumers (loop back edges, e.g. NextIteration -> Merge, are cut)."""
    by_name = {node.name: node for node in graph_def.node}
    order: list[Any] = []
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    for root in graph_def.node:
        if root.name in state:
            continue
        stack: list[tuple[Any, int]] = [(root, 0)]
        state[root.name] = 1
        while stack:
            node, index = stack.pop()
            if index < len(node.input):
                stack.append((node, index + 1))
                child = by_name.get(node.input[index].lstrip("^").split(":")[0])
                if child is not None and child.name not in state:
                    state[child.name] = 1
                    stack.append((child, 0))
            else:
                state[node.name] = 2
                order.append(node)
    return order


def _infer_types(graph_def: Any) -> None:
    memo: dict[str, list[int]] = {}
    for node in _topological_order(graph_def):
        _fill_type_attrs(node, memo)
        memo[node.name] = _output_types(node)


def _fill_type_attrs(node: Any, memo: Mapping[str, list[int]]) -> None:
    """Set type/number attrs the op needs and the node lacks, from its inputs; then op defaults."""
    op_def = _op_def(node.op)
    if op_def is None:
        return
    data_inputs = [i for i in node.input if not i.startswith("^")]
    position = 0
    for arg in op_def.input_arg:
        if arg.number_attr:
            if arg.number_attr not in node.attr:
                # only the last variadic arg can be sized from what is left
                node.attr[arg.number_attr].i = len(data_inputs) - position
            count = int(node.attr[arg.number_attr].i)
        elif arg.type_list_attr:
            count = (
                len(node.attr[arg.type_list_attr].list.type)
                if arg.type_list_attr in node.attr
                else (len(data_inputs) - position)
            )
        else:
            count = 1
        arg_inputs = data_inputs[position : position + count]
        position += count
        if arg.type_attr and arg.type_attr not in node.attr and arg_inputs:
            dtype = _dtype_of(arg_inputs[0], memo)
            if dtype:
                node.attr[arg.type_attr].type = dtype
        elif arg.type_list_attr and arg.type_list_attr not in node.attr:
            dtypes = [_dtype_of(i, memo) for i in arg_inputs]
            if all(dtypes):
                node.attr[arg.type_list_attr].list.type.extend(d for d in dtypes if d)
    for attr in op_def.attr:
        if attr.name not in node.attr and attr.HasField("default_value"):
            node.attr[attr.name].CopyFrom(attr.default_value)


def _set_weights(graph_def: Any, weights: Mapping[str, NDArray[Any]], manifest: list[dict[str, Any]]) -> None:
    import tensorflow as tf

    declared = {
        str(entry["name"]): str(entry.get("dtype", "float32"))
        for group in manifest
        for entry in group.get("weights", [])
    }
    by_name = {node.name: node for node in graph_def.node}
    for name, value in weights.items():
        node = by_name.get(name)
        if node is None:
            node = graph_def.node.add()
            node.name = name
            node.op = "Const"
        elif node.op != "Const":
            raise UnsupportedModelError(f"TF.js weight {name!r} names a {node.op} node, not a Const")
        dtype = tf.string if declared.get(name) == "string" else tf.as_dtype(value.dtype)
        if "dtype" in node.attr and node.attr["dtype"].type:
            dtype = tf.as_dtype(node.attr["dtype"].type)
        node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(value, dtype=dtype))
        node.attr["dtype"].type = dtype.as_datatype_enum


def _signature_inputs(model: Mapping[str, Any], graph_def: Any) -> dict[str, dict[str, Any]]:
    """Input node name -> {"dtype": numpy dtype name, "shape": list of int (-1 unknown) or None}."""
    import tensorflow as tf

    inputs: dict[str, dict[str, Any]] = {}
    for node in graph_def.node:
        if node.op not in ("Placeholder", "PlaceholderWithDefault"):
            continue
        shape: list[int] | None = None
        if "shape" in node.attr and not node.attr["shape"].shape.unknown_rank:
            shape = [int(d.size) for d in node.attr["shape"].shape.dim]
        dtype_enum = node.attr["dtype"].type if "dtype" in node.attr else 0
        dtype = tf.as_dtype(dtype_enum).as_numpy_dtype if dtype_enum else np.float32
        inputs[node.name] = {"dtype": np.dtype(dtype).name, "shape": shape}
    signature = model.get("signature") or {}
    for spec in (signature.get("inputs") or {}).values():
        node_name = str(spec.get("name", "")).split(":")[0]
        dims = (spec.get("tensorShape") or {}).get("dim")
        if node_name in inputs and inputs[node_name]["shape"] is None and dims is not None:
            inputs[node_name]["shape"] = [int(d.get("size", -1)) for d in dims]
    return inputs


def _output_names(model: Mapping[str, Any], graph_def: Any) -> list[str]:
    signature = model.get("signature") or {}
    outputs = signature.get("outputs") or {}
    if outputs:
        names = [str(spec.get("name", key)) for key, spec in outputs.items()]
        return [name if ":" in name else f"{name}:0" for name in names]
    consumed = {i.lstrip("^").split(":")[0] for node in graph_def.node for i in node.input}
    return [
        f"{node.name}:0"
        for node in graph_def.node
        if node.name not in consumed and node.op not in ("Const", "NoOp", "Placeholder")
    ]


def _drop_control_only_merges(graph_def: Any) -> int:
    """Remove Merge nodes that are only ever control-depended on, and the control edges to them.

    Grappler's lowering of If leaves such a ``.../branch_executed/_N`` Merge (of the two branch
    pivots) for the function's control outputs; it carries no data, so dropping it changes no
    result, while TensorFlow's control flow functionalization (TFLite conversion) rejects it
    ("Merge of two inputs that differ on more than one predicate").
    """
    data_consumed = {i.split(":")[0] for node in graph_def.node for i in node.input if not i.startswith("^")}
    control_consumed = {i[1:] for node in graph_def.node for i in node.input if i.startswith("^")}
    drop = {
        node.name
        for node in graph_def.node
        if node.op == "Merge" and node.name in control_consumed and node.name not in data_consumed
    }
    if not drop:
        return 0
    kept = [node for node in graph_def.node if node.name not in drop]
    for node in kept:
        inputs = [i for i in node.input if not (i.startswith("^") and i[1:] in drop)]
        if len(inputs) != len(node.input):
            del node.input[:]
            node.input.extend(inputs)
    del graph_def.node[:]
    graph_def.node.extend(kept)
    return len(drop)


def tfjs_to_graph_def(model_dir: Path) -> tuple[Any, dict[str, Any]]:
    """Rebuild a TensorFlow GraphDef from the TF.js graph model in ``model_dir``.

    Returns ``(graph_def, info)``: ``graph_def`` a ``tensorflow.core.framework.graph_pb2.GraphDef``
    that imports with ``tf.graph_util.import_graph_def`` and runs in a v1 Session; ``info`` is
    ``{"inputs": {node name: {"dtype": numpy dtype name, "shape": [int, -1 unknown] or None}},
    "outputs": [tensor names, from the signature or the graph's unconsumed nodes],
    "rewritten": {TF.js op: how many were split into standard ops; "Merge (control-only, dropped)":
    how many data-less Merge markers were removed}}``.

    Raises UnsupportedModelError for a missing/invalid model.json or shard, or an op TensorFlow
    does not know.
    """
    from google.protobuf import json_format
    from tensorflow.core.framework import graph_pb2

    model_dir = Path(model_dir)
    model = load_model_json(model_dir)
    topology = model["modelTopology"]
    source = graph_pb2.GraphDef()
    try:
        json_format.ParseDict(topology, source, ignore_unknown_fields=True)
    except json_format.ParseError as error:
        raise UnsupportedModelError(f"{MODEL_JSON}'s modelTopology is not a valid graph: {error}") from None
    manifest = model.get("weightsManifest") or []
    _set_weights(source, read_tfjs_weights(model_dir, manifest), manifest)

    graph_def = graph_pb2.GraphDef()
    graph_def.versions.CopyFrom(source.versions)
    graph_def.library.CopyFrom(source.library)
    rewritten: dict[str, int] = {}
    for node in source.node:
        node.device = ""
        if node.op in FUSED_OPS:
            split_fused_node(node, graph_def)
        elif node.op == "Prelu":
            data_inputs = [i for i in node.input if not i.startswith("^")]
            if len(data_inputs) != 2:
                raise UnsupportedModelError(f"Prelu {node.name!r} needs 2 inputs, has {len(data_inputs)}")
            t_attr = node.attr.get("T")
            _prelu_nodes(graph_def, node.name, node.name, data_inputs[0], data_inputs[1], t_attr)
        else:
            graph_def.node.add().CopyFrom(node)
            continue
        rewritten[node.op] = rewritten.get(node.op, 0) + 1

    unknown = sorted({node.op for node in graph_def.node if _op_def(node.op) is None})
    if unknown:
        noun = "op" if len(unknown) == 1 else "ops"
        raise UnsupportedModelError(f"TF.js model: {noun} {', '.join(unknown)} cannot be represented in TensorFlow")
    dropped = _drop_control_only_merges(graph_def)
    if dropped:
        rewritten["Merge (control-only, dropped)"] = dropped
    _infer_types(graph_def)
    info = {
        "inputs": _signature_inputs(model, graph_def),
        "outputs": _output_names(model, graph_def),
        "rewritten": rewritten,
    }
    return graph_def, info

"""`inspect`: what is in a model, found without converting it and, for graphs, without TensorFlow."""

from __future__ import annotations

import json
import tempfile
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any

from converter import formats as fmt
from converter.archive import ArchiveLimits
from converter.checkpoint_input import FROZEN_OPS, checkpoint_prefix, count_variables, needed_nodes, read_meta_graph
from converter.detect import ModelSource, detect_model
from converter.errors import UnsupportedModelError
from converter.formats import ModelFormat
from converter.graph_inspect import (
    describe_nodes,
    op_histogram,
    read_graph_def,
    source_node,
    suggest_inputs,
    suggest_outputs,
)
from converter.op_support import check_readiness
from converter.protos import GraphDef, MetaGraphDef, dtype_name, parse_saved_model
from converter.summary import LayerInfo, ModelSummary, NodeInfo, Shape, SignatureInfo, TensorSpec

KERAS_CONFIG_MAX_BYTES = 64 * 1024 * 1024


def inspect(path: str | Path, *, work_dir: Path | None = None, limits: ArchiveLimits = ArchiveLimits()) -> ModelSummary:
    """Describe the model at `path`: format, nodes, suggested inputs and outputs, readiness.

    Archives are unpacked into `work_dir` (a private empty folder) or a temporary folder
    that is removed before returning.
    """
    if work_dir is not None:
        return inspect_source(detect_model(Path(path), work_dir, limits))
    with tempfile.TemporaryDirectory(prefix="convbot-inspect-") as tmp:
        return inspect_source(detect_model(Path(path), Path(tmp), limits))


def inspect_source(source: ModelSource) -> ModelSummary:
    """Describe an already-detected model."""
    if source.format is ModelFormat.TF1_CHECKPOINT:
        return _inspect_checkpoint(source)
    if source.format.is_graph:
        return _inspect_graph(source)
    if source.format is ModelFormat.SAVED_MODEL:
        return _inspect_saved_model(source)
    if source.format is ModelFormat.TFJS_GRAPH:
        return _inspect_tfjs(source)
    return _inspect_keras(source)


def _inspect_graph(source: ModelSource) -> ModelSummary:
    graph = read_graph_def(source.path, text=source.format is ModelFormat.FROZEN_GRAPH_TEXT)
    nodes = describe_nodes(graph)
    return _graph_summary(source, nodes, suggest_inputs(nodes), suggest_outputs(nodes), op_histogram(nodes))


def _inspect_checkpoint(source: ModelSource) -> ModelSummary:
    """A TF1 checkpoint, from its .meta alone: the training graph's nodes, with op support judged on
    the frozen graph the suggested outputs would make."""
    nodes = describe_nodes(read_meta_graph(source.path).graph_def)
    inputs = suggest_inputs(nodes)
    outputs = suggest_outputs(nodes)
    frozen = nodes
    if outputs:
        needed = needed_nodes(nodes, [spec.name for spec in outputs])
        frozen = [node for node in nodes if node.name in needed]
        # Placeholders only training feeds (labels, a learning rate) are not inputs of the outputs.
        inputs = [spec for spec in inputs if spec.name in needed]
    histogram = dict(Counter(FROZEN_OPS.get(node.op, node.op) for node in frozen).most_common())
    details = {"checkpoint": checkpoint_prefix(source.path).name, "variables": str(count_variables(nodes))}
    return _graph_summary(source, nodes, inputs, outputs, histogram, details)


def _graph_summary(
    source: ModelSource,
    nodes: list[NodeInfo],
    inputs: list[TensorSpec],
    outputs: list[TensorSpec],
    histogram: dict[str, int],
    details: dict[str, str] | None = None,
) -> ModelSummary:
    """The summary of a graph whose inputs and outputs were suggested, readiness judged on `histogram`."""
    warnings = []
    if not inputs:
        warnings.append("the graph has no Placeholder; choose its input nodes yourself")
    if any(node.name.startswith("import/") for node in nodes[:1]):
        warnings.append("node names start with 'import/' (the graph was imported once more); keep the prefix")
    return ModelSummary(
        path=str(source.original),
        format=source.format,
        file_size=source.file_size,
        node_count=len(nodes),
        op_histogram=histogram,
        suggested_inputs=tuple(inputs),
        suggested_outputs=tuple(outputs),
        readiness=check_readiness(histogram),
        nodes=tuple(nodes),
        warnings=tuple(warnings),
        details=dict(details or {}),
    )


def _tensor_spec(key: str, info: Any) -> TensorSpec:
    shape: Shape = None
    if info.HasField("tensor_shape") and not info.tensor_shape.unknown_rank:
        shape = tuple(None if d.size < 0 else int(d.size) for d in info.tensor_shape.dim)
    return TensorSpec(name=info.name, dtype=dtype_name(info.dtype), shape=shape, key=key)


def _serving_meta_graph(meta_graphs: list[MetaGraphDef]) -> MetaGraphDef:
    for meta_graph in meta_graphs:
        if fmt.SERVING_TAG in meta_graph.meta_info_def.tags:
            return meta_graph
    return meta_graphs[0]


def _inspect_saved_model(source: ModelSource) -> ModelSummary:
    meta_graph = _serving_meta_graph(parse_saved_model((source.path / fmt.SAVED_MODEL_PB).read_bytes()))
    signatures = tuple(
        SignatureInfo(
            key,
            tuple(_tensor_spec(k, v) for k, v in sorted(sig.inputs.items())),
            tuple(_tensor_spec(k, v) for k, v in sorted(sig.outputs.items())),
        )
        for key, sig in sorted(meta_graph.signature_def.items())
        if not key.startswith("__")
    )
    graph = meta_graph.graph_def
    nodes = describe_nodes(graph)
    warnings: list[str] = []
    serving = next((s for s in signatures if s.key == fmt.SERVING_SIGNATURE), signatures[0] if signatures else None)
    if serving is None:
        raise UnsupportedModelError("the SavedModel has no signatures; export it with a serving signature")
    # Only what the signature computes is converted; the checkpoint-saving and variable-
    # initialising parts of the graph are not, so they do not count against readiness.
    histogram = dict(Counter(signature_ops(graph, [spec.name for spec in serving.outputs])).most_common())
    if serving.key != fmt.SERVING_SIGNATURE:
        warnings.append(f"no '{fmt.SERVING_SIGNATURE}' signature; using '{serving.key}'")
    return ModelSummary(
        path=str(source.original),
        format=source.format,
        file_size=source.file_size,
        node_count=len(nodes),
        op_histogram=histogram,
        suggested_inputs=serving.inputs,
        suggested_outputs=serving.outputs,
        readiness=check_readiness(histogram),
        nodes=tuple(nodes),
        signatures=signatures,
        warnings=tuple(warnings),
        details={"signature": serving.key, "tags": ",".join(meta_graph.meta_info_def.tags)},
    )


# TF.js-only ops and the standard op each becomes when the graph is rebuilt for TensorFlow.
TFJS_OP_STANDARD = {
    "_FusedConv2D": "Conv2D",
    "FusedDepthwiseConv2dNative": "DepthwiseConv2dNative",
    "_FusedMatMul": "MatMul",
    "Prelu": "Relu",
}


def _json_shape(attr: dict[str, Any]) -> Shape:
    shape = attr.get("shape")
    if not isinstance(shape, dict) or shape.get("unknownRank"):
        return None
    return tuple(None if int(d.get("size", -1)) < 0 else int(d["size"]) for d in shape.get("dim", []))


def _json_dtype(attrs: dict[str, Any]) -> str | None:
    """From a node's attrs ({"dtype": {"type": "DT_FLOAT"}}) or a signature entry ({"dtype": "DT_FLOAT"})."""
    for key in ("dtype", "T"):
        value = attrs.get(key)
        if isinstance(value, dict):
            value = value.get("type")
        if isinstance(value, str):
            return _DTYPE_FROM_ENUM.get(value, value.removeprefix("DT_").lower())
    return None


_DTYPE_FROM_ENUM = {"DT_FLOAT": "float32", "DT_HALF": "float16", "DT_DOUBLE": "float64"}


def _inspect_tfjs(source: ModelSource) -> ModelSummary:
    """A TF.js graph model, from model.json alone: its nodes, and its signature where it has one."""
    model = json.loads((source.path / fmt.TFJS_MODEL_JSON).read_text(encoding="utf-8"))
    nodes = [
        NodeInfo(
            str(n.get("name", "")),
            str(n.get("op", "")),
            tuple(str(i) for i in n.get("input", [])),
            _json_dtype(n.get("attr", {})),
            _json_shape(n.get("attr", {}).get("shape", {})),
        )
        for n in model["modelTopology"]["node"]
    ]
    inputs = suggest_inputs(nodes)
    signature = model.get("signature") or {}
    outputs = [
        TensorSpec(source_node(str(info.get("name", key))), key=None, dtype=_json_dtype(info) or "unknown")
        for key, info in (signature.get("outputs") or {}).items()
    ] or suggest_outputs(nodes)
    signature_shapes = {
        source_node(str(info.get("name", key))): _json_shape({"shape": info.get("tensorShape", {})})
        for key, info in (signature.get("inputs") or {}).items()
    }
    inputs = [
        TensorSpec(spec.name, spec.dtype, spec.shape or signature_shapes.get(spec.name), spec.optional, op=spec.op)
        for spec in inputs
    ]
    histogram = op_histogram(nodes)
    standard = Counter[str]()
    for op, count in histogram.items():
        standard[TFJS_OP_STANDARD.get(op, op)] += count
    return ModelSummary(
        path=str(source.original),
        format=source.format,
        file_size=source.file_size,
        node_count=len(nodes),
        op_histogram=histogram,
        suggested_inputs=tuple(inputs),
        suggested_outputs=tuple(outputs),
        readiness=check_readiness(standard),
        nodes=tuple(nodes),
        details={"generated_by": str(model.get("generatedBy", "")), "converted_by": str(model.get("convertedBy", ""))},
    )


def signature_ops(graph: GraphDef, output_tensors: list[str]) -> list[str]:
    """The op of every node a signature's outputs depend on, inside called functions too."""
    by_name = {node.name: node for node in graph.node}
    functions = {function.signature.name: function for function in graph.library.function}
    ops: list[str] = []
    seen: set[str] = set()
    stack = [source_node(name) for name in output_tensors]
    called: list[str] = []
    while stack:
        name = stack.pop()
        if name in seen or name not in by_name:
            continue
        seen.add(name)
        node = by_name[name]
        ops.append(node.op)
        called.extend(_called_functions(node))
        stack.extend(source_node(ref) for ref in node.input)
    visited: set[str] = set()
    while called:
        function_name = called.pop()
        if function_name in visited or function_name not in functions:
            continue
        visited.add(function_name)
        for node in functions[function_name].node_def:
            ops.append(node.op)
            called.extend(_called_functions(node))
    return ops


def _called_functions(node: Any) -> list[str]:
    """Functions a node calls: PartitionedCall's f, While's cond and body, If's branches."""
    names = []
    for value in node.attr.values():
        if value.HasField("func"):
            names.append(value.func.name)
        elif value.HasField("list"):
            names.extend(func.name for func in value.list.func)
    return names


def read_keras_config(source: ModelSource) -> tuple[dict[str, Any], dict[str, str]]:
    """The model's architecture as saved (no code runs), and version details."""
    try:
        if source.format is ModelFormat.KERAS_V3:
            with zipfile.ZipFile(source.path) as archive:
                info = archive.getinfo(fmt.KERAS_V3_CONFIG)
                if info.file_size > KERAS_CONFIG_MAX_BYTES:
                    raise UnsupportedModelError("the Keras model's config.json is too large")
                config = json.loads(archive.read(info))
                details = {}
                if "metadata.json" in archive.namelist():
                    metadata = json.loads(archive.read("metadata.json"))
                    details = {"keras_version": str(metadata.get("keras_version", ""))}
        else:
            import h5py

            with h5py.File(source.path, "r") as h5:
                raw = h5.attrs["model_config"]
                config = json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else raw)
                version = h5.attrs.get("keras_version", b"")
                details = {"keras_version": version.decode() if isinstance(version, bytes) else str(version)}
    except (KeyError, ValueError, OSError, zipfile.BadZipFile) as error:
        raise UnsupportedModelError("the Keras file is damaged: its model configuration cannot be read") from error
    if not isinstance(config, dict):
        raise UnsupportedModelError("the Keras file is damaged: its model configuration cannot be read")
    return config, details


def iter_layers(config: dict[str, Any]) -> list[dict[str, Any]]:
    """Every layer config, including those inside nested models."""
    inner = config.get("config", {})
    layers = inner.get("layers", []) if isinstance(inner, dict) else []
    found: list[dict[str, Any]] = []
    for layer in layers if isinstance(layers, list) else []:
        if isinstance(layer, dict):
            found.append(layer)
            found.extend(iter_layers(layer))
    return found


def _layer_name(layer: dict[str, Any]) -> str:
    config = layer.get("config", {})
    return str(layer.get("name") or (config.get("name") if isinstance(config, dict) else "") or "")


def _keras_inputs(config: dict[str, Any], layers: list[dict[str, Any]]) -> list[TensorSpec]:
    top_layers = config.get("config", {}).get("layers", [])
    specs = []
    for layer in top_layers:
        layer_config = layer.get("config", {})
        shape = layer_config.get("batch_shape") or layer_config.get("batch_input_shape")
        if layer.get("class_name") == "InputLayer" or (shape and layer is top_layers[0]):
            name = _layer_name(layer)
            dims = None if shape is None else tuple(None if d is None else int(d) for d in shape)
            dtype = layer_config.get("dtype", "float32")
            if isinstance(dtype, dict):  # Keras 3 DTypePolicy
                dtype = dtype.get("config", {}).get("name", "float32")
            specs.append(TensorSpec(name=name, dtype=str(dtype), shape=dims, key=name))
    return specs


def _keras_outputs(config: dict[str, Any], layers: list[dict[str, Any]]) -> list[TensorSpec]:
    outputs = config.get("config", {}).get("output_layers")
    if isinstance(outputs, list) and outputs:
        # [[name, node, tensor], ...], or a single [name, node, tensor] in Keras 3 for one output
        entries = outputs if isinstance(outputs[0], list) else [outputs]
        names = [str(entry[0]) for entry in entries]
    else:
        top_layers = config.get("config", {}).get("layers", [])
        names = [_layer_name(top_layers[-1])] if top_layers else []
    return [TensorSpec(name=name, key=name) for name in names]


def _inspect_keras(source: ModelSource) -> ModelSummary:
    config, details = read_keras_config(source)
    layers = iter_layers(config)
    check_keras_config_is_safe(layers)
    layer_infos = tuple(LayerInfo(_layer_name(layer), str(layer.get("class_name", ""))) for layer in layers)
    histogram = dict(Counter(layer.class_name for layer in layer_infos).most_common())
    return ModelSummary(
        path=str(source.original),
        format=source.format,
        file_size=source.file_size,
        node_count=len(layer_infos),
        op_histogram=histogram,
        suggested_inputs=tuple(_keras_inputs(config, layers)),
        suggested_outputs=tuple(_keras_outputs(config, layers)),
        readiness=None,
        layers=layer_infos,
        details=details,
    )


def check_keras_config_is_safe(layers: list[dict[str, Any]]) -> None:
    """Refuse, before anything is loaded, a model whose layers would run code from the file."""
    for layer in layers:
        if layer.get("class_name") == "Lambda":
            raise UnsupportedModelError(
                f"layer '{_layer_name(layer)}' is a Lambda layer, which stores Python code; convbot does not run "
                "code from uploads. Replace the Lambda with built-in layers, or export a SavedModel"
            )
        module = str(layer.get("module") or "")
        if module and not module.startswith("keras"):
            raise UnsupportedModelError(
                f"layer '{_layer_name(layer)}' uses the custom class {module}.{layer.get('class_name')}, "
                "whose code is not in the file; export a SavedModel (model.export(...)) and send that"
            )

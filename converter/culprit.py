"""Why an artifact failed its check: the first node where it departs from the source, the weights
its quantization rounds most, and what to do next.

Called by verification only for artifacts whose status is FAILED, so passing artifacts cost nothing.
Runs in the conversion process: it imports TensorFlow.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from numpy.typing import NDArray
from tensorboard.compat.proto.node_def_pb2 import NodeDef

from converter.formats import Quantization, Target
from converter.protos import GraphDef
from converter.result import Artifact, ArtifactCheck, OutputCheck
from converter.tflite_run import run_signature, tensor_value
from converter.verify import Arrays, compare

logger = logging.getLogger(__name__)
_T = TypeVar("_T")

WORST_WEIGHTS_SHOWN = 3
# TFLite's dynamic-range quantizer leaves weights with fewer elements than this in float32
# (the converter's default `min_elements_for_weights`).
TFLITE_DYNAMIC_MIN_ELEMENTS = 1024
# Ops that never compute a value worth comparing: inputs and stored constants.
_NOT_COMPUTED = {"Const", "Placeholder", "PlaceholderWithDefault", "VarHandleOp", "NoOp"}


@dataclass(frozen=True)
class SourceGraph:
    """The TensorFlow graph an artifact was converted from (a frozen graph, or one rebuilt or frozen)."""

    path: Path
    text: bool = False

    def read(self) -> GraphDef:
        from converter.graph_inspect import read_graph_def

        return read_graph_def(self.path, text=self.text)


@dataclass(frozen=True)
class Departure:
    """The first node, in topological order, whose artifact value is off by more than the tolerance."""

    node: str
    op: str
    rel_error: float
    matched_before: int  # nodes with a counterpart that agreed before it
    without_counterpart: int  # nodes before it the artifact has no tensor for (fused away, renamed)

    def describe(self) -> str:
        agree = "1 node before it agrees" if self.matched_before == 1 else f"{self.matched_before} before it agree"
        return (
            f"first differs at {self.node} ({self.op}): {self.rel_error:.1e} of scale "
            f"({agree}, {self.without_counterpart} without a counterpart in the artifact)"
        )


@dataclass(frozen=True)
class WeightRounding:
    """How much a variant's quantization moves one weight constant: |w - q(w)| / |w| (L2 norms)."""

    name: str
    consumer_op: str
    rel_error: float

    def describe(self) -> str:
        return f"{self.name} ({self.consumer_op}) {self.rel_error:.1e}"


def explain_failure(
    artifact: Artifact, check: ArtifactCheck, failing_inputs: Arrays, source: SourceGraph | None
) -> tuple[ArtifactCheck, Departure | None]:
    """`check` (FAILED) with its culprit and advice, and the first departing node if one was found.
    Diagnosis never changes the verdict: when a part of it cannot be worked out, that part is left
    out rather than guessed."""
    from dataclasses import replace

    departure: Departure | None = None
    weights: list[WeightRounding] = []
    graph_def = _best_effort(source.read) if source is not None else None
    if graph_def is not None:
        departure = _best_effort(lambda: first_departure(artifact, graph_def, failing_inputs, check.tolerance))
        if artifact.quantization is not Quantization.NONE:
            weights = _best_effort(lambda: worst_weights(graph_def, artifact.target, artifact.quantization)) or []
    parts = []
    if departure is not None:
        parts.append(departure.describe())
    if weights:
        parts.append("weights rounded most (error / norm): " + ", ".join(w.describe() for w in weights))
    advice = advise(artifact.target, artifact.quantization, check.outputs, departure)
    return replace(check, culprit="; ".join(parts), advice=advice), departure


def _best_effort(diagnose: Callable[[], _T]) -> _T | None:
    try:
        return diagnose()
    except Exception:  # a runtime that cannot fetch a node, an op TensorFlow cannot import...
        logger.warning("could not diagnose a failed artifact", exc_info=True)
        return None


# ---------------------------------------------------------------- advice


def advise(
    target: Target, quantization: Quantization, outputs: Sequence[OutputCheck], departure: Departure | None
) -> str:
    """What a failed verdict means and the next step, per variant and per target."""
    worst = max((o.max_rel_error for o in outputs), default=float("inf"))
    moved = f"by up to {worst:.1%} of their scale" if np.isfinite(worst) else "to values that cannot be compared"
    if quantization is Quantization.FLOAT16:
        other = "quant=dynamic" if target is Target.TFLITE else "quant=uint16"
        return f"float16 moves this model's outputs {moved}; keep float32, or try {other}"
    if quantization is Quantization.DYNAMIC:
        return (
            f"int8 weights (dynamic range) move this model's outputs {moved}; "
            "try quant=float16 (closer to float32 at half its size), or keep float32"
        )
    if quantization is Quantization.UINT8:
        return (
            f"uint8 weights (one scale per tensor in TF.js) move this model's outputs {moved}; "
            "try quant=uint16 or quant=float16, or keep float32"
        )
    if quantization is Quantization.UINT16:
        return f"uint16 weights move this model's outputs {moved}; try quant=float16, or keep float32"
    if quantization.is_full_integer:
        return (
            f"int8 moves this model's outputs {moved}; its activation ranges come from your samples, so inputs "
            "unlike them saturate: calibrate on samples that cover what the model will see, or try quant=dynamic"
        )
    if target.is_tensorflow:
        return "the exported model computes something other than the source: do not use it; report it with the model"
    runtime = "TFLite" if target is Target.TFLITE else "TF.js"
    if departure is None:
        return (
            f"the {runtime} artifact computes something other than the source (outputs moved {moved}) "
            "and no single node could be named: do not rely on it; report it with the model"
        )
    return (
        f"everything before {departure.node} matches; {runtime}'s kernel for {departure.op} computes differently "
        "from TensorFlow's there (or reads other weights than the source holds): check the artifact on your own "
        "inputs (--verify-inputs) before relying on it, or report it with the model"
    )


# ---------------------------------------------------------------- first departing node


def first_departure(artifact: Artifact, graph_def: GraphDef, inputs: Arrays, tolerance: float) -> Departure | None:
    """Walk the source graph in topological order and return the first computed node whose value in
    the artifact is off by more than `tolerance` of that node's scale, on `inputs`. Nodes the
    artifact has no tensor for are skipped and counted; None when every compared node agrees."""
    fetch = _artifact_fetcher(artifact)
    if fetch is None:
        return None
    source = _SourceRun(graph_def)
    order = [n for n in _activations(topological_order(graph_def)) if source.is_float(n.name)]
    available = fetch.names([n.name for n in order])
    expected = source.values([n.name for n in order if n.name in available], inputs)
    got = fetch.values(list(expected), inputs)
    matched = skipped = 0
    for node in order:
        want, have = expected.get(node.name), got.get(node.name)
        if want is None or have is None or not _comparable(want, have):
            skipped += 1
            continue
        result = compare(node.name, have.reshape(want.shape), want, tolerance)
        if not result.passed:
            return Departure(node.name, node.op, result.max_rel_error, matched, skipped)
        matched += 1
    return None


def topological_order(graph_def: GraphDef) -> list[NodeDef]:
    """The nodes, each after every node it reads (data and control inputs), in file order otherwise."""
    by_name = {node.name: node for node in graph_def.node}
    placed: set[str] = set()
    order: list[NodeDef] = []
    for root in graph_def.node:
        stack: list[tuple[NodeDef, bool]] = [(root, False)]
        while stack:  # iterative depth-first: real graphs are deeper than Python's recursion limit
            node, inputs_done = stack.pop()
            if node.name in placed:
                continue
            if inputs_done:
                placed.add(node.name)
                order.append(node)
                continue
            stack.append((node, True))
            for name in _input_nodes(node):
                if name in by_name and name not in placed:
                    stack.append((by_name[name], False))
    return order


def _activations(order: Sequence[NodeDef]) -> list[NodeDef]:
    """The nodes whose values depend on the inputs: not constants, nor what is computed from
    constants alone (a weight's `/read` Identity), which converters fold away."""
    constant: set[str] = set()
    computed = []
    for node in order:
        inputs = [name.split(":")[0] for name in node.input if not name.startswith("^")]
        if node.op == "Const" or (inputs and all(name in constant for name in inputs)):
            constant.add(node.name)
        elif node.op not in _NOT_COMPUTED:
            computed.append(node)
    return computed


def _input_nodes(node: NodeDef) -> list[str]:
    # Reversed so the depth-first walk places a node's first input first.
    return [name.lstrip("^").split(":")[0] for name in reversed(node.input)]


def _comparable(want: NDArray[Any], have: NDArray[Any]) -> bool:
    floating = np.issubdtype(want.dtype, np.floating) and np.issubdtype(have.dtype, np.floating)
    return floating and want.size == have.size and want.size > 0 and want.shape == _squeezed_like(have, want)


def _squeezed_like(have: NDArray[Any], want: NDArray[Any]) -> tuple[int, ...]:
    # The same values may carry a leading batch of 1 on one side only (a TF.js or TFLite reshape).
    if have.shape == want.shape or have.size != want.size:
        return tuple(have.shape)
    return tuple(want.shape) if [d for d in have.shape if d != 1] == [d for d in want.shape if d != 1] else have.shape


class _SourceRun:
    """The source graph in TensorFlow, which can fetch any node."""

    def __init__(self, graph_def: GraphDef) -> None:
        import tensorflow as tf

        graph_def_tf = tf.compat.v1.GraphDef()
        graph_def_tf.ParseFromString(graph_def.SerializeToString())
        self.graph = tf.Graph()
        with self.graph.as_default():
            tf.graph_util.import_graph_def(graph_def_tf, name="")

    def is_float(self, name: str) -> bool:
        outputs = self.graph.get_operation_by_name(name).outputs
        return bool(outputs) and bool(outputs[0].dtype.is_floating)

    def values(self, names: Sequence[str], inputs: Arrays) -> Arrays:
        """The first output of each named node; nodes TensorFlow cannot fetch (a dead branch) are left out."""
        import tensorflow as tf

        feeds = {f"{key}:0": value for key, value in inputs.items()}
        with tf.compat.v1.Session(graph=self.graph) as session:
            try:
                values = session.run([f"{name}:0" for name in names], feeds)
                return dict(zip(names, values, strict=True))
            except Exception:  # one unfetchable node spoils a joint run
                return dict(_fetch_one_by_one(session, names, feeds))


def _fetch_one_by_one(session: Any, names: Iterable[str], feeds: dict[str, Any]) -> Iterable[tuple[str, Any]]:
    for name in names:
        try:
            yield name, session.run(f"{name}:0", feeds)
        except Exception:  # TensorFlow raises many types; a node it cannot fetch is skipped
            continue


@dataclass(frozen=True)
class _Fetcher:
    """Reads intermediate values out of an artifact: which source nodes it has a tensor for, and their values."""

    names: Callable[[Sequence[str]], set[str]]
    values: Callable[[Sequence[str], Arrays], Arrays]


def _artifact_fetcher(artifact: Artifact) -> _Fetcher | None:
    if artifact.target is Target.TFLITE:
        return _tflite_fetcher(Path(artifact.path))
    if artifact.target is Target.TFJS:
        return _tfjs_fetcher(Path(artifact.path))
    return None  # a layers model has no node names; TensorFlow targets are checked as a whole


def _tflite_fetcher(path: Path) -> _Fetcher:
    import tensorflow as tf

    from converter import formats as fmt

    with warnings.catch_warnings():  # "intended for debugging purposes only": that is what this is
        warnings.simplefilter("ignore")
        interpreter = tf.lite.Interpreter(model_path=str(path), experimental_preserve_all_tensors=True)
    mapping: dict[str, int] = {}

    def names(nodes: Sequence[str]) -> set[str]:
        mapping.update(node_tensors(interpreter, nodes))
        return set(mapping)

    def values(nodes: Sequence[str], inputs: Arrays) -> Arrays:
        signatures = interpreter.get_signature_list()
        runner = interpreter.get_signature_runner(
            fmt.SERVING_SIGNATURE if fmt.SERVING_SIGNATURE in signatures else None
        )
        run_signature(interpreter, runner, inputs)
        return {node: tensor_value(interpreter, mapping[node]) for node in nodes if node in mapping}

    return _Fetcher(names, values)


def node_tensors(interpreter: Any, nodes: Sequence[str]) -> dict[str, int]:
    """The index of the TFLite tensor holding each of the source `nodes` (in topological order) it has one for.

    Only the model's inputs and tensors computed from them count: TFLite names some weight tensors after the op
    that reads them ("trunk/Conv2D" may hold the kernel), and so a float16 file names the DEQUANTIZE op's
    output, the weights in float32, after the layer ("scores" the weights, "scores1" the layer's output)."""
    tensors = {d["index"]: d["name"] for d in interpreter.get_tensor_details()}
    computed = [detail["index"] for detail in interpreter.get_input_details()]
    known = set(computed)
    for op in interpreter._get_ops_details():  # in the order they run
        if known.intersection(op["inputs"]):
            outputs = [index for index in op["outputs"] if index >= 0]
            computed += outputs
            known.update(outputs)
    position = {name: i for i, name in enumerate(nodes)}
    found: dict[str, int] = {}
    for index in computed:
        node = tflite_tensor_node(tensors[index], position)
        if node is not None:
            found.setdefault(node, index)
    return found


def tflite_tensor_node(tensor_name: str, position: dict[str, int]) -> str | None:
    """The source node whose value a TFLite tensor holds, or None.

    TFLite names a tensor after the node that produced it; a fused op's tensor lists every node
    fused into it ("a/Relu6;a/BiasAdd;a/Conv2D"), and holds the value of the last of them in
    topological order. A name made unique gets a digit appended ("a/Conv2D1").
    """
    candidates = []
    for part in tensor_name.split(";"):
        if part in position:
            candidates.append(part)
        elif part.rstrip("0123456789") in position:
            candidates.append(part.rstrip("0123456789"))
    return max(candidates, key=position.__getitem__) if candidates else None


def _tfjs_fetcher(model_dir: Path) -> _Fetcher:
    import json

    from converter.tfjs_runtime import run_tfjs_model

    model = json.loads((model_dir / "model.json").read_text(encoding="utf-8"))
    present = {
        str(node.get("name"))
        for node in (model.get("modelTopology") or {}).get("node") or []
        if node.get("op") not in _NOT_COMPUTED
    }

    def names(nodes: Sequence[str]) -> set[str]:
        return present.intersection(nodes)

    def values(nodes: Sequence[str], inputs: Arrays) -> Arrays:
        wanted = [node for node in nodes if node in present]
        return run_tfjs_model(model_dir, inputs, wanted).outputs

    return _Fetcher(names, values)


# ---------------------------------------------------------------- weights


def worst_weights(
    graph_def: GraphDef, target: Target, quantization: Quantization, limit: int | None = WORST_WEIGHTS_SHOWN
) -> list[WeightRounding]:
    """The weight constants the variant's quantization moves most, relative to each weight's norm, worst first
    (the first `limit`; every one the variant moves when None)."""
    from tensorboard.util.tensor_util import make_ndarray

    consumers = _consumer_ops(graph_def)
    rounded = []
    for node in graph_def.node:
        if node.op != "Const" or node.attr["dtype"].type != 1:  # DT_FLOAT
            continue
        weights = make_ndarray(node.attr["value"].tensor).astype(np.float32)
        consumer = consumers.get(node.name, "")
        restored = _round_trip(weights, target, quantization, consumer)
        if restored is None:
            continue
        rounded.append(WeightRounding(node.name, consumer or "?", _relative_norm_error(weights, restored)))
    rounded.sort(key=lambda w: -w.rel_error)
    return [w for w in rounded[:limit] if w.rel_error > 0]


def _relative_norm_error(weights: NDArray[np.float32], restored: NDArray[np.float32]) -> float:
    # Relative to the norm, not the range: affine rounding is the same fraction of every tensor's range,
    # but a tensor whose range is stretched by a few outliers loses most of its typical weights.
    with np.errstate(over="ignore", invalid="ignore"):
        error = float(np.linalg.norm((restored.astype(np.float64) - weights).ravel()))
    norm = float(np.linalg.norm(weights.astype(np.float64).ravel()))
    if not np.isfinite(error):
        return float("inf")
    return error / norm if norm > 0 else 0.0


def _round_trip(
    weights: NDArray[np.float32], target: Target, quantization: Quantization, consumer_op: str
) -> NDArray[np.float32] | None:
    """The weights as the artifact holds them after dequantizing, or None if the variant leaves them alone."""
    if weights.size < 2:
        return None
    if quantization is Quantization.FLOAT16:
        with np.errstate(over="ignore"):
            return weights.astype(np.float16).astype(np.float32)
    if quantization in (Quantization.UINT8, Quantization.UINT16) and target is not Target.TFLITE:
        from tensorflowjs import quantization as tfjs_quantization

        dtype = np.uint8 if quantization is Quantization.UINT8 else np.uint16
        stored, metadata = tfjs_quantization.quantize_weights(weights, dtype)
        restored: NDArray[np.float32] = tfjs_quantization.dequantize_weights(stored, metadata, np.float32)
        return restored
    if quantization is Quantization.DYNAMIC and weights.size >= TFLITE_DYNAMIC_MIN_ELEMENTS:
        return _symmetric_int8(weights, consumer_op)
    return None


def _symmetric_int8(weights: NDArray[np.float32], consumer_op: str) -> NDArray[np.float32]:
    """TFLite dynamic range: symmetric int8 with one scale per output channel (TF 2.19 writes one
    per output channel for convolutions and fully connected layers alike): the last axis, for a
    depthwise kernel the last two; one scale per tensor for any other op."""
    if consumer_op == "DepthwiseConv2dNative" and weights.ndim == 4:
        channels = weights.reshape(-1, weights.shape[2] * weights.shape[3])
    elif consumer_op in ("Conv2D", "MatMul") and weights.ndim >= 2:
        channels = weights.reshape(-1, weights.shape[-1])
    else:
        channels = weights.reshape(-1, 1)
    scale = np.max(np.abs(channels), axis=0) / 127.0
    scale[scale == 0] = 1.0
    restored: NDArray[np.float32] = (np.clip(np.round(channels / scale), -127, 127) * scale).astype(np.float32)
    return restored.reshape(weights.shape)


def _consumer_ops(graph_def: GraphDef) -> dict[str, str]:
    """For each node, the op of the first node that reads it, looking through Identity nodes."""
    readers: dict[str, list[NodeDef]] = {}
    for node in graph_def.node:
        for name in node.input:
            if not name.startswith("^"):
                readers.setdefault(name.split(":")[0], []).append(node)

    def op_reading(name: str, depth: int = 0) -> str:
        for reader in readers.get(name, []):
            if reader.op == "Identity" and depth < 4:
                return op_reading(reader.name, depth + 1)
            return str(reader.op)
        return ""

    return {node.name: op_reading(node.name) for node in graph_def.node if node.op == "Const"}

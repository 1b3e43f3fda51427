"""Whether TF.js 4.22 can run every op of a TF.js graph model, checked before the model is accepted
as an artifact.

tensorflowjs checks op names only, but TensorFlow's optimizer, which it runs, can fuse an
activation into ``_FusedConv2D``/``FusedDepthwiseConv2dNative``/``_FusedMatMul`` that no TF.js
kernel implements (``_FusedHardSwish`` with oneDNN on): such a model loads, then fails at its first
run. So every node is checked (the graph's, its library functions' and its initializer's):

* its op against ``op_support.tfjs_ops()``: the installed tensorflowjs's op list, the same list as
  the @tensorflow/tfjs-converter 4.22 runtime's;
* a fused op's ``fused_ops`` against the shapes TF.js's executors read: nothing, ``BiasAdd``, or
  ``BiasAdd`` then an activation of ``data/tfjs_fused_activations.txt``.

A top-level fused node that fails is split back into standard ops by the TF.js reader's splitter
(``tfjs_input.split_fused_node``) and the model rewritten (constants the split needs, such as
hard-swish's 3 and 1/6, go to a new weight shard); anything else fails the TF.js target with a
one-line message naming the op. Repairing imports TensorFlow; checking does not.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from converter import formats as fmt
from converter.errors import ConversionError, UnsupportedModelError
from converter.op_support import DATA_DIR, check_readiness, read_op_list, tfjs_ops
from converter.tfjs_input import FUSED_OPS, split_fused_node

_FUSION_NOTE = (
    "TF.js has no kernel for this fusion and convbot cannot split it; TensorFlow's optimizer fuses more with "
    "oneDNN on, so convert with TF_ENABLE_ONEDNN_OPTS=0 (convbot's own processes do), or use the tflite target"
)


@dataclass(frozen=True)
class OpProblem:
    """A node TF.js 4.22 cannot run: ``what`` names the op (and the fused ops it cannot run)."""

    node: str
    what: str
    note: str  # what to do
    fused: bool  # a fused op whose fused_ops TF.js lacks (maybe repairable), not an unknown op
    top_level: bool  # in the graph itself, not in a library function or the initializer

    def message(self) -> str:
        return f"TF.js 4.22 cannot run {self.what} (node {self.node!r}): {self.note}"


@cache
def tfjs_fused_activations() -> frozenset[str]:
    """Lower-case activation names TF.js's fused kernels implement."""
    return read_op_list(DATA_DIR / "tfjs_fused_activations.txt")


def fused_ops_of(node: Mapping[str, Any]) -> list[str]:
    """A model.json node's ``fused_ops`` attr (base64 strings in JSON), decoded."""
    encoded = node.get("attr", {}).get("fused_ops", {}).get("list", {}).get("s", [])
    return [base64.b64decode(value).decode() for value in encoded]


def _tfjs_runs_fused_ops(fused_ops: list[str]) -> bool:
    # TF.js reads fused_ops as [extra op, activation]: an activation in first place is ignored,
    # a batch norm refused, so only these shapes compute what TensorFlow computes.
    if not fused_ops:
        return True
    if fused_ops[0] != "BiasAdd" or len(fused_ops) > 2:
        return False
    return len(fused_ops) == 1 or fused_ops[1].lower() in tfjs_fused_activations()


def _graph_nodes(model: Mapping[str, Any]) -> Iterator[tuple[Mapping[str, Any], bool]]:
    """Every node of model.json with whether it is top-level (in modelTopology's own node list)."""
    for key in ("modelTopology", "modelInitializer"):
        graph = model.get(key) or {}
        for node in graph.get("node", []):
            yield node, key == "modelTopology"
        for function in graph.get("library", {}).get("function", []):
            for node in function.get("nodeDef", []):
                yield node, False


def _problem(node: Mapping[str, Any], top_level: bool) -> OpProblem | None:
    op, name = str(node.get("op", "")), str(node.get("name", "?"))
    if op not in tfjs_ops():
        (finding,) = check_readiness({op: 1}).tfjs_unsupported
        return OpProblem(name, op, finding.note, fused=False, top_level=top_level)
    if op in FUSED_OPS:
        fused_ops = fused_ops_of(node)
        if not _tfjs_runs_fused_ops(fused_ops):
            return OpProblem(name, f"{op} fusing {'+'.join(fused_ops)}", _FUSION_NOTE, fused=True, top_level=top_level)
    return None


def tfjs_op_problems(model: Mapping[str, Any]) -> list[OpProblem]:
    """The nodes of a parsed model.json that TF.js 4.22 cannot run, in graph order."""
    found = (_problem(node, top_level) for node, top_level in _graph_nodes(model))
    return [problem for problem in found if problem is not None]


def _split_nodes(topology: dict[str, Any], names: set[str]) -> tuple[dict[str, Any], list[str], list[Any]]:
    """``topology`` (a GraphDef as JSON) with those of the named fused nodes the splitter can
    compute in standard ops split; the names of those split; the Const nodes the split added."""
    from google.protobuf import json_format
    from tensorflow.core.framework import graph_pb2

    source = json_format.ParseDict(topology, graph_pb2.GraphDef(), ignore_unknown_fields=True)
    graph_def = graph_pb2.GraphDef()
    graph_def.versions.CopyFrom(source.versions)
    graph_def.library.CopyFrom(source.library)
    split: list[str] = []
    added_consts: set[str] = set()
    for node in source.node:
        parts = graph_pb2.GraphDef()
        if node.name in names:
            try:
                split_fused_node(node, parts)
            except UnsupportedModelError:
                parts.Clear()  # it may have added some parts before refusing: keep the node as it is
        if parts.node:
            graph_def.node.extend(parts.node)
            split.append(node.name)
            added_consts.update(part.name for part in parts.node if part.op == "Const")
        else:
            graph_def.node.add().CopyFrom(node)
    weights = [_move_value_out(node) for node in graph_def.node if node.name in added_consts]
    # The same conversion tensorflowjs writes modelTopology with.
    return json_format.MessageToDict(graph_def), split, weights


def _move_value_out(const: Any) -> tuple[str, NDArray[np.float32]]:
    """A Const node's name and value, the value cleared from the node as TF.js expects (TF.js
    reads every Const from the weight shards)."""
    from tensorflow.core.framework import tensor_pb2
    from tensorflow.python.framework import tensor_util

    tensor = const.attr["value"].tensor
    value = tensor_util.MakeNdarray(tensor).astype(np.float32)
    tensor.CopyFrom(tensor_pb2.TensorProto(dtype=tensor.dtype, tensor_shape=tensor.tensor_shape))
    return str(const.name), value


def _add_weights(model_dir: Path, model: dict[str, Any], weights: list[tuple[str, NDArray[np.float32]]]) -> None:
    """Store ``weights`` (float32) as a new weight group with its own shard file."""
    manifest = model.setdefault("weightsManifest", [])
    shard = f"group{len(manifest) + 1}-shard1of1.bin"
    (model_dir / shard).write_bytes(b"".join(value.astype("<f4").tobytes() for _, value in weights))
    entries = [{"name": name, "shape": list(value.shape), "dtype": "float32"} for name, value in weights]
    manifest.append({"paths": [shard], "weights": entries})


def ensure_tfjs_runs_ops(model_dir: Path) -> list[str]:
    """Check the TF.js graph model in ``model_dir``, rewriting model.json with the fused nodes TF.js
    cannot run split into standard ops where the splitter can. Returns the names of the nodes split;
    raises ConversionError naming the first op TF.js still cannot run."""
    model_json = model_dir / fmt.TFJS_MODEL_JSON
    model = json.loads(model_json.read_text(encoding="utf-8"))
    problems = tfjs_op_problems(model)
    repairable = {problem.node for problem in problems if problem.fused and problem.top_level}
    split: list[str] = []
    if repairable:
        model["modelTopology"], split, weights = _split_nodes(model["modelTopology"], repairable)
        if weights:
            _add_weights(model_dir, model, weights)
    if split:
        model_json.write_text(json.dumps(model), encoding="utf-8")
        problems = tfjs_op_problems(model)
    if problems:
        raise ConversionError(problems[0].message(), "\n".join(problem.message() for problem in problems))
    return split

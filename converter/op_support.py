"""Which TensorFlow ops TFLite builtins, the TFLite Flex delegate and TF.js can take.

Answers from plain op lists so that it runs in milliseconds and never imports
tensorflow or tensorflowjs (either import costs seconds):

* ``data/tflite_builtin_ops.txt``: ops the TF 2.19 converter lowers to TFLite
  builtins or removes;
* ``data/tflite_select_ops.txt``: the Flex delegate's allowlist (SELECT_TF_OPS);
* TF.js: the ``op_list/*.json`` files of the installed tensorflowjs package,
  found with ``importlib.util.find_spec`` (which does not run the package), or
  ``data/tfjs_ops.txt`` when tensorflowjs is not installed.

Each list file says in its header where it came from.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

DATA_DIR = Path(__file__).parent / "data"

# Graph plumbing: gone after freezing and conversion on both targets, so never a finding.
PLUMBING_OPS: frozenset[str] = frozenset(
    {
        "Placeholder",
        "PlaceholderWithDefault",
        "Const",
        "Identity",
        "IdentityN",
        "NoOp",
        "StopGradient",
        "Snapshot",
        "PartitionedCall",
        "StatefulPartitionedCall",
        "VarHandleOp",
        "ReadVariableOp",
        "_Arg",
        "_Retval",
    }
)

# TF.js runs these, but only through model.executeAsync() (tfjs-converter's
# "control" and "dynamic" op categories): model.predict()/execute() throw.
_TFJS_CONTROL_FLOW_V1 = frozenset({"Enter", "Exit", "Merge", "Switch", "LoopCond", "NextIteration"})
_TFJS_DYNAMIC_SHAPE = frozenset(
    {
        "NonMaxSuppressionV2",
        "NonMaxSuppressionV3",
        "NonMaxSuppressionV4",
        "NonMaxSuppressionV5",
        "Where",
        "ListDiff",
    }
)
_TFJS_ASYNC_PREFIXES = ("TensorArray", "TensorList")
_TFJS_ASYNC_OTHER = frozenset({"EmptyTensorList", "If", "StatelessIf", "While", "StatelessWhile"})

_TENSOR_LIST_NOTE = (
    "a TensorList from tf.map_fn, a TensorArray or an RNN/LSTM loop: TFLite builtins take it "
    "only with a static batch size (fix the input shape), else it needs the Flex delegate "
    "(TensorFlow issue #53333)"
)
_LOOKUP_TABLE_NOTE = (
    "a lookup table (e.g. a StringLookup layer): needs the Flex delegate, or move that preprocessing out of the model"
)
_TRAINING_NOTE = "a training op left in the graph; choose outputs that do not need it"
_TFJS_ASYNC_NOTE = (
    "dynamic control flow: TF.js runs it only through model.executeAsync(), model.predict()/execute() fail"
)
_TFJS_DYNAMIC_NOTE = "output shape known only at run time: TF.js runs it only through model.executeAsync()"

# Notes that hold for both targets.
_COMMON_NOTES: dict[str, str] = {
    "TFLite_Detection_PostProcess": (
        "a TFLite custom op (object-detection post-processing): TFLite needs "
        "allow_custom_ops=True and a runtime that registers it; TF.js has no such op"
    ),
    "SaveV2": _TRAINING_NOTE,
    "RestoreV2": _TRAINING_NOTE,
    "MergeV2Checkpoints": _TRAINING_NOTE,
    "ShardedFilename": _TRAINING_NOTE,
    "SymbolicGradient": _TRAINING_NOTE,
    "BroadcastGradientArgs": _TRAINING_NOTE,
}

_TFLITE_NOTES: dict[str, str] = {
    "Erf": ("fine inside a GELU activation (fused to the GELU builtin); a stand-alone Erf needs the Flex delegate"),
    "Erfc": ("fine inside a GELU activation (fused to the GELU builtin); a stand-alone Erfc makes conversion fail"),
    "FusedBatchNormV2": (
        "old batch-norm op the converter does not fold (it folds FusedBatchNorm/V3): "
        "needs the Flex delegate, or re-export the model with current Keras"
    ),
    "EnsureShape": "a tf.ensure_shape check: needs the Flex delegate; fix the input shape instead",
}

_TFJS_NOTES: dict[str, str] = {
    "Assert": (
        "TF.js has no Assert: remove the Assert or convert with strip_debug_ops, else the "
        "TF.js converter rejects it or the model fails at load time (tfjs issue #8304)"
    ),
    "CheckNumerics": "a debug check TF.js lacks: convert with strip_debug_ops or remove it",
    "PrintV2": "a tf.print left in the graph: TF.js lacks PrintV2, remove it",
    "PreventGradient": "a training-time guard TF.js lacks: choose outputs that do not need it",
}

_TFLITE_SELECT_NOTE = (
    "not a TFLite builtin: the model will need the Flex delegate (SELECT_TF_OPS) at run time, "
    "which makes the app several MB larger"
)
_TFLITE_UNSUPPORTED_NOTE = (
    "neither a TFLite builtin nor allowed by the Flex delegate: conversion fails "
    "unless the op is removed or supplied as a custom op (allow_custom_ops)"
)
_TFJS_UNSUPPORTED_NOTE = (
    "TF.js has no kernel for it: the TF.js converter rejects the model (and with the op check skipped, loading fails)"
)


@dataclass(frozen=True)
class OpFinding:
    op: str
    count: int
    note: str  # what it means for the user, one short sentence

    def to_dict(self) -> dict[str, object]:
        return {"op": self.op, "count": self.count, "note": self.note}


@dataclass(frozen=True)
class Readiness:
    tflite_builtin_ok: bool  # every op converts to TFLite builtins
    # Not builtin, but the Flex delegate has it: the model will need the Flex delegate at run time.
    tflite_needs_select_ops: tuple[OpFinding, ...]
    # Neither: conversion will fail (or need custom ops).
    tflite_unsupported: tuple[OpFinding, ...]
    tfjs_ok: bool
    tfjs_unsupported: tuple[OpFinding, ...]
    # TF.js runs these, but only through model.executeAsync(); they do not make tfjs_ok false.
    tfjs_needs_execute_async: tuple[OpFinding, ...] = field(default=())

    def to_dict(self) -> dict[str, object]:
        return {
            "tflite_builtin_ok": self.tflite_builtin_ok,
            "tflite_needs_select_ops": [f.to_dict() for f in self.tflite_needs_select_ops],
            "tflite_unsupported": [f.to_dict() for f in self.tflite_unsupported],
            "tfjs_ok": self.tfjs_ok,
            "tfjs_unsupported": [f.to_dict() for f in self.tfjs_unsupported],
            "tfjs_needs_execute_async": [f.to_dict() for f in self.tfjs_needs_execute_async],
        }


def read_op_list(path: Path) -> frozenset[str]:
    """One op name a line; lines starting with '#' and blank lines are skipped."""
    ops: set[str] = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        name = line.strip()
        if name and not name.startswith("#"):
            ops.add(name)
    return frozenset(ops)


@cache
def tflite_builtin_ops() -> frozenset[str]:
    """TF ops the TF 2.19 converter lowers to TFLite builtins (or drops)."""
    return read_op_list(DATA_DIR / "tflite_builtin_ops.txt")


@cache
def tflite_select_ops() -> frozenset[str]:
    """TF ops the TFLite Flex delegate allows (SELECT_TF_OPS), TF 2.19."""
    return read_op_list(DATA_DIR / "tflite_select_ops.txt")


def installed_tfjs_op_list_dir() -> Path | None:
    """The installed tensorflowjs package's op_list folder, found without importing it."""
    try:
        spec = importlib.util.find_spec("tensorflowjs")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        folder = Path(location) / "op_list"
        if folder.is_dir():
            return folder
    return None


def read_tfjs_op_list(folder: Path) -> frozenset[str]:
    """Every tfOpName in tfjs-converter's op_list/*.json files."""
    ops: set[str] = set()
    for path in sorted(folder.glob("*.json")):
        entries = json.loads(path.read_text(encoding="utf-8"))
        ops.update(str(entry["tfOpName"]) for entry in entries if "tfOpName" in entry)
    return frozenset(ops)


@cache
def tfjs_ops() -> frozenset[str]:
    """TF ops TF.js supports: from the installed tensorflowjs, else the bundled copy."""
    folder = installed_tfjs_op_list_dir()
    if folder is not None:
        ops = read_tfjs_op_list(folder)
        if ops:
            return ops
    return read_op_list(DATA_DIR / "tfjs_ops.txt")


def _is_training_op(op: str) -> bool:
    return (
        op.startswith(("Apply", "ResourceApply", "SparseApply", "ResourceSparseApply"))
        or op.endswith(("Grad", "GradV2", "GradV3", "Gradient", "Summary"))
        or op in {"Save", "SaveSlices", "Restore", "RestoreSlice", "MergeSummary"}
    )


def _tensor_list_op(op: str) -> bool:
    return op.startswith(("TensorList", "TensorArray")) or op == "EmptyTensorList"


def _lookup_table_op(op: str) -> bool:
    return op.startswith(("LookupTable", "InitializeTable")) or op.endswith(("HashTable", "HashTableV2"))


def _tflite_note(op: str, flex: bool) -> str:
    if op in _COMMON_NOTES:
        return _COMMON_NOTES[op]
    if op in _TFLITE_NOTES:
        return _TFLITE_NOTES[op]
    if flex and _tensor_list_op(op):
        return _TENSOR_LIST_NOTE
    if flex and _lookup_table_op(op):
        return _LOOKUP_TABLE_NOTE
    if _is_training_op(op):
        return _TRAINING_NOTE
    return _TFLITE_SELECT_NOTE if flex else _TFLITE_UNSUPPORTED_NOTE


def _tfjs_note(op: str) -> str:
    if op in _COMMON_NOTES:
        return _COMMON_NOTES[op]
    if op in _TFJS_NOTES:
        return _TFJS_NOTES[op]
    if _is_training_op(op):
        return _TRAINING_NOTE
    return _TFJS_UNSUPPORTED_NOTE


def _tfjs_async_note(op: str) -> str | None:
    if op in _TFJS_DYNAMIC_SHAPE:
        return _TFJS_DYNAMIC_NOTE
    if op in _TFJS_CONTROL_FLOW_V1 or op in _TFJS_ASYNC_OTHER or op.startswith(_TFJS_ASYNC_PREFIXES):
        return _TFJS_ASYNC_NOTE
    return None


def _sorted(findings: Iterable[OpFinding]) -> tuple[OpFinding, ...]:
    return tuple(sorted(findings, key=lambda f: (-f.count, f.op)))


def check_readiness(op_counts: Mapping[str, int]) -> Readiness:
    """Which of a graph's ops (op type -> node count) TFLite and TF.js cannot take."""
    builtin, select, tfjs = tflite_builtin_ops(), tflite_select_ops(), tfjs_ops()
    needs_select: list[OpFinding] = []
    tflite_bad: list[OpFinding] = []
    tfjs_bad: list[OpFinding] = []
    tfjs_async: list[OpFinding] = []
    for op, count in op_counts.items():
        if count <= 0 or op in PLUMBING_OPS:
            continue
        if op not in builtin:
            flex = op in select
            finding = OpFinding(op, count, _tflite_note(op, flex))
            (needs_select if flex else tflite_bad).append(finding)
        if op not in tfjs:
            tfjs_bad.append(OpFinding(op, count, _tfjs_note(op)))
        else:
            note = _tfjs_async_note(op)
            if note is not None:
                tfjs_async.append(OpFinding(op, count, note))
    return Readiness(
        tflite_builtin_ok=not needs_select and not tflite_bad,
        tflite_needs_select_ops=_sorted(needs_select),
        tflite_unsupported=_sorted(tflite_bad),
        tfjs_ok=not tfjs_bad,
        tfjs_unsupported=_sorted(tfjs_bad),
        tfjs_needs_execute_async=_sorted(tfjs_async),
    )

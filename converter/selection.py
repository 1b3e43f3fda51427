"""Outputs chosen by a selection op (TopK and so tf.sort/tf.argsort, NonMaxSuppression V1-V5,
CombinedNonMaxSuppression, ArgMax/ArgMin; Where over a threshold in converter/threshold_selection.py)
compared with ties in mind.

When several candidates score within rounding of each other, two correct runtimes may pick
different ones: random or constant test inputs make many such ties. So for an output that depends
on a selection, verification (a) compares what feeds the selection (the scores, the boxes before
they are gathered) at the normal tolerance, in the reference and in the artifact where the artifact
exposes them, and (b) compares the selected rows one by one, excusing a row only where the
reference itself could have chosen another element: one whose score is within the tolerance of
the scores' scale. Anything else fails as usual.

Runs in the verification process (it imports TensorFlow and runs TF.js for the artifact's tensors).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from converter.formats import Target
from converter.graph_inspect import source_node
from converter.protos import GraphDef
from converter.result import Artifact, OutputCheck
from converter.tflite_run import run_signature, tensor_value
from converter.threshold_selection import FLIP_NOTE, Threshold, compare_flipped_rows, find_threshold

Arrays = dict[str, NDArray[Any]]

TOPK_OPS = frozenset({"TopKV2", "TopK"})
NMS_OPS = frozenset(
    {"NonMaxSuppression", "NonMaxSuppressionV2", "NonMaxSuppressionV3", "NonMaxSuppressionV4", "NonMaxSuppressionV5"}
)
COMBINED_NMS_OPS = frozenset({"CombinedNonMaxSuppression"})
ARG_OPS = frozenset({"ArgMax", "ArgMin"})
GATHER_OPS = frozenset({"GatherV2", "Gather", "GatherNd", "ResourceGather"})
PASS_THROUGH_OPS = frozenset({"Identity", "Cast"})  # an output that is still the chosen indices
TIE_NOTE = "rows chose differently among tied scores"


@dataclass(frozen=True)
class Selection:
    """One selection op an output depends on: the tensor it chooses by and what it chose."""

    node: str
    op: str
    scores: str  # the tensor the choice is made on
    chosen: str  # TopK, CombinedNMS: the chosen scores; NMS: the selected indices; ArgMax: the index
    feeds: tuple[str, ...]  # tensors feeding the selected output: the scores, boxes before gathering
    indices: str = ""  # the chosen indices into the scores' last axis (NMS: the flattened scores), if any


def tensor_name(key: str) -> str:
    """A graph tensor name for an output key or a tensor reference ("node" -> "node:0")."""
    return key if ":" in key else f"{key}:0"


def _input_names(node: Any) -> list[str]:
    return [name for name in node.input if not name.startswith("^")]


def _ancestors(nodes: Mapping[str, Any], start: str) -> set[str]:
    seen: set[str] = set()
    stack = [start]
    while stack:
        name = stack.pop()
        if name in seen or name not in nodes:
            continue
        seen.add(name)
        stack.extend(source_node(i) for i in _input_names(nodes[name]))
    return seen


def _gathered_feeds(nodes: Mapping[str, Any], upstream: set[str], selection: str) -> list[str]:
    """Params of the gathers between `selection` and the output whose indices come from it."""
    feeds = []
    for name in upstream:
        node = nodes[name]
        inputs = _input_names(node)
        if (
            node.op in GATHER_OPS
            and len(inputs) > 1
            and selection in _ancestors(nodes, source_node(inputs[1]))
            and selection not in _ancestors(nodes, source_node(inputs[0]))
        ):
            feeds.append(tensor_name(inputs[0]))
    return sorted(feeds)


def _selection(nodes: Mapping[str, Any], upstream: set[str], node: Any) -> Selection | None:
    inputs = _input_names(node)
    if node.op in TOPK_OPS:  # also tf.sort and tf.argsort: TopKV2 with k the full length
        scores, chosen, indices = inputs[0], f"{node.name}:0", f"{node.name}:1"
    elif node.op in NMS_OPS:
        scores, chosen, indices = inputs[1], f"{node.name}:0", f"{node.name}:0"
    elif node.op in COMBINED_NMS_OPS:  # outputs nmsed_boxes, nmsed_scores, nmsed_classes, valid_detections
        scores, chosen, indices = inputs[1], f"{node.name}:1", ""
    elif node.op in ARG_OPS:
        scores, chosen, indices = inputs[0], f"{node.name}:0", f"{node.name}:0"
    else:
        return None
    own = [tensor_name(inputs[0]), tensor_name(scores)]
    feeds = tuple(dict.fromkeys(own + _gathered_feeds(nodes, upstream, node.name)))
    return Selection(node.name, node.op, tensor_name(scores), chosen, feeds, indices)


def find_selections(graph: GraphDef, output_keys: Sequence[str]) -> dict[str, tuple[Selection, ...]]:
    """For each output that depends on a selection op it can re-derive, those selections."""
    nodes = {node.name: node for node in graph.node}
    found: dict[str, tuple[Selection, ...]] = {}
    for key in output_keys:
        upstream = _ancestors(nodes, source_node(key))
        selections = [_selection(nodes, upstream, nodes[name]) for name in sorted(upstream)]
        chosen = tuple(s for s in selections if s is not None)
        if chosen:
            found[key] = chosen
    return found


def find_thresholds(graph: GraphDef, output_keys: Sequence[str]) -> dict[str, Threshold]:
    """For each output that depends on a Where over a threshold comparison, that Where."""
    nodes = {node.name: node for node in graph.node}
    found = {key: find_threshold(nodes, _ancestors(nodes, source_node(key)), tensor_name(key)) for key in output_keys}
    return {key: threshold for key, threshold in found.items() if threshold is not None}


def resolve_pass_through(nodes: Mapping[str, Any], tensor: str) -> str:
    """The tensor `tensor` copies, through Identity and Cast."""
    tensor = tensor_name(tensor)
    while source_node(tensor) in nodes and nodes[source_node(tensor)].op in PASS_THROUGH_OPS:
        tensor = tensor_name(_input_names(nodes[source_node(tensor)])[0])
    return tensor


def find_index_outputs(graph: GraphDef, found: Mapping[str, Sequence[Selection]]) -> dict[str, Selection]:
    """The outputs that are a selection's chosen indices themselves (ArgMax, tf.argsort, NMS indices)."""
    nodes = {node.name: node for node in graph.node}
    index_outputs = {}
    for key, selections in found.items():
        tensor = resolve_pass_through(nodes, key)
        selection = next((s for s in selections if s.indices == tensor), None)
        if selection is not None:
            index_outputs[key] = selection
    return index_outputs


@dataclass(frozen=True)
class SelectionHeads:
    """The outputs of one model that depend on selections, and how to check them."""

    by_output: dict[str, tuple[Selection, ...]]
    index_outputs: dict[str, Selection] = field(default_factory=dict)  # outputs that are chosen indices
    thresholds: dict[str, Threshold] = field(default_factory=dict)  # outputs chosen by Where over a threshold

    def __contains__(self, key: object) -> bool:
        return key in self.by_output or key in self.thresholds

    def reference_tensors(self) -> list[str]:
        """Tensors the reference must compute besides the outputs: scores, choices, feeds."""
        names = [
            name
            for selections in self.by_output.values()
            for s in selections
            for name in (s.scores, s.chosen, *s.feeds)
        ]
        names += [name for threshold in self.thresholds.values() for name in threshold.tensors()]
        return list(dict.fromkeys(names))

    def feeds(self) -> list[str]:
        """The tensors to read from the artifact: the selections' feeds, Where's scores and indices."""
        names = [f for selections in self.by_output.values() for s in selections for f in s.feeds]
        names += [name for t in self.thresholds.values() for name in (t.scores, t.indices)]
        return list(dict.fromkeys(names))

    def check(
        self, key: str, got: NDArray[Any], wanted: Arrays, artifact_feeds: Arrays, tolerance: float
    ) -> list[OutputCheck]:
        """(a) the feeds of `key`'s selections the artifact exposes, then (b) its rows, ties excused."""
        from converter.verify import compare

        if key not in self.by_output:
            return self._check_threshold(key, got, wanted, artifact_feeds, tolerance)
        selections = self.by_output[key]
        checks = [
            replace_note(compare(name, artifact_feeds[name], wanted[name], tolerance), f"feeds {s.op} '{s.node}'")
            for s in selections
            for name in s.feeds
            if name in artifact_feeds and name in wanted
        ]
        feeds = [name for s in selections for name in s.feeds if name in wanted]
        hidden = [name for name in feeds if name not in artifact_feeds]
        # A row chosen among ties is judged by its feeds when the artifact showed them all right;
        # otherwise it must be one of the rows the reference itself chose among those ties.
        feeds_right = bool(feeds) and not hidden and all(c.passed for c in checks)
        tied = _tied_slots(selections, wanted, tolerance)
        alternatives = self._alternatives(key, got, wanted, tolerance)
        rows = compare_rows(key, got, wanted[key], tolerance, tied, feeds_right, alternatives)
        if hidden and rows.note:
            rows = replace_note(rows, f"{rows.note}; {', '.join(hidden)} compared in the reference only")
        checks.append(rows)
        return checks

    def _check_threshold(
        self, key: str, got: NDArray[Any], wanted: Arrays, artifact_feeds: Arrays, tolerance: float
    ) -> list[OutputCheck]:
        """(a) the scores Where's threshold is applied to, then (b) the rows, aligned by Where's indices
        where the two sides differ only by elements within the tolerance of the threshold."""
        from converter.verify import compare

        threshold = self.thresholds[key]
        checks = [
            replace_note(
                compare(name, artifact_feeds[name], wanted[name], tolerance), f"feeds Where '{threshold.node}'"
            )
            for name in (threshold.scores,)
            if name in artifact_feeds and name in wanted
        ]
        rows = compare(key, got, wanted[key], tolerance)
        if not rows.passed:
            got_indices = got if threshold.output_is_indices else artifact_feeds.get(threshold.indices)
            flipped = compare_flipped_rows(key, got, wanted, got_indices, threshold, tolerance)
            if flipped is not None:
                rows = flipped
            elif got.shape[:1] != wanted[key].shape[:1]:
                rows = replace_note(
                    rows, f"Where '{threshold.node}' chose {len(got)} elements, the source {len(wanted[key])}"
                )
        return [*checks, rows]

    def _alternatives(self, key: str, got: NDArray[Any], wanted: Arrays, tolerance: float) -> NDArray[np.bool_] | None:
        """For an output that is chosen indices: per slot, does the artifact's index point at an element
        the reference scores within the tolerance of the one it chose (an equally valid choice)?"""
        selection = self.index_outputs.get(key)
        if selection is None or selection.scores not in wanted or key not in wanted:
            return None
        scores = np.asarray(wanted[selection.scores], np.float64)
        expected = np.asarray(wanted[key])
        if got.shape != expected.shape or not scores.size:
            return None
        margin = _margin(scores, tolerance)
        return np.asarray(
            np.abs(_scores_at(selection, scores, got) - _scores_at(selection, scores, expected)) <= margin
        ).reshape(-1)


def _scores_at(selection: Selection, scores: NDArray[Any], indices: NDArray[Any]) -> NDArray[Any]:
    """The scores the indices point at (NaN for an index out of range, such as padding)."""
    if selection.op in NMS_OPS:
        scores, axis = scores.reshape(-1), 0
    elif selection.op in ARG_OPS:  # the reduced axis: the one whose removal gives the indices' shape
        axis = _reduced_axis(scores, indices)
        scores, indices = np.moveaxis(scores, axis, -1), np.expand_dims(indices, -1)
        axis = -1
    else:
        axis = -1
    index = indices.astype(np.int64)
    inside = (index >= 0) & (index < scores.shape[axis])
    picked = np.take_along_axis(scores, np.clip(index, 0, scores.shape[axis] - 1), axis=axis)
    return np.where(inside, picked, np.nan)


def _reduced_axis(scores: NDArray[Any], index: NDArray[Any]) -> int:
    return next((a for a in range(scores.ndim) if np.delete(scores.shape, a).tolist() == list(index.shape)), -1)


def _margin(scores: NDArray[Any], tolerance: float) -> float:
    """How close two scores are to count as tied: the tolerance of the scores' scale."""
    return tolerance * max(float(np.max(np.abs(scores))) if scores.size else 0.0, 1e-6)


def replace_note(check: OutputCheck, note: str) -> OutputCheck:
    return replace(check, note=note)


def _tied_slots(selections: Sequence[Selection], wanted: Arrays, tolerance: float) -> NDArray[np.bool_] | None:
    """Per selected slot: could the reference have chosen another element there?"""
    masks = []
    for selection in selections:
        if selection.scores not in wanted or selection.chosen not in wanted:
            continue
        scores = np.asarray(wanted[selection.scores], np.float64)
        chosen = np.asarray(wanted[selection.chosen])
        margin = _margin(scores, tolerance)
        if selection.op in TOPK_OPS:
            masks.append(_topk_ties(scores, chosen.astype(np.float64), margin))
        elif selection.op in NMS_OPS:
            masks.append(_nms_ties(scores.reshape(-1), chosen.reshape(-1).astype(np.int64), margin))
        elif selection.op in COMBINED_NMS_OPS:  # scores [batch, boxes, classes], chosen [batch, max_total]
            masks.append(_topk_ties(scores.reshape(len(chosen), -1), chosen.astype(np.float64), margin))
        else:
            masks.append(_arg_ties(scores, chosen.astype(np.int64), margin))
    if not masks:
        return None
    size = masks[0].size
    same = [m for m in masks if m.size == size]
    return np.logical_or.reduce(same) if len(same) > 1 else same[0]


def _topk_ties(scores: NDArray[Any], values: NDArray[Any], margin: float) -> NDArray[np.bool_]:
    """Slot i is tied when another candidate in its row scores within `margin` of its value."""
    rows = scores.reshape(-1, scores.shape[-1])
    picked = values.reshape(-1, values.shape[-1])
    near = np.abs(rows[:, None, :] - picked[:, :, None]) <= margin
    return np.asarray(near.sum(axis=-1) >= 2).reshape(-1)


def _nms_ties(scores: NDArray[Any], indices: NDArray[Any], margin: float) -> NDArray[np.bool_]:
    valid = (indices >= 0) & (indices < scores.size)
    values = np.where(valid, scores[np.clip(indices, 0, max(scores.size - 1, 0))], np.nan)
    near = np.abs(scores[None, :] - values[:, None]) <= margin
    return np.asarray(near.sum(axis=-1) >= 2)


def _arg_ties(scores: NDArray[Any], index: NDArray[Any], margin: float) -> NDArray[np.bool_]:
    """ArgMax/ArgMin over the axis whose removal gives the index's shape: tied when two are near."""
    axis = _reduced_axis(scores, index)
    ordered = np.sort(scores, axis=axis)
    top = np.take(ordered, [-1, -2], axis=axis)
    bottom = np.take(ordered, [0, 1], axis=axis)
    near_top = np.abs(np.take(top, 0, axis=axis) - np.take(top, 1, axis=axis)) <= margin
    near_bottom = np.abs(np.take(bottom, 0, axis=axis) - np.take(bottom, 1, axis=axis)) <= margin
    return np.asarray(near_top | near_bottom).reshape(-1)


def compare_rows(
    name: str,
    got: NDArray[Any],
    expected: NDArray[Any],
    tolerance: float,
    tied: NDArray[np.bool_] | None,
    feeds_right: bool = False,
    alternatives: NDArray[np.bool_] | None = None,
) -> OutputCheck:
    """Compare row by row along the selected axis; a differing row passes only where `tied`, and
    only if it equals a row the reference chose at a tied slot or is marked in `alternatives` (an
    index to an element scored within the tolerance of the reference's), unless `feeds_right` (what
    feeds the selection was compared in the artifact and passed)."""
    from converter.verify import compare

    whole = compare(name, got, expected, tolerance)
    axis = _row_axis(expected, tied)
    if whole.passed or got.shape != expected.shape or tied is None or axis is None:
        return whole
    got64 = np.moveaxis(got.astype(np.float64), axis, 0).reshape(tied.size, -1)
    expected64 = np.moveaxis(expected.astype(np.float64), axis, 0).reshape(tied.size, -1)
    scale = max(float(np.max(np.abs(expected64))), 1e-6)
    row_error = np.max(np.abs(got64 - expected64), axis=1) / scale if expected64.size else np.zeros(tied.size)
    differs = ~(row_error <= tolerance)  # NaN differs
    excused = differs & tied
    if not feeds_right:
        allowed = _matches_a_tied_row(got64, expected64, tied, tolerance * scale)
        if alternatives is not None and alternatives.size == tied.size:
            allowed |= alternatives
        excused &= allowed
    kept = ~excused
    abs_error = float(np.max(row_error[kept]) * scale) if kept.any() else 0.0
    passed = not bool((differs & ~excused).any())
    note = ""
    if excused.any():
        worst = float(np.max(row_error[excused]))
        note = f"{int(excused.sum())} of {tied.size} {TIE_NOTE} (those differ by up to {worst:.2g} of scale)"
    return OutputCheck(name, abs_error, abs_error / scale, passed, note)


def _matches_a_tied_row(
    got: NDArray[Any], expected: NDArray[Any], tied: NDArray[np.bool_], margin: float
) -> NDArray[np.bool_]:
    """Per row of `got`: does it equal one of the reference's rows at a tied slot?"""
    candidates = expected[tied]
    if not candidates.size:
        return np.zeros(len(got), bool)
    distance = np.max(np.abs(got[:, None, :] - candidates[None, :, :]), axis=-1)
    return np.asarray(np.any(distance <= margin, axis=1))


def _row_axis(expected: NDArray[Any], tied: NDArray[np.bool_] | None) -> int | None:
    if tied is None:
        return None
    if expected.size == tied.size:  # one element per slot (scores, indices, classes), any batch dims
        return 0 if expected.ndim else None
    return next((a for a, size in enumerate(expected.shape) if size == tied.size), None)


def tie_message(checks: Sequence[OutputCheck]) -> str:
    """The verdict's words for a passing artifact: 'ok', or how many rows were chosen among ties."""
    notes = [f"{c.name}: {c.note}" for c in checks if TIE_NOTE in c.note or FLIP_NOTE in c.note]
    return f"passed: {'; '.join(dict.fromkeys(notes))}" if notes else "ok"


def artifact_tensors(artifact: Artifact, names: Sequence[str], inputs: Arrays) -> Arrays:
    """The intermediate tensors `names` as the artifact computes them, those it exposes.

    TFLite keeps intermediates with `experimental_preserve_all_tensors`; TF.js executes any node
    it kept; a frozen graph is run by TensorFlow. A name the artifact does not have is left out.
    """
    if not names:
        return {}
    try:
        if artifact.target is Target.TFLITE:
            return _tflite_tensors(Path(artifact.path), names, inputs)
        if artifact.target is Target.TFJS:
            return _tfjs_tensors(Path(artifact.path), names, inputs)
        if artifact.target is Target.FROZEN_GRAPH:
            return _graph_tensors(Path(artifact.path), names, inputs)
    except Exception:  # an artifact that cannot show its intermediates still gets check (b)
        return {}
    return {}


def _tflite_tensors(path: Path, names: Sequence[str], inputs: Arrays) -> Arrays:
    import tensorflow as tf

    from converter.culprit import node_tensors

    interpreter = tf.lite.Interpreter(model_path=str(path), experimental_preserve_all_tensors=True)
    runner = interpreter.get_signature_runner(next(iter(interpreter.get_signature_list()), None))
    run_signature(interpreter, runner, inputs)
    # Only a node's first output has a TFLite tensor named after it.
    first_outputs = {name.partition(":")[0]: name for name in names if name.partition(":")[2] == "0"}
    indices = node_tensors(interpreter, list(first_outputs))
    return {first_outputs[node]: tensor_value(interpreter, index) for node, index in indices.items()}


def _tfjs_tensors(path: Path, names: Sequence[str], inputs: Arrays) -> Arrays:
    from converter.tfjs_runtime import TfjsRunError, run_tfjs_model

    found: Arrays = {}
    for name in names:  # one at a time: TF.js refuses the whole request for one unknown name
        try:
            found.update(run_tfjs_model(path, inputs, [name], positional=len(inputs) == 1).outputs)
        except TfjsRunError:
            continue
    return found


def _graph_tensors(path: Path, names: Sequence[str], inputs: Arrays) -> Arrays:
    from converter.formats import ModelFormat
    from converter.verify import reference_runner

    return reference_runner(ModelFormat.FROZEN_GRAPH, path, list(names))(inputs)


def with_selection_tensors(
    build: Callable[[list[str]], Callable[[Arrays], Arrays]], output_keys: Sequence[str], heads: SelectionHeads | None
) -> Callable[[Arrays], Arrays]:
    """The reference computing the outputs and, where it can, the tensors the selections need."""
    if heads is None:
        return build(list(output_keys))
    extra = [name for name in heads.reference_tensors() if name not in output_keys]
    full = build([*output_keys, *extra])
    plain: list[Callable[[Arrays], Arrays]] = []  # built only if `full` fails: each build loads the model

    def run(inputs: Arrays) -> Arrays:
        try:
            return full(inputs)
        except Exception:  # a reference that cannot show an intermediate still gives the outputs
            if not plain:
                plain.append(build(list(output_keys)))
            return plain[0](inputs)

    return run


def selection_heads(graph_path: Path, output_keys: Sequence[str], text: bool = False) -> SelectionHeads | None:
    from converter.graph_inspect import read_graph_def

    graph = read_graph_def(graph_path, text=text)
    found = find_selections(graph, output_keys)
    thresholds = find_thresholds(graph, output_keys)
    return SelectionHeads(found, find_index_outputs(graph, found), thresholds) if found or thresholds else None

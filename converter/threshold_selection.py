"""Outputs chosen by Where over a threshold compared with near-threshold flips in mind.

`tf.where(scores > t)` (and `tf.boolean_mask`, which lowers to it) keeps the elements past a threshold.
A score within rounding of the threshold may land on either side in two correct runtimes: the count
of rows changes and every later row shifts. So for an output that depends on such a Where, the scores
are compared at the normal tolerance (as any selection's feeds, converter/selection.py), and when the
rows differ the two sides' Where indices are aligned: every element chosen by one side only must
score within the tolerance of the scores' scale from the threshold, and the rows both sides chose
must agree at the normal tolerance. Anything else fails as usual.

Only a Where whose condition is a comparison (Greater, GreaterEqual, Less, LessEqual) of the scores
with the threshold is recognised, and the rows can be aligned only where the output is Where's indices
itself or the artifact exposes them (TFLite keeps intermediates, TF.js executes any node it kept).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from converter.result import OutputCheck

Arrays = dict[str, NDArray[Any]]

THRESHOLD_OPS = frozenset({"Greater", "GreaterEqual", "Less", "LessEqual"})
FLIP_NOTE = "within tolerance of the threshold chose differently"


@dataclass(frozen=True)
class Threshold:
    """A Where over `scores <op> threshold`: the tensors that decide it and the indices it chose."""

    node: str
    scores: str
    threshold: str
    condition: str  # Where's input, maybe a reshape of the comparison: the indices refer to its shape
    indices: str  # Where's output: one row of coordinates per element chosen
    output_is_indices: bool  # the output is Where's indices themselves (through Identity or Cast)

    def tensors(self) -> tuple[str, ...]:
        return (self.scores, self.threshold, self.condition, self.indices)


def find_threshold(nodes: Mapping[str, Any], upstream: set[str], output: str) -> Threshold | None:
    """The Where over a threshold comparison that the output tensor `output` depends on, if one is."""
    from converter.graph_inspect import source_node
    from converter.selection import resolve_pass_through, tensor_name

    for name in sorted(upstream):
        node = nodes[name]
        inputs = [i for i in node.input if not i.startswith("^")]
        if node.op != "Where" or len(inputs) != 1:
            continue
        condition = nodes.get(source_node(inputs[0]))
        while condition is not None and condition.op in ("Reshape", "Identity"):
            condition = nodes.get(source_node(condition.input[0]))
        if condition is not None and condition.op in THRESHOLD_OPS:
            scores, threshold = (tensor_name(i) for i in condition.input[:2])
            indices = f"{name}:0"
            is_indices = resolve_pass_through(nodes, output) == indices
            return Threshold(name, scores, threshold, tensor_name(inputs[0]), indices, is_indices)
    return None


def compare_flipped_rows(
    key: str,
    got: NDArray[Any],
    wanted: Arrays,
    got_indices: NDArray[Any] | None,
    threshold: Threshold,
    tolerance: float,
) -> OutputCheck | None:
    """The output `key` aligned by the two sides' Where indices, when they differ only by elements
    near the threshold; None when that cannot be shown (the caller's plain comparison then stands)."""
    from converter.verify import compare

    if got_indices is None or not set(threshold.tensors()) <= wanted.keys():
        return None
    shape = wanted[threshold.condition].shape
    chosen, got_chosen = _flat(wanted[threshold.indices], shape), _flat(got_indices, shape)
    expected = wanted[key]
    if len(chosen) != len(expected) or len(got_chosen) != len(got) or got.shape[1:] != expected.shape[1:]:
        return None
    near = _near_threshold(wanted[threshold.scores], wanted[threshold.threshold], shape, tolerance)
    flipped = np.setxor1d(chosen, got_chosen)
    if flipped.size == 0 or not near[flipped].all():
        return None
    both = np.intersect1d(chosen, got_chosen)
    rows = compare(key, got[np.searchsorted(got_chosen, both)], expected[np.searchsorted(chosen, both)], tolerance)
    note = (
        f"{flipped.size} element(s) {FLIP_NOTE} ({len(got)} rows, the source {len(expected)}); "
        f"the {both.size} rows both chose compared"
    )
    return OutputCheck(key, rows.max_abs_error, rows.max_rel_error, rows.passed, note)


def _flat(indices: NDArray[Any], shape: tuple[int, ...]) -> NDArray[np.int64]:
    """Where's coordinate rows as flat positions in the condition (sorted, as Where emits them)."""
    coordinates = np.asarray(indices, np.int64).reshape(-1, len(shape))
    return np.asarray(np.ravel_multi_index(tuple(coordinates.T), shape), np.int64) if shape else np.zeros(0, np.int64)


def _near_threshold(
    scores: NDArray[Any], threshold: NDArray[Any], shape: tuple[int, ...], tolerance: float
) -> NDArray[np.bool_]:
    """Per flat position of the condition: is the score within the tolerance of the scores' scale?"""
    values = np.asarray(scores, np.float64)
    margin = tolerance * max(float(np.max(np.abs(values))) if values.size else 0.0, 1e-6)
    distance = np.abs(values - np.asarray(threshold, np.float64))
    if distance.size != int(np.prod(shape)):
        return np.zeros(int(np.prod(shape)), bool)
    return np.asarray(distance <= margin).reshape(-1)

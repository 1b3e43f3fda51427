"""Conversion or runtime: a float32 artifact that departs from TensorFlow only where one op's kernel
computes differently is a correct conversion, and is said to be one.

Every check answers two questions apart. Is the graph convbot built faithful to the source (for a
TF.js model: the rebuilt graph run in TensorFlow against the model run in TF.js; for a frozen graph
it is the source itself)? And does the artifact's runtime compute what TensorFlow computes for that
graph? When the graph is faithful and a float32 artifact departs by at most RUNTIME_NOTE_LIMIT of
scale, first at one named node whose inputs agree, the difference is that op's kernel in the
artifact's runtime: every user of any converter would see it. The artifact passes with a runtime
note that names the op and gives the figure; beyond the limit, or without a named node, it fails.
"""

from __future__ import annotations

from dataclasses import replace

from converter.culprit import Departure
from converter.formats import Quantization, Target
from converter.result import FAILED, PASSED, ArtifactCheck

# Kernel differences seen between correct runtimes: TFLite's sigmoid 2.8e-3 of scale from TF.js on a
# pose model, summation order 1e-4 on deep models. An order of magnitude above the cross-runtime
# tolerance (1e-3) is still a numerical difference; beyond it an artifact is wrong, whatever the cause.
RUNTIME_NOTE_LIMIT = 1e-2

RUNTIME_NAMES = {Target.TFLITE: "the TFLite interpreter", Target.TFJS: "TF.js"}


def with_runtime_note(check: ArtifactCheck, departure: Departure | None, graph_faithful: bool) -> ArtifactCheck:
    """`check` (FAILED, explained) as a pass with a runtime note when the difference is one op's kernel."""
    runtime = RUNTIME_NAMES.get(check.target)
    worst = max((output.max_rel_error for output in check.outputs), default=float("inf"))
    if (
        check.status != FAILED
        or runtime is None
        or check.quantization is not Quantization.NONE
        or not graph_faithful
        or departure is None
        or departure.matched_before == 0  # nothing before it agreed: not one kernel's doing
        or not worst <= RUNTIME_NOTE_LIMIT
    ):
        return check
    note = (
        f"runtime note: {runtime}'s kernel for {departure.op} ({departure.node}) computes differently from "
        f"TensorFlow's: outputs up to {worst:.1e} of scale (tolerance {check.tolerance:g}); the conversion is "
        "faithful, any converter's file would do the same"
    )
    outputs = tuple(replace(output, passed=True, note=note) for output in check.outputs)
    return replace(check, status=PASSED, message=f"passed: {note}", outputs=outputs, advice="")

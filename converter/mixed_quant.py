"""When TF.js uint8 weights fail a model's check: the weights whose rounding contributes most, and the model made
again with those weights kept in float16 (`uint8-mixed`), more of them each time (the 1, 2, 4... worst) until it
passes its tolerance or no weight is left to exempt.

The ranking is the failure explanation's (`culprit.worst_weights`: rounding error over each weight's norm, on the
source graph), so it needs a graph source. Runs in the conversion process: it imports TensorFlow.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from converter.culprit import SourceGraph, worst_weights
from converter.formats import Quantization, Target
from converter.result import ERROR, PASSED, Artifact, ArtifactCheck
from converter.tfjs_export import manifest_weights
from converter.units import format_size

NAMES_SHOWN = 4  # in a sentence; the check's float_weights holds them all

# Writes the uint8-mixed TF.js model with these weights in float16 and returns it (raises ConversionError).
MakeMixed = Callable[[Sequence[str]], Artifact]
CheckArtifact = Callable[[Artifact], ArtifactCheck]


@dataclass(frozen=True)
class MixedOutcome:
    """The first uint8-mixed model that passes (None when none does), and what the failed uint8 check should add
    to its advice."""

    artifact: Artifact | None
    check: ArtifactCheck | None
    sentence: str


def exemption_counts(total: int) -> list[int]:
    """How many of the worst weights each attempt keeps in float: 1, 2, 4... and then all `total`."""
    counts, count = [], 1
    while count < total:
        counts.append(count)
        count *= 2
    return [*counts, total] if total else []


def weights_to_exempt(graph: SourceGraph, model_dir: Path) -> list[str]:
    """The weights the uint8 model stores quantized, the worst rounded first (ranked on the source graph)."""
    stored = quantized_weight_names(model_dir)
    ranked = worst_weights(graph.read(), Target.TFJS, Quantization.UINT8, limit=None)
    return [weight.name for weight in ranked if weight.name in stored]


def quantized_weight_names(model_dir: Path) -> set[str]:
    """The weights a TF.js model's manifest stores quantized."""
    return {str(weight["name"]) for weight in manifest_weights(model_dir) if "quantization" in weight}


def try_uint8_mixed(
    failed: Artifact, failed_check: ArtifactCheck, graph: SourceGraph, make: MakeMixed, check: CheckArtifact
) -> MixedOutcome:
    """Keep the worst-rounded weights of the failed uint8 model in float16, more each time, until it passes.
    Only a passing model is kept: an attempt that fails is deleted (the next one is written in its place)."""
    names = weights_to_exempt(graph, Path(failed.path))
    if not names:
        return MixedOutcome(None, None, "no weight it rounds is found by name in the TF.js model to keep in float16")
    verdict: ArtifactCheck | None = None
    for count in exemption_counts(len(names)):
        artifact = make(names[:count])
        verdict = replace(check(artifact), float_weights=tuple(names[:count]))
        if verdict.status == PASSED and count == len(names):  # every quantized weight in float16: float16's model
            _remove(Path(artifact.path))
            return MixedOutcome(None, None, _passes_only_as_float16(names))
        if verdict.status == PASSED:
            return MixedOutcome(artifact, verdict, _passes(names[:count], verdict, artifact, failed))
        _remove(Path(artifact.path))
        if verdict.status == ERROR:  # a model that does not run: more float weights will not mend it
            break
    assert verdict is not None  # names is not empty, so one attempt ran
    return MixedOutcome(None, None, _still_fails(names, verdict))


def _passes(kept: Sequence[str], verdict: ArtifactCheck, mixed: Artifact, failed: Artifact) -> str:
    """'the weights it rounds worst are w, v; uint8 with those 2 in float16 passes at 1.1e-03 of scale (96 KB
    against 95 KB): uint8-mixed'."""
    those = "that 1" if len(kept) == 1 else f"those {len(kept)}"
    return (
        f"the weights it rounds worst are {listed(kept)}; uint8 with {those} in float16 passes at "
        f"{worst_error(verdict):.1e} of scale ({format_size(mixed.size)} against {format_size(failed.size)}): "
        f"{Quantization.UINT8_MIXED.value}"
    )


def _passes_only_as_float16(names: Sequence[str]) -> str:
    every = "its only quantized weight" if len(names) == 1 else f"all {len(names)} of its quantized weights"
    return (
        f"the weights it rounds worst are {listed(names)}; it passes only with {every} in float16, which is the "
        "float16 model: use quant=float16"
    )


def _still_fails(names: Sequence[str], verdict: ArtifactCheck) -> str:
    kept = len(verdict.float_weights)
    if verdict.status == ERROR:
        return f"uint8 with {kept} of its weights in float16 does not run: {verdict.message}"
    every = "its only quantized weight" if len(names) == 1 else f"all {len(names)} of its quantized weights"
    return (
        f"no exemption helps: with {every} ({listed(names)}) in float16 it is still off by "
        f"{worst_error(verdict):.1e} of scale, over its {verdict.tolerance:g} tolerance"
    )


def listed(names: Sequence[str]) -> str:
    shown = ", ".join(names[:NAMES_SHOWN])
    return shown if len(names) <= NAMES_SHOWN else f"{shown} and {len(names) - NAMES_SHOWN} more"


def worst_error(check: ArtifactCheck) -> float:
    return max((output.max_rel_error for output in check.outputs), default=float("nan"))


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)

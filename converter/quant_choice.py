"""`--quant auto`: of the quantization variants converted and verified (see `quantization_variants`), keep per
target the smallest artifact that passes its tolerance, and say why it won. Plain data in and out; the only
side effect is `remove_unchosen`, which deletes the files that lost."""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from converter.formats import Quantization, Target
from converter.result import PASSED, ConversionResult
from converter.units import format_size

AUTO = "auto"  # the --quant word; not a Quantization: no artifact is "auto"


@dataclass(frozen=True)
class TriedVariant:
    """One artifact a quantization variant produced (or failed to produce), with its verdict."""

    target: Target
    quantization: Quantization
    status: str  # passed | failed | not run | error (no file then)
    size: int  # bytes; 0 when no file was kept
    max_rel_error: float | None  # of the worst output, relative to its scale; None when nothing was compared
    tolerance: float
    path: str  # "" when no file was kept
    message: str = ""  # the check's verdict in words (why it errored or was not run)

    @property
    def passed(self) -> bool:
        return self.status == PASSED

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "target": self.target.value, "quantization": self.quantization.value}


@dataclass(frozen=True)
class QuantChoice:
    """For one target: everything tried (smallest first), the artifact kept, and why."""

    target: Target
    tried: tuple[TriedVariant, ...]
    kept: TriedVariant | None  # None when no variant of this target produced a file
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target.value,
            "kept": self.kept.to_dict() if self.kept is not None else None,
            "reason": self.reason,
            "tried": [variant.to_dict() for variant in self.tried],
        }


def tried_variants(results: Iterable[ConversionResult]) -> list[TriedVariant]:
    """Every verified artifact of the variants' results, as one flat list."""
    tried = []
    for result in results:
        files = {(a.target, a.quantization): a for a in result.artifacts}
        for check in result.validation:
            artifact = files.get((check.target, check.quantization))
            errors = [output.max_rel_error for output in check.outputs]
            tried.append(
                TriedVariant(
                    target=check.target,
                    quantization=check.quantization,
                    status=check.status,
                    size=artifact.size if artifact is not None else 0,
                    max_rel_error=max(errors) if errors else None,
                    tolerance=check.tolerance,
                    path=artifact.path if artifact is not None else "",
                    message=check.message,
                )
            )
    return tried


def choose_smallest_passing(tried: Sequence[TriedVariant]) -> list[QuantChoice]:
    """Per target (in the order first tried): the smallest file that passes, ties going to the tighter
    tolerance (a quantization that shrank nothing is no reason to leave float32); when none passes, float32."""
    choices = []
    for target in dict.fromkeys(variant.target for variant in tried):
        mine = sorted((v for v in tried if v.target is target), key=lambda v: (v.path == "", v.size, v.tolerance))
        passing = [v for v in mine if v.passed]
        kept = passing[0] if passing else _float32(mine)
        choices.append(QuantChoice(target, tuple(mine), kept, _reason(target, kept, mine)))
    return choices


def _float32(tried: Sequence[TriedVariant]) -> TriedVariant | None:
    return next((v for v in tried if v.quantization is Quantization.NONE and v.path), None)


def _reason(target: Target, kept: TriedVariant | None, tried: Sequence[TriedVariant]) -> str:
    """'tfjs: uint16 (150.2 KB): the smallest that passes; uint8 (95.2 KB) is off by 3.6e-02 of scale, over its
    0.01 tolerance'."""
    if kept is None:
        return f"{target.value}: nothing kept: " + "; ".join(_why_lost(v) for v in tried)
    head = f"{target.value}: {_named(kept)}"
    if kept.passed and kept.quantization is not Quantization.NONE:
        head += ": the smallest that passes"
    elif kept.passed:
        head += ": no smaller variant passes, so float32 is kept"
    else:  # float32, kept as a plain conversion would keep it, with its verdict
        head += f": nothing passes, so float32 is kept ({_verdict(kept)})"
    lost = [v for v in tried if v is not kept and (not v.path or v.size <= kept.size)]
    return head + "".join(f"; {_why_lost(v)}" for v in lost)


def _named(variant: TriedVariant) -> str:
    return f"{variant.quantization.value} ({format_size(variant.size)})" if variant.path else variant.quantization.value


def _why_lost(variant: TriedVariant) -> str:
    if variant.passed:
        return f"{_named(variant)} is no smaller"
    return f"{_named(variant)} {_verdict(variant)}"


def _verdict(variant: TriedVariant) -> str:
    error = variant.max_rel_error
    if error is not None and error > variant.tolerance:
        return f"is off by {error:.1e} of scale, over its {variant.tolerance:g} tolerance"
    return f"{variant.status}: {variant.message}"


def remove_unchosen(choices: Iterable[QuantChoice]) -> list[str]:
    """Delete every tried file but the kept ones; returns the paths removed."""
    removed = []
    for choice in choices:
        for variant in choice.tried:
            if variant.path and variant is not choice.kept:
                path = Path(variant.path)
                if path.is_dir():
                    shutil.rmtree(path)
                else:
                    path.unlink(missing_ok=True)
                removed.append(variant.path)
    return removed

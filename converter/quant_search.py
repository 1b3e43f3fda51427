"""A job's quantization search (`quant=auto` or `quant=compare` in the bot): the variants of
`quantization_variants` converted one after another in this process (the source's reference outputs are
computed once, see conversion._SHARED_REFERENCE), the size-against-error chart drawn, and for `auto` only the
smallest passing file of each target kept, as the CLI's `--quant auto` keeps it (cli/main.py, which converts the
same variants in a child process)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from converter.archive import ArchiveLimits
from converter.conversion import ArtifactCallback, ProgressCallback, convert_variants_in_process
from converter.options import ConversionOptions, quantization_variants
from converter.quant_choice import AUTO, QuantChoice, choose_smallest_passing, remove_unchosen, tried_variants
from converter.quant_plot import write_size_error_plot
from converter.result import ConversionResult, sha256_file

COMPARE = "compare"
CHART_SUFFIX = "_quantization.png"


def convert_searching_quantization(
    model_path: Path,
    out_dir: Path,
    options: ConversionOptions,
    work_dir: Path,
    stem: str,
    limits: ArchiveLimits = ArchiveLimits(),
    progress: ProgressCallback | None = None,
    on_artifact: ArtifactCallback | None = None,
) -> ConversionResult:
    """Every quantization variant of `options` (whose `quant_search` says auto or compare), as one result.

    compare: every variant's file is kept and handed to `on_artifact` as it is verified. auto: the losers are
    deleted and nothing is handed on early (a user must never receive a loser as the file). Both write
    `<stem>_quantization.png`; `quant_search` of the result holds the choices, with their reasons, and the chart."""
    mode = options.quant_search
    early = on_artifact if mode == COMPARE else None
    named = quantization_variants(replace(options, quant_search=""))
    variants: list[tuple[ConversionOptions, str | None]] = [(variant, f"{stem}_{name}") for name, variant in named]
    results = convert_variants_in_process(model_path, out_dir, variants, work_dir, limits, progress, early)
    choices = choose_smallest_passing(tried_variants(results))
    if mode == AUTO:
        remove_unchosen(choices)
    chart = out_dir / f"{stem}{CHART_SUFFIX}"
    kept = [choice.kept for choice in choices if choice.kept is not None]
    tried = [variant for choice in choices for variant in choice.tried]
    write_size_error_plot(tried, chart, kept=kept, title=f"{stem}: size against error of each quantization")
    return _merged(results, choices, mode, chart)


def _merged(
    results: Sequence[ConversionResult], choices: Sequence[QuantChoice], mode: str, chart: Path
) -> ConversionResult:
    """The variants' results as one: auto keeps the kept files and their checks (and the checks of a target that
    kept nothing, which say why); compare keeps everything."""
    kept = {(choice.kept.target, choice.kept.quantization) for choice in choices if choice.kept is not None}
    empty = {choice.target for choice in choices if choice.kept is None}

    def wanted(target: Any, quantization: Any) -> bool:
        return mode == COMPARE or (target, quantization) in kept or target in empty

    return replace(
        results[0],
        artifacts=tuple(a for r in results for a in r.artifacts if wanted(a.target, a.quantization)),
        validation=tuple(c for r in results for c in r.validation if wanted(c.target, c.quantization)),
        timings=_summed(result.timings for result in results),
        warnings=tuple(dict.fromkeys(warning for result in results for warning in result.warnings)),
        needs_flex_delegate=any(result.needs_flex_delegate for result in results),
        log="\n".join(result.log for result in results if result.log),
        quant_search={
            "mode": mode,
            "choices": [choice.to_dict() for choice in choices],
            "chart": {"path": str(chart), "size": chart.stat().st_size, "sha256": sha256_file(chart)},
        },
    )


def _summed(timings: Iterable[dict[str, float]]) -> dict[str, float]:
    """Each stage's seconds over all variants (loading, validate... ran once per variant)."""
    total: dict[str, float] = {}
    for one in timings:
        for stage, seconds in one.items():
            total[stage] = total.get(stage, 0.0) + seconds
    return total

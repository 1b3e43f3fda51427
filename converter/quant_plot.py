"""The size-against-error picture of quantization variants, drawn off screen: the CLI's `--plot FILE.png` and a
job's `<stem>_quantization.png` (here, where the workers may import it)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from pathlib import Path

from converter.quant_choice import TriedVariant

# An error of exactly 0 (a variant that rounds nothing this model uses) has no place on a log axis: drawn here.
ZERO_DRAWN_AT = 1e-9
FIGURE_INCHES, DPI = (10, 5), 100  # 1000 x 500 pixels, whatever is drawn
MARKERS = {"tflite": "o", "tfjs": "s", "tfjs-layers": "D", "pb": "^", "savedmodel": "v"}


def write_size_error_plot(
    tried: Sequence[TriedVariant], path: Path, *, kept: Collection[TriedVariant] = (), title: str = ""
) -> None:
    """A PNG: size (KB) against the largest error relative to the output's scale (log), one marker per target and
    variant, each tolerance a dashed line, the kept artifacts circled. Variants without a file are left out."""
    import matplotlib

    matplotlib.use("Agg")  # before pyplot: no display, none wanted (a server, a worker, a test)
    import matplotlib.pyplot as plt

    drawn = [v for v in tried if v.path and v.max_rel_error is not None]
    figure, axes = plt.subplots(figsize=FIGURE_INCHES, dpi=DPI)
    try:
        colours = plt.get_cmap("tab10")
        quantizations = list(dict.fromkeys(v.quantization.value for v in drawn))
        for variant in drawn:
            axes.scatter(
                variant.size / 1024,
                _drawn_error(variant),
                marker=MARKERS.get(variant.target.value, "o"),
                color=colours(quantizations.index(variant.quantization.value)),
                s=70,
                label=f"{variant.target.value} {variant.quantization.value} ({variant.status})",
                zorder=3,
            )
        for tolerance, names in _tolerances(drawn).items():
            axes.axhline(tolerance, color="grey", linestyle="--", linewidth=1, zorder=1)
            axes.annotate(
                f"tolerance {tolerance:g}: {names}",
                (0.01, tolerance),
                xycoords=("axes fraction", "data"),
                va="bottom",
                fontsize=8,
                color="dimgrey",
            )
        circled = [v for v in kept if v in drawn]
        if circled:
            axes.scatter(
                [v.size / 1024 for v in circled],
                [_drawn_error(v) for v in circled],
                s=320,
                facecolors="none",
                edgecolors="black",
                linewidths=2,
                label="kept (the smallest that passes)",
                zorder=4,
            )
        axes.set_yscale("log")
        axes.set_xlabel("size (KB)")
        axes.set_ylabel("largest error, relative to the output's scale")
        if any(v.max_rel_error == 0 for v in drawn):
            axes.set_ylabel(axes.get_ylabel() + f" (0 drawn at {ZERO_DRAWN_AT:g})")
        axes.set_title(title or "quantization: size against error")
        axes.grid(True, which="major", alpha=0.3)
        axes.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
        figure.subplots_adjust(left=0.09, right=0.7, bottom=0.11, top=0.92)  # the legend sits on the right
        figure.savefig(path, format="png")
    finally:
        plt.close(figure)


def _drawn_error(variant: TriedVariant) -> float:
    return max(variant.max_rel_error or 0.0, ZERO_DRAWN_AT)


def _tolerances(drawn: Sequence[TriedVariant]) -> dict[float, str]:
    """Each tolerance and the variants it applies to ('0.01: float16, uint16'): tolerances are per variant."""
    names: dict[float, list[str]] = {}
    for variant in drawn:
        names.setdefault(variant.tolerance, [])
        if variant.quantization.value not in names[variant.tolerance]:
            names[variant.tolerance].append(variant.quantization.value)
    return {tolerance: ", ".join(values) for tolerance, values in names.items()}

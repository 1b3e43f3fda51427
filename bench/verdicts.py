"""The verdict convbot gives on real models and test-built detectors, to TFLite and TF.js, in one warm process.

Run: .venv/bin/python -m bench.verdicts [--models tests/data] [--only emotion,centernet]
Converts every TF.js model in `--models` (folders named tfjs_*, shapes from bench/tfjs_model_shapes.py), and a
CenterNet-style TopK detector and an SSD-style NMS detector (bench/model_factory.py) both as frozen graphs and as
the TF.js models convbot makes of them, to tflite,tfjs. Prints per artifact: the verdict, the worst output's error
relative to its scale and the tolerance, and what the check said in words (ties, a runtime note, a culprit), then,
for TF.js sources, whether the graph convbot rebuilt is faithful. A false FAILED or an artifact that does not run
is what this is for finding.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from bench import model_factory
from bench.tfjs_model_shapes import SHAPES
from cli.render import table
from converter.conversion import convert_in_process
from converter.formats import Target
from converter.options import ConversionOptions, parse_shape
from converter.result import ConversionResult

ROOT = Path(__file__).resolve().parents[1]
DETECTOR_OUTPUTS = {
    "centernet": ("detections",),
    "ssd": ("detection_boxes", "detection_scores", "num_detections"),
}


def sources(models: Path, only: set[str], scratch: Path) -> Iterator[tuple[str, str, Path, ConversionOptions]]:
    """(model, kind, path, options) for every model to convert."""
    for folder in sorted(models.glob("tfjs_*")):
        name = folder.name.removeprefix("tfjs_")
        if not only or name in only:
            shapes = tuple(parse_shape(text) for text in SHAPES.get(name, ()))
            yield name, "tfjs", folder, ConversionOptions(shapes=shapes)
    for name, outputs in DETECTOR_OUTPUTS.items():
        if only and name not in only:
            continue
        writer = model_factory.write_centernet if name == "centernet" else model_factory.write_ssd
        graph = writer(scratch / f"{name}.pb")
        yield name, "frozen graph", graph, ConversionOptions(outputs=outputs)
        # The TF.js model a user of the detector would have: convbot's own conversion of it.
        made = convert_in_process(
            graph,
            scratch / f"{name}_made",
            ConversionOptions(targets=(Target.TFJS,), outputs=outputs),
            scratch / f"{name}_work",
        )
        yield name, "tfjs", Path(made.artifacts[0].path), ConversionOptions(outputs=outputs)


def rows(model: str, kind: str, result: ConversionResult, seconds: float) -> list[list[str]]:
    out = []
    for check in result.validation:
        worst = max(check.outputs, key=lambda o: o.max_rel_error, default=None)
        words = check.message if check.message not in ("ok",) else ""
        if check.engine:  # which TF.js backend ran the artifact
            words = f"[{check.engine}] {words}".strip()
        if check.culprit:
            words = f"{words}; {check.culprit}"
        out.append(
            [
                model,
                kind,
                check.target.value,
                check.status,
                worst.name if worst else "",
                f"{worst.max_rel_error:.1e}" if worst else "",
                f"{check.tolerance:g}",
                f"{seconds:.1f}",
                words[:140],
            ]
        )
    if result.graph_check:
        worst = max(result.graph_check, key=lambda o: o.max_rel_error)
        verdict = "faithful" if all(o.passed for o in result.graph_check) else "NOT FAITHFUL"
        out.append(
            [
                model,
                kind,
                "graph",
                verdict,
                worst.name,
                f"{worst.max_rel_error:.1e}",
                "0.001",
                "",
                "rebuilt graph in TF vs TF.js",
            ]
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=ROOT / "tests" / "data")
    parser.add_argument("--only", default="", help="comma-separated model names")
    args = parser.parse_args()
    only = {name for name in args.only.split(",") if name}
    table_rows: list[list[str]] = []
    with tempfile.TemporaryDirectory(prefix="convbot-verdicts-") as scratch_name:
        scratch = Path(scratch_name)
        convert_in_process(  # TensorFlow, tensorflowjs and Node.js loaded before anything is timed
            model_factory.write_einsum_diagonal_graph(scratch / "warm.pb").path,
            scratch / "warm",
            ConversionOptions(),
            scratch / "warm_work",
        )
        for number, (model, kind, path, options) in enumerate(sources(args.models, only, scratch)):
            started = time.perf_counter()
            result = convert_in_process(path, scratch / f"out{number}", options, scratch / f"work{number}")
            table_rows += rows(model, kind, result, time.perf_counter() - started)
            print(f"{model} ({kind}) done", flush=True)
    headers = ["model", "source", "target", "verdict", "worst output", "rel to scale", "tolerance", "seconds", "words"]
    print(table(headers, table_rows))


if __name__ == "__main__":
    main()

"""How long one TF.js run takes per verification, three ways, on every TF.js model in a folder.

Side by side in one run, per model: today's one-shot path (a fresh Node.js per run, CPU backend),
the warm runner on the CPU backend and the warm runner on the WASM backend: the median time of a
run once warm (over --runs runs), the first run of a fresh process (Node.js start-up, TF.js
import, model parse and run), and how far WASM's outputs are from CPU's (max |wasm - cpu| over
the output's max |cpu|, over both of verification's input sets: seeded random values and ones).
Also checks that the "auto" backend the verifier uses runs each model on WASM.

Run: .venv/bin/python -m bench.tfjs_backends [--models tests/data] [--only rvm,emotion] [--runs 7]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from bench.tfjs_model_shapes import SHAPES
from cli.render import table
from converter.inspection import inspect
from converter.options import parse_shape
from converter.tfjs_runtime import NODE_DIR, RUNNER, TfjsRun, TfjsRunError, TfjsRunner, run_tfjs_model
from converter.verify import make_inputs

ROOT = Path(__file__).resolve().parents[1]
Arrays = dict[str, Any]


class OneShotRunner(TfjsRunner):
    """Today's path before the warm runner: a fresh Node.js for every run."""

    def request(self, node: str, request: Mapping[str, Any], timeout: float) -> tuple[dict[str, Any], str]:
        done = subprocess.run(
            [node, str(RUNNER)], input=json.dumps(request), capture_output=True, text=True, cwd=NODE_DIR, check=True
        )
        return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


def model_inputs(folder: Path) -> list[Arrays]:
    """Verification's input sets for the model: unknown batch 1, other sizes from SHAPES."""
    given = dict(parse_shape(text) for text in SHAPES.get(_name(folder), ()))
    specs = inspect(folder / "model.json").suggested_inputs
    shapes = {}
    for spec in specs:
        dims = given.get(spec.name, spec.shape)
        assert dims is not None, f"{folder.name}: give the shape of {spec.name} in bench/tfjs_model_shapes.py"
        shapes[spec.name] = tuple(1 if d is None or d < 0 else d for d in dims)
    return make_inputs(specs, shapes)


def _name(folder: Path) -> str:
    return folder.name.removeprefix("tfjs_")


def timed(run: Callable[[], TfjsRun], runs: int) -> tuple[float, float, TfjsRun]:
    """First-run ms, median ms of the next `runs` runs, and the last run."""
    started = time.perf_counter()
    result = run()
    first = (time.perf_counter() - started) * 1000
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        result = run()
        times.append((time.perf_counter() - started) * 1000)
    return first, statistics.median(times), result


def relative_difference(got: Mapping[str, Any], want: Mapping[str, Any]) -> float:
    worst = 0.0
    for name, expected in want.items():
        expected64 = np.asarray(expected, np.float64)
        diff = np.abs(np.asarray(got[name], np.float64) - expected64)
        scale = max(float(np.max(np.abs(expected64))) if expected64.size else 0.0, 1e-6)
        worst = max(worst, float(np.max(diff)) / scale if diff.size else 0.0)
    return worst


def bench_model(folder: Path, runs: int) -> list[str]:
    input_sets = model_inputs(folder)

    def run(backend: str, runner: TfjsRunner, inputs: Arrays) -> TfjsRun:
        return run_tfjs_model(folder, inputs, backend=backend, runner=runner)

    one_shot = OneShotRunner()
    cells = [_name(folder)]
    # The one-shot path costs seconds per run on the big models: a few runs say enough.
    first, median, _ = timed(lambda: run("cpu", one_shot, input_sets[0]), max(2, runs // 3))
    cells += [f"{median:.0f}", f"{first:.0f}"]
    outputs: dict[str, list[Arrays]] = {}
    for backend in ("cpu", "wasm"):
        warm = TfjsRunner()
        try:
            first, median, _ = timed(lambda: run(backend, warm, input_sets[0]), runs)  # noqa: B023 (called at once)
            outputs[backend] = [run(backend, warm, inputs).outputs for inputs in input_sets]
            cells += [f"{median:.0f}", f"{first:.0f}"]
        except TfjsRunError as error:
            cells += [f"fails: {error}"[:40], ""]
        finally:
            warm.close()
    if len(outputs) == 2:
        worst = max(relative_difference(w, c) for w, c in zip(outputs["wasm"], outputs["cpu"], strict=True))
        cells.append(f"{worst:.1e}")
    else:
        cells.append("")
    verifier = TfjsRunner()
    auto = run("auto", verifier, input_sets[0])
    verifier.close()
    cells.append(auto.backend + (f" ({auto.fallback})" if auto.fallback else ""))
    return cells


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", type=Path, default=ROOT / "tests" / "data", help="a folder of TF.js model folders")
    parser.add_argument("--only", default="", help="comma-separated model names")
    parser.add_argument("--runs", type=int, default=7, help="runs per median (the one-shot path: a third)")
    args = parser.parse_args()
    only = {n for n in args.only.split(",") if n}
    folders = [f for f in sorted(p.parent for p in args.models.glob("*/model.json")) if not only or _name(f) in only]
    headers = [
        "model",
        "one-shot cpu ms",
        "first",
        "warm cpu ms",
        "first",
        "warm wasm ms",
        "first",
        "max|wasm-cpu|/scale",
        "auto runs on",
    ]
    rows = [bench_model(folder, args.runs) for folder in folders]
    print(f"TF.js runs per model: median of {args.runs} warm runs (one-shot: {max(2, args.runs // 3)}), ms;")
    print("'first': the first run of a fresh process (Node.js start, TF.js import, model parse, run)")
    print(table(headers, rows))


if __name__ == "__main__":
    main()

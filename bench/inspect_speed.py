"""How long `convbot inspect` takes on a ~100 MB, ~25,000-node frozen graph.

Prints, side by side in one run: the in-process `converter.inspect` time (median of several
runs), a cold `convbot inspect --json` command including Python start-up and imports, and
for scale a bare `GraphDef.ParseFromString` of the same bytes. Checks that TensorFlow was not
imported. Run: .venv/bin/python bench/inspect_speed.py
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.make_big_graph import make_big_graph
from converter.inspection import inspect
from converter.protos import GraphDef

RUNS = 7


def _median_seconds(work: object, runs: int = RUNS) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        work()  # type: ignore[operator]
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.pb"
        data = make_big_graph().SerializeToString()
        path.write_bytes(data)
        summary = inspect(path)
        parse = _median_seconds(lambda: GraphDef().ParseFromString(path.read_bytes()))
        in_process = _median_seconds(lambda: inspect(path))

        def cli(*flags: str) -> float:
            command = [sys.executable, "-m", "cli.main", "inspect", str(path), *flags]
            return _median_seconds(lambda: subprocess.run(command, check=True, stdout=subprocess.DEVNULL), runs=3)

        cli_table, cli_json = cli(), cli("--json")
        print(f"graph: {len(data) / 1e6:.1f} MB, {summary.node_count} nodes")
        print(f"bare ParseFromString (median of {RUNS}):     {parse:.3f} s")
        print(f"converter.inspect in process (median of {RUNS}): {in_process:.3f} s  ({in_process / parse:.1f}x parse)")
        print(f"cold `convbot inspect` (median of 3):        {cli_table:.3f} s  (Python start-up and imports included)")
        print(f"cold `convbot inspect --json` (median of 3): {cli_json:.3f} s  (every node as JSON)")
        print(f"suggested outputs: {[s.name for s in summary.suggested_outputs]}")
        print(f"tensorflow imported: {'tensorflow' in sys.modules}")


if __name__ == "__main__":
    main()

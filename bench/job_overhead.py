"""One job through the job service (submit to artifacts on disk, warm worker) against a bare
in-process `convert_in_process` of the same model, run alternately in one process.

Run: .venv/bin/python -m bench.job_overhead [--rounds 7]. Goal: service / bare <= 1.25.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from bench.jobs_common import MODEL, upload_for, warm_service
from converter.conversion import convert_in_process
from converter.options import ConversionOptions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    options = ConversionOptions()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        service = warm_service(root / "data", workers=1)
        user, model = upload_for(service, 1)
        convert_in_process(MODEL, root / "warm", options, root / "warm-work")  # warm this process too
        through_service, bare = [], []
        try:
            for index in range(args.rounds):
                started = time.perf_counter()
                view = service.wait(service.submit(user, model, options), timeout=600)
                through_service.append(time.perf_counter() - started)
                assert view.status == "succeeded", view.error_message
                started = time.perf_counter()
                convert_in_process(MODEL, root / f"bare{index}", options, root / f"bare-work{index}")
                bare.append(time.perf_counter() - started)
        finally:
            service.stop()
    service_median, bare_median = statistics.median(through_service), statistics.median(bare)
    print(f"model: {MODEL.name}, targets tflite+tfjs with verification, {args.rounds} rounds, alternating")
    print(f"job service, warm worker (median): {service_median:.2f} s   all: {_list(through_service)}")
    print(f"bare convert_in_process (median):  {bare_median:.2f} s   all: {_list(bare)}")
    print(f"ratio service / bare: {service_median / bare_median:.2f}x (goal <= 1.25x)")


def _list(values: list[float]) -> str:
    return " ".join(f"{v:.2f}" for v in values)


if __name__ == "__main__":
    main()

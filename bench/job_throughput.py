"""Throughput of the job service: 20 queued jobs from 5 users, on 1 and on 2 warm workers.

Prints jobs per minute and the longest any job waited in the queue, per user.
Run: .venv/bin/python -m bench.job_throughput
"""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path

from bench.jobs_common import upload_for, warm_service
from converter.formats import Target
from converter.options import ConversionOptions
from jobs.service import JobEvent

USERS, JOBS_PER_USER = 5, 4


def run(workers: int, root: Path) -> tuple[float, float, dict[int, float]]:
    service = warm_service(root / f"data{workers}", workers)
    submitted: dict[int, float] = {}
    started: dict[int, float] = {}
    finished = threading.Semaphore(0)

    def record(event: JobEvent) -> None:
        if event.kind == "stage" and event.stage == "loading":
            started.setdefault(event.job_id, time.perf_counter())
        elif event.kind in ("succeeded", "failed"):
            finished.release()

    service.subscribe(record)
    uploads = [upload_for(service, 100 + n) for n in range(USERS)]
    owner: dict[int, int] = {}
    began = time.perf_counter()
    try:
        for _ in range(JOBS_PER_USER):
            for user, model in uploads:  # users interleave, as chats do
                job_id = service.submit(user, model, ConversionOptions(targets=(Target.TFLITE,)))
                submitted[job_id], owner[job_id] = time.perf_counter(), user
        for _ in submitted:
            finished.acquire(timeout=600)
        elapsed = time.perf_counter() - began
    finally:
        service.stop()
    waits: dict[int, float] = {}
    for job_id, moment in submitted.items():
        waits[owner[job_id]] = max(waits.get(owner[job_id], 0.0), started[job_id] - moment)
    return len(submitted) / elapsed * 60, elapsed, waits


def main() -> None:
    print(f"{USERS * JOBS_PER_USER} jobs (TFLite + verification of fer_emotion_model.hdf5) from {USERS} users")
    with tempfile.TemporaryDirectory() as tmp:
        for workers in (1, 2):
            per_minute, elapsed, waits = run(workers, Path(tmp))
            longest = max(waits.values())
            print(
                f"{workers} worker(s): {per_minute:.1f} jobs/min ({elapsed:.1f} s); longest queue wait "
                f"{longest:.1f} s; per user: " + ", ".join(f"{w:.1f}" for w in waits.values())
            )


if __name__ == "__main__":
    main()

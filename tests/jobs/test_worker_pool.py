"""The warm worker pool on its own: a failed job keeps the class of the converter's error, so a caller
can tell the user's fault (bad options) from the converter's."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from converter import BadOptionsError, ConversionOptions, Target
from jobs.backend import BackendEvent, LocalWorkerPool

WAIT = 240.0  # a fresh worker imports TensorFlow first


def _run_one_job(pool: LocalWorkerPool, job_id: int, kwargs: dict[str, Any]) -> BackendEvent:
    """Start the job once a worker is ready; its done or failed event."""
    deadline, started = time.monotonic() + WAIT, False
    while time.monotonic() < deadline:
        if not started and pool.free_slots():
            pool.start_job(job_id, kwargs)
            started = True
        for event in pool.poll(1.0):
            if event.job_id == job_id and event.kind in ("done", "failed"):
                return event
    raise AssertionError(f"job {job_id} did not end in {WAIT:g} s (started: {started})")


def test_a_failed_job_keeps_the_class_of_its_error(multihead_graph: Any, tmp_path: Path) -> None:
    pool = LocalWorkerPool(size=1, log_path=tmp_path / "workers.log", timeout_seconds=120, memory_mb=4000)
    pool.start()
    try:
        options = ConversionOptions(targets=(Target.TFLITE,), outputs=("no_such_node",))
        paths = {"model_path": multihead_graph.path, "out_dir": tmp_path / "out", "work_dir": tmp_path / "work"}
        event = _run_one_job(pool, 1, {**paths, "options": options})
    finally:
        pool.stop()
    assert event.kind == "failed"
    assert isinstance(event.error, BadOptionsError)
    assert event.message == event.error.message and "no_such_node" in event.message

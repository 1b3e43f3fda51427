"""The warm worker pool on its own: a failed job keeps the class of the converter's error, so a caller
can tell the user's fault (bad options) from the converter's."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from converter import BadOptionsError, ConversionOptions, Target
from jobs.backend import BackendEvent, LocalWorkerPool
from jobs.job_conversion import JobArguments
from jobs.settings import load_settings
from jobs.storage import FolderStorage

WAIT = 240.0  # a fresh worker imports TensorFlow first


def _run_one_job(pool: LocalWorkerPool, arguments: JobArguments) -> BackendEvent:
    """Start the job once a worker is ready; its done or failed event."""
    deadline, started = time.monotonic() + WAIT, False
    while time.monotonic() < deadline:
        if not started and pool.free_slots():
            pool.start_job(arguments)
            started = True
        for event in pool.poll(1.0):
            if event.job_id == arguments.job_id and event.kind in ("done", "failed"):
                return event
    raise AssertionError(f"job {arguments.job_id} did not end in {WAIT:g} s (started: {started})")


def test_a_failed_job_keeps_the_class_of_its_error(multihead_graph: Any, tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path / "data", workers=1, job_timeout_seconds=120, job_memory_mb=4000)
    model_key = FolderStorage(settings.data_dir).put_upload(multihead_graph.path, "pose.pb")
    pool = LocalWorkerPool(settings)
    pool.start()
    try:
        options = ConversionOptions(targets=(Target.TFLITE,), outputs=("no_such_node",))
        event = _run_one_job(pool, JobArguments(1, model_key, "pose.pb", options))
    finally:
        pool.stop()
    assert event.kind == "failed"
    assert isinstance(event.error, BadOptionsError)
    assert event.message == event.error.message and "no_such_node" in event.message

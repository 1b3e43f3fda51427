"""A warm worker process: imports TensorFlow once, then converts job after job.

TensorFlow's import takes longer than converting a typical model, so workers live between jobs.
"""

from __future__ import annotations

import ctypes
import os
import signal
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

from converter.child_process import encode_error, freeze_imported_objects, prepare_child
from jobs.settings import Settings
from jobs.storage import storage_from_settings

if TYPE_CHECKING:
    from jobs.job_conversion import JobArguments

PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Ask Linux to kill this worker when its parent dies: a killed bot must not leave a worker
    converting (or hung) with nobody to report to. Elsewhere the closed pipe ends it after its job."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


def worker_main(conn: Connection, log_path: str, settings: Settings) -> None:
    """Serve ("job", JobArguments) requests on `conn` until ("stop",) or the pipe closes.

    Answers ("progress", job_id, stage), ("artifact", job_id, artifact, check), ("done", job_id, result)
    or ("failed", job_id, encoded error: see converter.child_process.encode_error)."""
    die_with_parent()
    prepare_child(log_path)
    # After prepare_child, as in converter.isolation's child: the converter loads with TensorFlow's environment set
    # and its stderr in the log.
    from converter.conversion import tool_versions
    from jobs.job_conversion import run_job

    tool_versions()  # imports TensorFlow, Keras and tensorflowjs now, not in the first job
    freeze_imported_objects()
    storage = storage_from_settings(settings)  # made here: an S3 client must not cross a process boundary
    conn.send(("ready", os.getpid()))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message[0] != "job":
            return
        arguments: JobArguments = message[1]
        job_id = arguments.job_id

        def progress(stage: str, job_id: int = job_id) -> None:
            conn.send(("progress", job_id, stage))

        def artifact_ready(artifact: Any, check: Any, job_id: int = job_id) -> None:
            conn.send(("artifact", job_id, artifact, check))  # sent to the user before the next target

        try:
            result: Any = run_job(arguments, storage, settings.tmp_dir, progress, artifact_ready)
            conn.send(("done", job_id, result))
        except Exception as error:  # fails the job; an unexpected error with its traceback for the record
            conn.send(("failed", job_id, encode_error(error)))

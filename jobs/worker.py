"""A warm worker process: imports TensorFlow once, then converts job after job.

TensorFlow's import takes longer than converting a typical model, so workers live between jobs.
"""

from __future__ import annotations

import ctypes
import os
import signal
from multiprocessing.connection import Connection
from typing import Any

from converter.child_process import encode_error, prepare_child, run_test_hook

PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Ask Linux to kill this worker when its parent dies: a killed bot must not leave a worker
    converting (or hung) with nobody to report to. Elsewhere the closed pipe ends it after its job."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


def worker_main(conn: Connection, log_path: str) -> None:
    """Serve ("job", job_id, kwargs) requests on `conn` until ("stop",) or the pipe closes.

    Answers ("progress", job_id, stage), ("artifact", job_id, artifact, check), ("done", job_id, result)
    or ("failed", job_id, encoded error: see converter.child_process.encode_error)."""
    die_with_parent()
    prepare_child(log_path)
    # After prepare_child, as in converter.isolation's child: the converter loads with TensorFlow's environment set
    # and its stderr in the log.
    from converter.conversion import convert_in_process, tool_versions

    tool_versions()  # imports TensorFlow, Keras and tensorflowjs now, not in the first job
    conn.send(("ready", os.getpid()))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message[0] != "job":
            return
        _, job_id, kwargs = message

        def progress(stage: str, job_id: int = job_id) -> None:
            conn.send(("progress", job_id, stage))

        def artifact_ready(artifact: Any, check: Any, job_id: int = job_id) -> None:
            conn.send(("artifact", job_id, artifact, check))  # sent to the user before the next target

        try:
            run_test_hook(kwargs["model_path"])
            result: Any = convert_in_process(**kwargs, progress=progress, on_artifact=artifact_ready)
            conn.send(("done", job_id, result))
        except Exception as error:  # fails the job; an unexpected error with its traceback for the record
            conn.send(("failed", job_id, encode_error(error)))

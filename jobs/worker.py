"""A warm worker process: imports TensorFlow once, then converts job after job.

TensorFlow's import takes longer than converting a typical model, so workers live between jobs.
"""

from __future__ import annotations

import ctypes
import os
import signal
import traceback
from multiprocessing.connection import Connection
from typing import Any

from converter.machine_independence import use_machine_independent_tensorflow

PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Ask Linux to kill this worker when its parent dies: a killed bot must not leave a worker
    converting (or hung) with nobody to report to. Elsewhere the closed pipe ends it after its job."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


def worker_main(conn: Connection, log_path: str) -> None:
    """Serve ("job", job_id, kwargs) requests on `conn` until ("stop",) or the pipe closes."""
    _die_with_parent()
    # TensorFlow's C++ logs go to file descriptor 2; keep them out of the parent's terminal.
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(log_fd, 2)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("TFDF_DISABLE_WELCOME_MESSAGE", "1")
    use_machine_independent_tensorflow()
    from converter.conversion import convert_in_process, tool_versions
    from converter.errors import ConvbotError
    from converter.isolation import run_test_hook

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
        except ConvbotError as error:
            conn.send(("failed", job_id, error.message, error.log))
        except Exception as error:  # anything else fails the job, with its traceback for the record
            conn.send(("failed", job_id, f"conversion failed: {error}", traceback.format_exc()))

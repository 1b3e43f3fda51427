"""What every process that runs converter work shares: how it is spawned and set up, how its errors
cross the pipe, and how its death or timeout is told. Used by the CLI's isolated convert
(converter.isolation) and the job service's warm workers (jobs.worker, jobs.backend)."""

from __future__ import annotations

import gc
import multiprocessing
import os
import signal
import time
import traceback
from pathlib import Path

from converter import errors
from converter.errors import ConvbotError
from converter.machine_independence import use_machine_independent_tensorflow

# Spawn, not fork: a forked child of a process that has loaded TensorFlow can deadlock.
CONTEXT = multiprocessing.get_context("spawn")

# (error class name, message, log): how a child sends a failure through its pipe.
EncodedError = tuple[str, str, str]


def prepare_child(log_path: str) -> None:
    """The first thing a child does, before TensorFlow is imported."""
    # TensorFlow's C++ logs go to file descriptor 2; keep them in the log, out of the parent's terminal.
    # Appended: the warm workers share one log file.
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(log_fd, 2)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("TFDF_DISABLE_WELCOME_MESSAGE", "1")
    use_machine_independent_tensorflow()


def freeze_imported_objects() -> None:
    """Call in a warm conversion process once TensorFlow, Keras and tensorflowjs are imported. Their import
    leaves millions of objects that live as long as the process, and every full garbage collection walked them
    all; frozen, collections see only what a job makes. Measured (bench.distributed_overhead, the FER model):
    the TFLite conversion stage 1.28 s -> 0.94 s a job, in the local pool and on Celery workers alike."""
    gc.freeze()


def encode_error(error: Exception) -> EncodedError:
    """`error` as plain strings for the pipe; call it in the `except` block (an unexpected error
    sends its traceback as its log)."""
    if isinstance(error, ConvbotError):
        return type(error).__name__, error.message, error.log
    return "ConversionError", f"conversion failed: {error}", traceback.format_exc()


def decode_error(encoded: EncodedError, extra_log: str = "") -> ConvbotError:
    """The error a child sent, as its own ConvbotError class (ConversionError for a name that is not
    one), with `extra_log` (the child's stderr) after its log."""
    name, message, log = encoded
    found = getattr(errors, name, None)
    error_class = found if isinstance(found, type) and issubclass(found, ConvbotError) else errors.ConversionError
    return error_class(message, f"{log}\n{extra_log}".strip())


def how_it_died(exitcode: int | None) -> str:
    """'crashed (SIGABRT)', 'was killed (out of memory?)', ... for a child's exit code."""
    if exitcode is not None and exitcode < 0:
        name = signal.Signals(-exitcode).name
        return "was killed (out of memory?)" if name == "SIGKILL" else f"crashed ({name})"
    return f"exited unexpectedly (code {exitcode})"


def exit_cause(exitcode: int | None) -> str:
    """'SIGABRT' for a process a signal ended, 'exit code 3' for one that exited."""
    if exitcode is not None and exitcode < 0:
        return signal.Signals(-exitcode).name
    return f"exit code {exitcode}"


def timeout_message(seconds: float) -> str:
    return f"the conversion took longer than {seconds:g} s and was stopped"


def run_test_hook(model_path: Path) -> None:
    """Let tests make a conversion die the ways TensorFlow can: abort, hang, be killed, eat memory.

    CONVBOT_TEST_HOOK is an action ('abort', 'hang', 'kill', 'memory', 'slow': wait 10 s, then convert), optionally
    '@text' to act only on models whose path contains that text. Unset in production: does nothing.
    """
    hook = os.environ.get("CONVBOT_TEST_HOOK", "")
    action, _, only = hook.partition("@")
    if not action or (only and only not in str(model_path)):
        return
    if action == "abort":
        os.abort()
    elif action == "hang":
        time.sleep(3600)
    elif action == "slow":
        time.sleep(10)
    elif action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif action == "memory":
        hog = bytearray(64 * 1024 * 1024)
        hogs: list[bytes] = []
        while True:  # touch real pages until something stops us
            hogs.append(bytes(hog) + bytes([len(hogs) % 256]))
            time.sleep(0.01)

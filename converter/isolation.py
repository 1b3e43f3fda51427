"""Run one conversion in a child process, so that a crash, an abort or a memory blow-up inside
TensorFlow fails that conversion only, and a timeout can kill it."""

from __future__ import annotations

import multiprocessing
import os
import signal
import tempfile
import time
import traceback
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from converter.archive import ArchiveLimits
from converter.errors import ConvbotError, ConversionTimeout, ConverterCrash
from converter.machine_independence import use_machine_independent_tensorflow
from converter.options import DEFAULT_TIMEOUT_SECONDS, ConversionOptions
from converter.result import ConversionResult

# Spawn, not fork: a forked child of a process that has loaded TensorFlow can deadlock.
_CONTEXT = multiprocessing.get_context("spawn")


def _child(conn: Connection, log_path: str, jobs: list[tuple[Any, ...]]) -> None:
    # TensorFlow's C++ logs go to file descriptor 2; keep them for the result's log.
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(log_fd, 2)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    use_machine_independent_tensorflow()
    from converter.conversion import convert_in_process

    try:
        results = []
        for args in jobs:
            run_test_hook(args[0])
            results.append(convert_in_process(*args))
        conn.send(("ok", results))
    except ConvbotError as error:
        conn.send(("error", type(error).__name__, error.message, error.log))
    except Exception as error:
        conn.send(("error", "ConversionError", f"conversion failed: {error}", traceback.format_exc()))
    finally:
        conn.close()


def run_test_hook(model_path: Path) -> None:
    """Let tests make a conversion die the ways TensorFlow can: abort, hang, be killed, eat memory.

    CONVBOT_TEST_HOOK is an action ('abort', 'hang', 'kill', 'memory'), optionally '@text' to
    act only on models whose path contains that text. Unset in production: does nothing.
    """
    hook = os.environ.get("CONVBOT_TEST_HOOK", "")
    action, _, only = hook.partition("@")
    if not action or (only and only not in str(model_path)):
        return
    if action == "abort":
        os.abort()
    elif action == "hang":
        time.sleep(3600)
    elif action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif action == "memory":
        hog = bytearray(64 * 1024 * 1024)
        hogs: list[bytes] = []
        while True:  # touch real pages until something stops us
            hogs.append(bytes(hog) + bytes([len(hogs) % 256]))
            time.sleep(0.01)


def convert(
    model_path: str | Path,
    out_dir: str | Path,
    options: ConversionOptions = ConversionOptions(),
    *,
    work_dir: Path | None = None,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
    limits: ArchiveLimits = ArchiveLimits(),
    stem: str | None = None,
) -> ConversionResult:
    """Convert a model to TFLite and/or TF.js in a child process; see `convert_in_process`."""
    (result,) = convert_variants(
        model_path, out_dir, [(options, stem)], work_dir=work_dir, timeout=timeout, limits=limits
    )
    return result


def convert_variants(
    model_path: str | Path,
    out_dir: str | Path,
    variants: list[tuple[ConversionOptions, str | None]],
    *,
    work_dir: Path | None = None,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
    limits: ArchiveLimits = ArchiveLimits(),
) -> list[ConversionResult]:
    """Several conversions of one model (each with its options and artifact stem) in one child
    process, so TensorFlow is imported once; `timeout` covers them all."""
    with tempfile.TemporaryDirectory(prefix="convbot-convert-", dir=work_dir) as tmp:
        log_path = Path(tmp) / "converter.log"
        jobs = [
            (Path(model_path), Path(out_dir), options, Path(tmp) / f"work{index}", limits, stem)
            for index, (options, stem) in enumerate(variants)
        ]
        receiver, sender = _CONTEXT.Pipe(duplex=False)
        process = _CONTEXT.Process(target=_child, args=(sender, str(log_path), jobs), daemon=True)
        process.start()
        sender.close()
        message = None
        timed_out = False
        try:
            if receiver.poll(timeout):
                message = receiver.recv()
            else:
                timed_out = True
        except EOFError:
            pass  # the child died without answering
        finally:
            if message is None and process.is_alive():
                process.kill()
            process.join()
            receiver.close()
        log = log_path.read_text(errors="replace") if log_path.exists() else ""
        if timed_out:
            raise ConversionTimeout(f"the conversion took longer than {timeout:g} s and was stopped", log)
        if message is None:
            raise ConverterCrash(
                f"the converter {how_it_died(process.exitcode)}; the model may be damaged or too large", log
            )
        if message[0] == "ok":
            results: list[ConversionResult] = message[1]
            return results
        _, kind, text, error_log = message
        raise _error_class(kind)(text, f"{error_log}\n{log}".strip())


def how_it_died(exitcode: int | None) -> str:
    """'crashed (SIGABRT)', 'was killed (out of memory?)', ... for a child's exit code."""
    if exitcode is not None and exitcode < 0:
        name = signal.Signals(-exitcode).name
        return "was killed (out of memory?)" if name == "SIGKILL" else f"crashed ({name})"
    return f"exited unexpectedly (code {exitcode})"


def _error_class(name: str) -> type[ConvbotError]:
    from converter import errors

    found = getattr(errors, name, None)
    return found if isinstance(found, type) and issubclass(found, ConvbotError) else errors.ConversionError

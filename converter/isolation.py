"""Run one conversion in a child process, so that a crash, an abort or a memory blow-up inside
TensorFlow fails that conversion only, and a timeout can kill it."""

from __future__ import annotations

import tempfile
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from converter.archive import ArchiveLimits
from converter.child_process import (
    CONTEXT,
    decode_error,
    encode_error,
    how_it_died,
    prepare_child,
    run_test_hook,
    timeout_message,
)
from converter.errors import ConversionTimeout, ConverterCrash
from converter.options import DEFAULT_TIMEOUT_SECONDS, ConversionOptions
from converter.result import ConversionResult

__all__ = ["convert", "convert_variants", "how_it_died", "run_test_hook"]  # the last two moved to child_process


def _child(conn: Connection, log_path: str, job: tuple[Any, ...]) -> None:
    prepare_child(log_path)
    from converter.conversion import convert_variants_in_process

    try:
        model_path, out_dir, work_dir, limits, variants = job
        run_test_hook(model_path)
        conn.send(("ok", convert_variants_in_process(model_path, out_dir, variants, work_dir, limits)))
    except Exception as error:
        conn.send(("error", encode_error(error)))
    finally:
        conn.close()


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
        job = (Path(model_path), Path(out_dir), Path(tmp), limits, variants)
        receiver, sender = CONTEXT.Pipe(duplex=False)
        process = CONTEXT.Process(target=_child, args=(sender, str(log_path), job), daemon=True)
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
            raise ConversionTimeout(timeout_message(timeout), log)
        if message is None:
            raise ConverterCrash(
                f"the converter {how_it_died(process.exitcode)}; the model may be damaged or too large", log
            )
        if message[0] == "ok":
            results: list[ConversionResult] = message[1]
            return results
        raise decode_error(message[1], log)

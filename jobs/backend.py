"""Where jobs run. The job service talks to an ExecutionBackend; today that is a pool of warm
worker processes on this machine, and a distributed backend can take its place later."""

from __future__ import annotations

import contextlib
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any

from converter.child_process import CONTEXT, decode_error, exit_cause, how_it_died, timeout_message
from converter.errors import ConvbotError
from jobs.events import FailureReason
from jobs.job_conversion import JobArguments
from jobs.settings import Settings
from jobs.worker import worker_main


@dataclass(frozen=True)
class BackendEvent:
    """Something a running job did: a stage began, it finished, it failed."""

    job_id: int
    kind: str  # progress | artifact | done | failed | lost, unstarted (its worker vanished: the job waits again)
    stage: str = ""
    result: Any = None  # the ConversionResult, for done; (Artifact, ArtifactCheck | None) for artifact
    message: str = ""  # for failed: why, in English
    log: str = ""
    error: ConvbotError | None = None  # for failed in the converter: its error, of the class it raised
    reason: FailureReason = FailureReason.CONVERSION_ERROR  # for failed
    reason_args: Mapping[str, str | int | float] = field(default_factory=dict)  # the figures `reason` names


class ExecutionBackend(ABC):
    """Runs conversions; the service decides which job runs when."""

    @abstractmethod
    def start(self) -> None: ...

    @abstractmethod
    def stop(self) -> None: ...

    @abstractmethod
    def free_slots(self) -> int:
        """How many more jobs could start now."""

    @abstractmethod
    def start_job(self, arguments: JobArguments) -> None:
        """Begin the job's conversion (jobs.job_conversion.run_job, where a worker runs it)."""

    @abstractmethod
    def kill(self, job_id: int, reason: FailureReason) -> None:
        """Stop a running job; a `failed` event with `reason` follows."""

    @abstractmethod
    def poll(self, timeout: float) -> list[BackendEvent]:
        """Events since the last poll, waiting up to `timeout` seconds for the first."""

    def converters_alive(self) -> bool:
        """False when no process is there to convert (every remote worker gone): waiting users are told."""
        return True


def backend_from_settings(settings: Settings) -> ExecutionBackend:
    """Where this bot's jobs run: on `convbot worker` machines when CONVBOT_BROKER_URL is set, else here."""
    if settings.broker_url:
        from jobs.celery_backend import CeleryBackend  # imports Celery only when it is used

        return CeleryBackend(settings)
    return LocalWorkerPool(settings)


@dataclass
class _Worker:
    process: BaseProcess
    conn: Connection
    ready: bool = False
    job_id: int | None = None
    job_started: float = 0.0
    kill_reason: FailureReason | None = None  # None: it died on its own
    spawned: float = field(default_factory=time.monotonic)


class LocalWorkerPool(ExecutionBackend):
    """CONVBOT_WORKERS warm worker processes. A job that runs too long or uses too much memory is killed;
    a worker that dies fails only its job and is replaced.

    Thread-safe: the service's dispatcher polls while another thread may stop or restart the pool.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings  # the workers' too: where the storage is, their scratch folder
        self.size = settings.workers
        self.log_path = settings.data_dir / "logs" / "workers.log"
        self.timeout_seconds = settings.job_timeout_seconds
        self.memory_bytes = settings.job_memory_mb * 1024 * 1024
        self.workers: list[_Worker] = []
        self._lock = threading.RLock()

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            while len(self.workers) < self.size:
                self.workers.append(self._spawn())

    def _spawn(self) -> _Worker:
        parent, child = CONTEXT.Pipe()
        process = CONTEXT.Process(target=worker_main, args=(child, str(self.log_path), self.settings), daemon=True)
        process.start()
        child.close()
        return _Worker(process, parent)

    def stop(self) -> None:
        with self._lock:
            for worker in self.workers:
                with contextlib.suppress(BrokenPipeError, OSError):
                    worker.conn.send(("stop",))
            deadline = time.monotonic() + 5
            for worker in self.workers:
                worker.process.join(max(0.0, deadline - time.monotonic()))
                if worker.process.is_alive():
                    worker.process.kill()
                    worker.process.join()
                worker.conn.close()
            self.workers.clear()

    def free_slots(self) -> int:
        with self._lock:
            return sum(1 for w in self.workers if w.ready and w.job_id is None)

    def start_job(self, arguments: JobArguments) -> None:
        with self._lock:
            worker = next(w for w in self.workers if w.ready and w.job_id is None)
            worker.job_id, worker.job_started, worker.kill_reason = arguments.job_id, time.monotonic(), None
            worker.conn.send(("job", arguments))

    def kill(self, job_id: int, reason: FailureReason) -> None:
        with self._lock:
            for worker in self.workers:
                if worker.job_id == job_id and worker.process.is_alive():
                    worker.kill_reason = reason
                    worker.process.kill()

    def poll(self, timeout: float) -> list[BackendEvent]:
        with self._lock:
            conns = [w.conn for w in self.workers]
        if not conns:  # stopped: nothing to wait on
            time.sleep(timeout)
            return []
        try:
            # Waited on outside the lock, so stop() is not held up; it may close these meanwhile.
            ready = wait(conns, timeout)
        except (OSError, ValueError):
            ready = []
        events: list[BackendEvent] = []
        with self._lock:
            for worker in list(self.workers):
                if worker.conn in ready:
                    events.extend(self._drain(worker))
            self._enforce_limits()
            events.extend(self._replace_dead())
        return events

    def _drain(self, worker: _Worker) -> list[BackendEvent]:
        events = []
        try:
            while worker.conn.poll():
                message = worker.conn.recv()
                kind = message[0]
                if kind == "ready":
                    worker.ready = True
                elif kind == "progress":
                    events.append(BackendEvent(message[1], "progress", stage=message[2]))
                elif kind == "artifact":  # (Artifact, ArtifactCheck | None): one file ready to send
                    events.append(BackendEvent(message[1], "artifact", result=(message[2], message[3])))
                elif kind == "done":
                    events.append(BackendEvent(message[1], "done", result=message[2]))
                    worker.job_id = None
                elif kind == "failed":
                    error = decode_error(message[2])
                    events.append(BackendEvent(message[1], "failed", message=error.message, log=error.log, error=error))
                    worker.job_id = None
        except (EOFError, OSError):
            pass  # the worker died; _replace_dead reports its job
        return events

    def _enforce_limits(self) -> None:
        now = time.monotonic()
        for worker in self.workers:
            if worker.job_id is None or not worker.process.is_alive():
                continue
            if now - worker.job_started > self.timeout_seconds:
                worker.kill_reason = FailureReason.TIMEOUT
                worker.process.kill()
            elif resident_bytes(worker.process.pid) > self.memory_bytes:
                worker.kill_reason = FailureReason.MEMORY
                worker.process.kill()

    def _replace_dead(self) -> list[BackendEvent]:
        events = []
        for index, worker in enumerate(self.workers):
            if worker.process.is_alive():
                continue
            worker.process.join()
            if worker.job_id is not None:
                events.append(self._death(worker.job_id, worker.kill_reason, worker.process.exitcode))
            worker.conn.close()
            self.workers[index] = self._spawn()
        return events

    def _death(self, job_id: int, kill_reason: FailureReason | None, exitcode: int | None) -> BackendEvent:
        """The failed event of a job whose worker died: killed by this pool for `kill_reason`, or crashed."""
        seconds, mb = self.timeout_seconds, self.memory_bytes // (1024 * 1024)
        args: dict[str, str | int | float]
        if kill_reason is FailureReason.TIMEOUT:
            message, args = timeout_message(seconds), {"seconds": seconds}
        elif kill_reason is FailureReason.MEMORY:
            message, args = f"the conversion used more than {mb} MB of memory and was stopped", {"mb": mb}
        elif kill_reason is not None:
            message, args = str(kill_reason), {}
        else:
            kill_reason = FailureReason.CRASH
            message, args = f"the converter {how_it_died(exitcode)}", {"cause": exit_cause(exitcode)}
        return BackendEvent(job_id, "failed", message=message, reason=kill_reason, reason_args=args)


def resident_bytes(pid: int | None) -> int:
    """A process's resident memory, from /proc (0 where that cannot be read)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0
